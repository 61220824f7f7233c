"""An asyncio micro-batcher: requests arriving within a few milliseconds are served by one call."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")


@dataclass
class _Request:
    items: list[Any]
    future: asyncio.Future = field(repr=False)


@dataclass
class BatchStats:
    """How the batcher has grouped work so far."""

    batches: int = 0
    items: int = 0
    largest: int = 0

    def as_dict(self) -> dict[str, float]:
        return {"batches": self.batches, "questions": self.items, "largest": self.largest,
                "mean_size": round(self.items / self.batches, 2) if self.batches else 0.0}


class MicroBatcher(Generic[T]):
    """Collects :meth:`submit` calls for up to ``max_wait`` seconds (or ``max_batch`` items) and runs
    the blocking ``fn`` once on all their items in a worker thread; each caller gets its own rows back
    (``fn`` returns one row per item: an array's rows or a list's elements).

    One batch runs at a time, so ``fn`` is never called concurrently; requests arriving meanwhile
    form the next batch. A request is never split; one larger than ``max_batch`` runs alone.

    >>> batcher = MicroBatcher(model.encode_questions)            # doctest: +SKIP
    >>> vectors = await batcher.submit(["who wrote hamlet"])       # doctest: +SKIP
    """

    def __init__(self, fn: Callable[[list[T]], Sequence[Any]], max_batch: int = 64, max_wait: float = 0.005):
        if max_batch < 1 or max_wait < 0:
            raise ValueError("max_batch must be >= 1 and max_wait >= 0")
        self.fn, self.max_batch, self.max_wait = fn, max_batch, max_wait
        self.stats = BatchStats()
        self._queue: asyncio.Queue[_Request] | None = None
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def submit(self, items: Sequence[T]) -> Any:
        """Rows of ``fn(batch)`` for ``items``, in order."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None or self._worker.done():
            self._loop, self._queue = loop, asyncio.Queue()  # a new event loop (e.g. a test client) gets its own worker
            self._worker = loop.create_task(self._run())
        request = _Request(list(items), loop.create_future())
        assert self._queue is not None
        self._queue.put_nowait(request)
        return await request.future

    async def close(self) -> None:
        """Stop the worker task (pending callers are cancelled)."""
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    async def _collect(self, queue: asyncio.Queue[_Request], batch: list[_Request]) -> _Request | None:
        """Fill ``batch`` (which may hold a carried-over request) with the first waiting request and whatever
        arrives within ``max_wait`` and fits; returns a request that did not fit, to start the next batch."""
        loop = asyncio.get_running_loop()
        if not batch:
            batch.append(await queue.get())
        size = len(batch[0].items)
        deadline = loop.time() + self.max_wait
        while size < self.max_batch:
            try:
                request = queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    request = await asyncio.wait_for(queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            if size + len(request.items) > self.max_batch:
                return request
            batch.append(request)
            size += len(request.items)
        return None

    async def _run(self) -> None:
        queue, carry = self._queue, None
        batch: list[_Request] = []
        assert queue is not None
        try:
            while True:
                batch = [carry] if carry is not None else []
                carry = await self._collect(queue, batch)
                batch = [r for r in batch if not r.future.done()]  # callers that went away
                if not batch:
                    continue
                items = [item for r in batch for item in r.items]
                try:
                    rows = await asyncio.to_thread(self.fn, items)
                except Exception as exc:  # noqa: BLE001 - every caller of the batch sees the error
                    for r in batch:
                        if not r.future.done():
                            r.future.set_exception(exc)
                    continue
                self.stats.batches += 1
                self.stats.items += len(items)
                self.stats.largest = max(self.stats.largest, len(items))
                start = 0
                for r in batch:
                    if not r.future.done():
                        r.future.set_result(rows[start : start + len(r.items)])
                    start += len(r.items)
        except asyncio.CancelledError:
            pending = batch + ([carry] if carry is not None and carry not in batch else [])
            while not queue.empty():
                pending.append(queue.get_nowait())
            for r in pending:
                if not r.future.done():
                    r.future.cancel()
            raise

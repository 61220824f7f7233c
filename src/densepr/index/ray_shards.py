"""Shards of one index searched by Ray actors, on this machine or on the nodes of a Ray cluster.

Each actor holds one shard of a ``densepr index --shards N`` folder (a path every node can read: a shared file system
or its own copy) and searches it; the coordinator sends each query batch to all actors at once and merges their top-k
exactly. Global rows are a shard's first row plus its local row, so hits map to the folder's ``ids.txt`` as with the
whole index. ``ray`` is imported only when sharded search is asked for (``pip install 'densepr[ray]'``), and nothing
here imports torch: a node needs densepr's index dependencies (FAISS, numpy) and ray.

>>> shards = RayShards.connect("idx/", "auto")                 # doctest: +SKIP
>>> scores, rows = shards.search(query_vectors, k=100)          # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from densepr.errors import DenseprError
from densepr.fileio import read_json
from densepr.index.faiss_index import DenseIndex, shard_ranges
from densepr.passage_ids import read_ids

log = logging.getLogger(__name__)
TIMEOUT = 600.0  # seconds the actors may take to start and load their shards, and to answer a call
CONNECT_TIMEOUT = 10.0  # seconds to reach a HOST:PORT address (ray.init itself retries an unreachable one for minutes)


def _ray() -> Any:
    try:
        import ray
    except ImportError:
        raise DenseprError("searching an index's shards with Ray needs ray: pip install 'densepr[ray]'") from None
    return ray


def shard_count(folder: str | Path) -> int:
    """The shards of an index folder; a one-line error if it has only one."""
    shards = int(read_json(Path(folder) / "meta.json").get("shards", 1))
    if shards < 2:
        raise DenseprError(f"{folder} is not sharded: build it with 'densepr index --shards N', or search it without "
                           "--ray-address")
    return shards


class ShardSearcher:
    """One shard, loaded in the Ray actor that searches it (created there by :class:`RayShards`)."""

    def __init__(self, folder: str, shard: int):
        self.index = DenseIndex.load(folder, shard=shard)
        self.first_row = int(self.index.meta.get("first_row", 0))

    def rows(self) -> tuple[int, int]:
        """The global rows ``[first, stop)`` this shard holds."""
        return self.first_row, self.first_row + len(self.index.ids)

    def configure(self, nprobe: int | None, ef_search: int | None) -> None:
        self.index.configure(nprobe=nprobe, ef_search=ef_search)

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        return self.index.vectors(rows)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, rows = self.index.search(queries, k)
        return scores, np.where(rows >= 0, rows + self.first_row, -1)


def merge_top_k(found: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The top-k ``(scores, rows)`` per query of several shards' top-k (global rows, -1 pads), best first; equal
    scores: lower row first. The same rows and scores as one index of all the shards' rows."""
    scores = np.concatenate([s for s, _ in found], axis=1)
    rows = np.concatenate([r for _, r in found], axis=1)
    scores = np.where(rows >= 0, scores, -np.inf)
    order = np.lexsort((rows, -scores), axis=1)[:, :k]
    top_scores, top_rows = np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)
    return np.where(top_rows >= 0, top_scores, -np.inf).astype(np.float32), top_rows


def _reach(address: str) -> None:
    """A one-line error unless ``address`` is ``HOST:PORT`` and something listens there."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise DenseprError(f"--ray-address is 'auto', 'local' or HOST:PORT (a Ray head node), not {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise DenseprError(f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}): is 'ray start --head' "
                           "running there?") from None


def join(address: str, cpus: int) -> None:
    """Connect this process to the Ray cluster at ``address`` (``auto``: the one this machine joined with
    ``ray start``; ``HOST:PORT``: its head node), or with ``local`` start one here, of at least ``cpus`` CPUs (it
    stops when this process exits). Nothing is done if this process is connected already."""
    ray = _ray()
    if ray.is_initialized():
        return
    level = logging.INFO if log.isEnabledFor(logging.INFO) else logging.WARNING
    if address == "local":
        ray.init(num_cpus=max(os.cpu_count() or 1, cpus), include_dashboard=False, logging_level=level)
        return
    if address != "auto":
        _reach(address)
    try:
        ray.init(address=address, logging_level=level)
    except ConnectionError as exc:
        if address == "auto":
            raise DenseprError("no Ray cluster runs on this machine (--ray-address auto): start one with 'ray start', or "
                               "give HOST:PORT or 'local'") from None
        raise DenseprError(f"cannot connect to the Ray cluster at {address}: {str(exc).splitlines()[0]}") from None


def _reason(exc: Exception) -> str:
    """The first line of what went wrong in an actor: the exception a call raised, or the last error line of an
    actor's death (e.g. its shard failing to load)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, DenseprError):
        return str(cause).splitlines()[0]
    if isinstance(cause, Exception):
        return f"{type(cause).__name__}: {(str(cause).splitlines() or [''])[0]}"
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    last = ([line for line in lines if "Error: " in line] or lines or [type(exc).__name__])[-1]
    return last.removeprefix(f"{DenseprError.__module__}.{DenseprError.__name__}: ")


class RayShards:
    """A sharded index folder whose shard ``i`` is searched by Ray actor ``i``; searched like a :class:`DenseIndex`
    (``search``, ``ids``, ``meta``, ``dim``, ``configure``, ``vectors``). The actors end with this object (or this
    process); the Ray nodes stay up."""

    def __init__(self, folder: str | Path, cpus: int = 1):
        """Open ``folder``'s shards in actors of the Ray cluster this process is connected to (:func:`join`), one
        actor a shard reserving ``cpus`` CPUs (FAISS searches on as many threads), spread over the nodes."""
        ray = _ray()
        shards = shard_count(folder)
        need, total = shards * cpus, int(ray.cluster_resources().get("CPU", 0))
        if total < need:
            raise DenseprError(f"the Ray cluster has {total} CPU(s) but {folder}'s {shards} shards need {need} ({cpus} "
                               "each, --ray-cpus): add nodes or ask for fewer")
        free = int(ray.available_resources().get("CPU", 0))
        if free < need:
            log.warning("the Ray cluster has %d of its %d CPUs free: the shard actors wait for the %d they need (up to "
                        "%g s)", free, total, need, TIMEOUT)
        self.meta = read_json(Path(folder) / "meta.json")
        self.ids = read_ids(Path(folder) / "ids.txt", int(self.meta.get("size", 0)) or None)
        actor = ray.remote(num_cpus=cpus, scheduling_strategy="SPREAD")(ShardSearcher)
        path = str(Path(folder).resolve())
        self.actors = [actor.remote(path, i) for i in range(shards)]
        got = self._get([a.rows.remote() for a in self.actors], f"loading the shards of {path}")
        if [tuple(r) for r in got] != shard_ranges(len(self.ids), shards):
            raise DenseprError(f"the shards loaded from {path} hold rows {got}, not those of its ids.txt: does every "
                               "node see the same folder at that path?")

    @classmethod
    def connect(cls, folder: str | Path, address: str, cpus: int = 1) -> RayShards:
        """Connect to the Ray cluster at ``address`` (:func:`join`) and open ``folder``'s shards there."""
        join(address, shard_count(folder) * cpus)
        return cls(folder, cpus)

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    def configure(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Search-time knobs, set in every actor (as :meth:`DenseIndex.configure`)."""
        self._get([a.configure.remote(nprobe, ef_search) for a in self.actors], "configuring the shards")

    def vectors(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """The stored vectors of ``rows`` (as :meth:`DenseIndex.vectors`), each asked of its shard's actor."""
        wanted = np.asarray(rows, dtype=np.int64)
        firsts = np.array([a for a, _ in shard_ranges(len(self.ids), len(self.actors))])
        shard = np.searchsorted(firsts, wanted, side="right") - 1
        out = np.empty((len(wanted), self.dim), dtype=np.float32)
        for i in np.unique(shard):
            ref = self.actors[i].vectors.remote(wanted[shard == i] - firsts[i])
            out[shard == i] = self._get([ref], "reading vectors")[0]
        return out

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ``(scores, rows)`` per query over all shards, merged exactly (ties: lower row first)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        batch = _ray().put(queries)  # one copy in the object store, read by every actor
        return merge_top_k(self._get([a.search.remote(batch, k) for a in self.actors], "searching the shards"), k)

    @staticmethod
    def _get(refs: list[Any], doing: str) -> list[Any]:
        """``ray.get(refs)``, with a one-line error for an actor that failed, died or did not answer in time (every
        result is fetched, so Ray logs no error as unhandled)."""
        ray = _ray()
        if ray.wait(refs, num_returns=len(refs), timeout=TIMEOUT)[1]:
            raise DenseprError(f"{doing}: the Ray actors did not answer within {TIMEOUT:g} s")
        results, errors = [], []
        for ref in refs:
            try:
                results.append(ray.get(ref))
            except ray.exceptions.RayError as exc:
                errors.append(exc)
        if errors:
            raise DenseprError(f"{doing}: {_reason(errors[0])}")
        return results

"""Shards of one index searched by other processes or machines, through ``torch.distributed.rpc``.

Each worker holds one shard of a ``densepr index --shards N`` folder (a path it can read: a shared file system or its
own copy) and answers searches; the coordinator sends every query batch to all workers at once and merges their top-k
by score. Global rows are a shard's first row plus its local row, so hits map to the folder's ``ids.txt`` as with the
whole index. Workers are RPC ranks 1..N, started with :func:`serve_shards` (``densepr shard-worker``); the coordinator
is rank 0 (:meth:`RemoteShards.connect`, or ``--shard-workers`` of ``retrieve``, ``ask`` and ``serve``), all with
``MASTER_ADDR``/``MASTER_PORT`` naming the coordinator's machine:

>>> shards = RemoteShards.connect("idx/", ["shard0", "shard1"])                           # doctest: +SKIP
>>> scores, rows = shards.search(query_vectors, k=100)                                    # doctest: +SKIP
"""

from __future__ import annotations

import atexit
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.distributed import rpc

from densepr.errors import DenseprError
from densepr.fileio import read_json
from densepr.index.faiss_index import DenseIndex, shard_ranges
from densepr.passage_ids import read_ids

log = logging.getLogger(__name__)
TIMEOUT = 600.0  # seconds an RPC (and the start-up rendezvous) may take


def _init(name: str, rank: int, world_size: int) -> None:
    """Join the RPC group as ``name`` (rank ``rank`` of ``world_size``); ``MASTER_ADDR``/``MASTER_PORT`` default to
    this machine, port 29500."""
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29500")
    options = rpc.TensorPipeRpcBackendOptions(rpc_timeout=TIMEOUT, init_method="env://")
    try:
        rpc.init_rpc(name, rank=rank, world_size=world_size, rpc_backend_options=options)
    except RuntimeError as exc:
        raise DenseprError(f"cannot join the RPC group at {os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} as "
                           f"{name} (rank {rank} of {world_size}): {str(exc).splitlines()[0]}") from None


def serve_shards(name: str, rank: int, world_size: int) -> None:
    """Be RPC worker ``name`` until the coordinator shuts down: it loads the shard it is asked to and searches it."""
    if not 1 <= rank < world_size:
        raise DenseprError(f"a shard worker's rank is between 1 and the world size - 1 ({world_size - 1}), not {rank}")
    log.info("%s (rank %d of %d) waiting for the coordinator at %s:%s", name, rank, world_size,
             os.environ.get("MASTER_ADDR", "127.0.0.1"), os.environ.get("MASTER_PORT", "29500"))
    _init(name, rank, world_size)
    rpc.shutdown()  # returns once every process of the group has shut down


class ShardWorker:
    """One shard, loaded in the process that searches it (created there by :class:`RemoteShards`)."""

    def __init__(self, folder: str, shard: int, nprobe: int | None = None, ef_search: int | None = None):
        self.index = DenseIndex.load(folder, shard=shard)
        self.configure(nprobe, ef_search)
        self.first_row = int(self.index.meta.get("first_row", 0))

    def configure(self, nprobe: int | None, ef_search: int | None) -> None:
        self.index.configure(nprobe=nprobe, ef_search=ef_search)

    def vectors(self, rows: np.ndarray) -> np.ndarray:
        return self.index.vectors(rows)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, rows = self.index.search(queries, k)
        return scores, np.where(rows >= 0, rows + self.first_row, -1)


class RemoteShards:
    """A sharded index folder whose shard ``i`` is searched by RPC worker ``workers[i]``; searched like a
    :class:`DenseIndex` (``search``, ``ids``, ``meta``, ``dim``)."""

    def __init__(self, folder: str | Path, workers: Sequence[str], nprobe: int | None = None, ef_search: int | None = None):
        self.meta = read_json(Path(folder) / "meta.json")
        shards = int(self.meta.get("shards", 1))
        if len(workers) != shards:
            raise DenseprError(f"{folder} has {shards} shard(s) but {len(workers)} worker(s) were named")
        self.ids = read_ids(Path(folder) / "ids.txt", int(self.meta.get("size", 0)) or None)
        self.workers = [rpc.remote(w, ShardWorker, args=(str(Path(folder).resolve()), i, nprobe, ef_search))
                        for i, w in enumerate(workers)]

    @classmethod
    def connect(cls, folder: str | Path, workers: Sequence[str], nprobe: int | None = None,
                ef_search: int | None = None) -> RemoteShards:
        """Join the RPC group as its coordinator (rank 0 of ``len(workers) + 1``; shut down when this process exits)
        unless this process has joined it already, and open ``folder``'s shards in ``workers``."""
        if not rpc.api._is_current_rpc_agent_set():
            _init("coordinator", 0, len(workers) + 1)
            atexit.register(rpc.shutdown)
        return cls(folder, workers, nprobe, ef_search)

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    def configure(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Search-time knobs, set in every worker (as :meth:`DenseIndex.configure`)."""
        for w in self.workers:
            w.rpc_sync().configure(nprobe, ef_search)

    def vectors(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """The stored vectors of ``rows`` (as :meth:`DenseIndex.vectors`), each asked of its shard's worker."""
        wanted = np.asarray(rows, dtype=np.int64)
        firsts = np.array([a for a, _ in shard_ranges(len(self.ids), len(self.workers))])
        shard = np.searchsorted(firsts, wanted, side="right") - 1
        out = np.empty((len(wanted), self.dim), dtype=np.float32)
        for i in np.unique(shard):
            out[shard == i] = self.workers[i].rpc_sync().vectors(wanted[shard == i] - firsts[i])
        return out

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ``(scores, rows)`` per query over all shards, merged exactly (ties: lower row first)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        pending = [w.rpc_async().search(queries, k) for w in self.workers]
        found = [f.wait() for f in pending]
        scores = np.concatenate([s for s, _ in found], axis=1)
        rows = np.concatenate([r for _, r in found], axis=1)
        scores = np.where(rows >= 0, scores, -np.inf)
        order = np.lexsort((rows, -scores), axis=1)[:, :k]
        top_scores, top_rows = np.take_along_axis(scores, order, 1), np.take_along_axis(rows, order, 1)
        return np.where(top_rows >= 0, top_scores, -np.inf).astype(np.float32), top_rows

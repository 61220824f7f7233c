"""Shards of one index searched by other processes or machines, through ``torch.distributed.rpc``.

Each worker holds one shard of a ``densepr index --shards N`` folder (a path it can read: a shared file system or its
own copy) and answers searches; the coordinator sends every query batch to all workers at once and merges their top-k
by score. Global rows are a shard's first row plus its local row, so hits map to the folder's ``ids.txt`` as with the
whole index. Start the workers with ``rpc.init_rpc`` (``MASTER_ADDR``/``MASTER_PORT`` naming the coordinator's machine)
and the coordinator with the same world size:

>>> rpc.init_rpc("coordinator", rank=0, world_size=3)                                    # doctest: +SKIP
>>> shards = RemoteShards("idx/", ["shard0", "shard1"])                                   # doctest: +SKIP
>>> scores, rows = shards.search(query_vectors, k=100)                                    # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from torch.distributed import rpc

from densepr.errors import DenseprError
from densepr.fileio import read_ids, read_json
from densepr.index.faiss_index import DenseIndex


class ShardWorker:
    """One shard, loaded in the process that searches it (created there by :class:`RemoteShards`)."""

    def __init__(self, folder: str, shard: int, nprobe: int | None = None, ef_search: int | None = None):
        self.index = DenseIndex.load(folder, shard=shard)
        self.index.configure(nprobe=nprobe, ef_search=ef_search)
        self.first_row = int(self.index.meta.get("first_row", 0))

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

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

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

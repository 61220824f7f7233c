"""Shards searched by two RPC worker processes (torch.distributed.rpc): the merged top-100 is the single index's."""

from __future__ import annotations

import os

import numpy as np
import pytest

from conftest import free_port, random_vectors
from densepr.index.faiss_index import DenseIndex


def _run(rank: int, folder: str, port: int, out: str) -> None:
    from torch.distributed import rpc

    from densepr.index.remote import RemoteShards

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    options = rpc.TensorPipeRpcBackendOptions(rpc_timeout=120)
    rpc.init_rpc("coordinator" if rank == 0 else f"shard{rank - 1}", rank=rank, world_size=3, rpc_backend_options=options)
    if rank == 0:
        queries = np.load(os.path.join(folder, "queries.npy"))
        scores, rows = RemoteShards(folder, ["shard0", "shard1"]).search(queries, 100)
        np.savez(out, scores=scores, rows=rows)
    rpc.shutdown()  # waits for every process


@pytest.mark.parametrize("kind", ["flat", "ivfsq8"])
def test_two_rpc_workers_return_the_single_index_top_100(tmp_path, kind):
    import torch.multiprocessing as mp

    vectors, ids, queries = random_vectors(2000, 16, 20, seed=2)
    params = {"nlist": 16} if kind == "ivfsq8" else {}
    DenseIndex.build(vectors, ids, kind, shards=2, **params).save(tmp_path / "idx")
    np.save(tmp_path / "idx" / "queries.npy", queries)
    single = DenseIndex.build(vectors, ids, kind, **params)
    mp.start_processes(_run, args=(str(tmp_path / "idx"), free_port(), str(tmp_path / "out.npz")), nprocs=3,
                       start_method="spawn")
    got = np.load(tmp_path / "out.npz")
    scores, rows = single.search(queries, 100)
    assert (got["rows"] == rows).all() and np.allclose(got["scores"], scores, atol=1e-5)

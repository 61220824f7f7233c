"""Shards searched by two RPC worker processes (torch.distributed.rpc): the merged top-100 is the single index's."""

from __future__ import annotations

import json
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


def test_cli_retrieve_through_two_shard_workers_matches_one_process(tmp_path, tiny_indexes, questions_jsonl):
    """``densepr shard-worker`` x 2 + ``densepr retrieve --shard-workers``: the same result file as the shards searched
    in one process; every process exits when the coordinator is done."""
    import subprocess
    import sys

    from densepr import pipeline

    sharded = tmp_path / "sharded"
    pipeline.build_index(embeddings=tiny_indexes / "emb", out=sharded, shards=2)
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(free_port()))
    cli = [sys.executable, "-m", "densepr", "-q"]
    workers = [subprocess.Popen([*cli, "shard-worker", "--name", f"shard{i}", "--rank", str(i + 1), "--world-size", "3"],
                                env=env, stderr=subprocess.PIPE, text=True) for i in range(2)]
    retrieve = [*cli, "retrieve", "--index", str(sharded), "--questions", str(questions_jsonl), "--top-k", "5"]
    try:
        remote = subprocess.run([*retrieve, "--out", str(tmp_path / "remote.json"), "--shard-workers", "shard0,shard1"],
                                env=env, capture_output=True, text=True, timeout=300)
        assert remote.returncode == 0, remote.stderr
        assert [w.wait(timeout=60) for w in workers] == [0, 0]
    finally:
        for w in workers:
            w.kill()
    local = subprocess.run([*retrieve, "--out", str(tmp_path / "local.json")], capture_output=True, text=True, timeout=300)
    assert local.returncode == 0, local.stderr
    got, want = (json.loads((tmp_path / name).read_text()) for name in ("remote.json", "local.json"))
    assert [[c["id"] for c in r["ctxs"]] for r in got] == [[c["id"] for c in r["ctxs"]] for r in want]
    assert np.allclose([c["score"] for r in got for c in r["ctxs"]], [c["score"] for r in want for c in r["ctxs"]], atol=1e-5)
    assert len(got) == 3 and all(len(r["ctxs"]) == 5 for r in got)


def test_a_shard_worker_rank_out_of_range_is_one_line(capsys):
    from densepr.cli.main import main

    assert main(["-q", "shard-worker", "--name", "shard0", "--rank", "0", "--world-size", "3"]) == 2
    assert "rank is between 1 and" in capsys.readouterr().err

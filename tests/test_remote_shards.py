"""Shards searched by Ray actors (densepr.index.ray_shards) on a local Ray cluster of 2 CPUs started here: the merged
top-100 is the single index's, and ``retrieve --ray-address`` writes the result file of the one-process search."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from conftest import free_port, random_vectors
from densepr.errors import DenseprError
from densepr.index.faiss_index import DenseIndex
from densepr.index.ray_shards import RayShards, merge_top_k


@pytest.fixture(scope="module")
def ray_cluster():
    """A local Ray cluster of 2 CPUs (no dashboard, no auth token written to ~/.ray) for the module's tests; its
    address (HOST:PORT). Shut down after them, whatever they did."""
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'densepr[ray]')")
    temp = tempfile.mkdtemp(prefix="ray")  # a short path: Ray's socket paths must fit in 107 bytes
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_AUTH_MODE", "disabled")  # also for the CLI processes started by the tests
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")
        try:
            ray.init(num_cpus=2, object_store_memory=80_000_000, include_dashboard=False, _temp_dir=temp,
                     logging_level="WARNING")
            yield ray.get_runtime_context().gcs_address
        finally:
            ray.shutdown()
            shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture(scope="module")
def sharded(tiny_indexes, tmp_path_factory):
    """The tiny corpus's dense index in 2 shards."""
    from densepr import pipeline

    out = tmp_path_factory.mktemp("sharded") / "idx"
    pipeline.build_index(embeddings=tiny_indexes / "emb", out=out, shards=2)
    return out


@pytest.mark.parametrize("kind", ["flat", "ivfsq8"])
def test_two_ray_actors_return_the_single_index_top_100(tmp_path, ray_cluster, kind):
    vectors, ids, queries = random_vectors(2000, 16, 20, seed=2)
    params = {"nlist": 16} if kind == "ivfsq8" else {}
    DenseIndex.build(vectors, ids, kind, shards=2, **params).save(tmp_path / "idx")
    single = DenseIndex.build(vectors, ids, kind, **params)
    shards = RayShards.connect(tmp_path / "idx", ray_cluster)  # this process is connected already: that cluster
    assert shards.dim == 16 and list(shards.ids) == ids
    for nprobe in (None, 4):
        shards.configure(nprobe=nprobe)
        single.configure(nprobe=nprobe)
        got_scores, got_rows = shards.search(queries, 100)
        scores, rows = single.search(queries, 100)
        assert (got_rows == rows).all() and np.allclose(got_scores, scores, atol=1e-5)
    if kind == "flat":
        assert (shards.vectors([0, 999, 1000, 1999]) == vectors[[0, 999, 1000, 1999]]).all()


def test_cli_retrieve_with_ray_actors_matches_one_process(tmp_path, ray_cluster, sharded, questions_jsonl):
    """``densepr retrieve --ray-address HOST:PORT`` (its own process, a second driver of the cluster): the same result
    file as the shards searched in one process."""
    from densepr.cli.main import main

    retrieve = ["retrieve", "--index", str(sharded), "--questions", str(questions_jsonl), "--top-k", "5"]
    remote = subprocess.run([sys.executable, "-m", "densepr", "-q", *retrieve, "--out", str(tmp_path / "remote.json"),
                             "--ray-address", ray_cluster], capture_output=True, text=True, timeout=300)
    assert remote.returncode == 0, remote.stderr
    assert main(["-q", *retrieve, "--out", str(tmp_path / "local.json")]) == 0
    got, want = (json.loads((tmp_path / name).read_text()) for name in ("remote.json", "local.json"))
    assert [[c["id"] for c in r["ctxs"]] for r in got] == [[c["id"] for c in r["ctxs"]] for r in want]
    scores = [[c["score"] for r in results for c in r["ctxs"]] for results in (got, want)]
    assert np.allclose(*scores, atol=1e-5)
    assert len(got) == 3 and all(len(r["ctxs"]) == 5 for r in got)


def test_an_unreachable_cluster_is_one_line(sharded, questions_jsonl, tmp_path):
    pytest.importorskip("ray", reason="ray is not installed (pip install 'densepr[ray]')")
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    run = subprocess.run([sys.executable, "-m", "densepr", "-q", "retrieve", "--index", str(sharded), "--questions",
                          str(questions_jsonl), "--out", str(tmp_path / "out.json"), "--ray-address", address],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [f"densepr: error: cannot reach the Ray cluster at {address} (Connection "
                                               "refused): is 'ray start --head' running there?"]


def test_a_folder_that_is_not_sharded_is_one_line(tiny_indexes, questions_jsonl, tmp_path, capsys):
    from densepr.cli.main import main

    assert main(["-q", "retrieve", "--index", str(tiny_indexes / "flat"), "--questions", str(questions_jsonl),
                 "--out", str(tmp_path / "out.json"), "--ray-address", "local"]) == 2
    assert "is not sharded: build it with 'densepr index --shards N'" in capsys.readouterr().err


def test_without_ray_the_error_names_the_extra(monkeypatch, tmp_path):
    vectors, ids, _ = random_vectors(10, 4, 1)
    DenseIndex.build(vectors, ids, "flat", shards=2).save(tmp_path / "idx")
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    with pytest.raises(DenseprError, match=r"pip install 'densepr\[ray\]'"):
        RayShards.connect(tmp_path / "idx", "auto")


def test_the_module_imports_neither_torch_nor_ray():
    code = "import sys, densepr.index.ray_shards; print(sorted({'torch', 'ray'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


def test_merge_keeps_the_best_k_and_breaks_ties_by_row():
    first = (np.array([[0.9, 0.5, 0.5]], dtype=np.float32), np.array([[3, 1, 2]]))
    second = (np.array([[0.5, 0.4, -np.inf]], dtype=np.float32), np.array([[0, 7, -1]]))  # -1: padding
    scores, rows = merge_top_k([first, second], 4)
    assert rows.tolist() == [[3, 0, 1, 2]] and scores.tolist() == [[np.float32(0.9), 0.5, 0.5, 0.5]]

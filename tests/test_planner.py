"""The RAM-budget index planner and its recall card."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import random_vectors
from densepr.cli.main import main
from densepr.errors import DenseprError
from densepr.index.faiss_index import DenseIndex
from densepr.index.planner import parse_bytes, plan, predicted_bytes, recall_card


def test_sizes_parse_and_bad_ones_are_one_line_errors():
    assert parse_bytes("8GB") == 8_000_000_000 and parse_bytes("512MiB") == 512 * 2**20 and parse_bytes("2e9") == 2 * 10**9
    for bad in ("eight GB", "8XB", ""):
        with pytest.raises(DenseprError, match="cannot read"):
            parse_bytes(bad)


def test_the_plan_is_the_most_exact_index_that_fits():
    n, dim = 21_000_000, 768
    assert predicted_bytes("flat", n, dim) > 64e9  # DPR's flat index of 21M x 768 floats (+ ids)
    assert plan(n, dim, parse_bytes("80GB")).kind == "flat"
    assert plan(n, dim, parse_bytes("24GB")).kind == "hnswsq8"  # 768 bytes a vector + its graph links
    assert plan(n, dim, parse_bytes("20GB")).kind == "sq8"
    assert plan(n, dim, parse_bytes("9GB")).kind == "sq4"
    small = [plan(n, dim, parse_bytes(b)) for b in ("2GB", "4GB", "8GB")]
    assert [p.kind for p in small] == ["ivfopq"] * 3
    assert [p.params["pq_m"] for p in small] == sorted(p.params["pq_m"] for p in small)  # more budget, more bytes a vector
    assert all(p.bytes <= parse_bytes(b) for p, b in zip(small, ("2GB", "4GB", "8GB")))
    assert plan(n, dim, parse_bytes("20GB"), latency_ms=200).kind == "ivfsq8"  # exhaustive SQ8 is too slow
    with pytest.raises(DenseprError, match="no index of 21,000,000 768-d vectors fits"):
        plan(n, dim, parse_bytes("0.5GB"))


def test_the_recall_card_picks_the_smallest_probe_reaching_the_target():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(40, 32)).astype(np.float32)
    vectors = (centres[rng.integers(40, size=4000)] + 0.3 * rng.normal(size=(4000, 32))).astype(np.float32)
    index = DenseIndex.build(vectors, [str(i) for i in range(4000)], "ivfsq8", nlist=64)
    card = recall_card(index, vectors, recall_target=0.9, queries=200)
    recalls = [t["recall@100"] for t in card["trials"]]
    assert card["met_target"] and card["chosen"] == card["trials"][-1] and recalls[-1] >= 0.9
    assert all(r < 0.9 for r in recalls[:-1]) and len(recalls) >= 2  # stopped at the first setting that reached it
    assert index.meta["nprobe"] == card["chosen"]["nprobe"]


def test_cli_plans_builds_and_writes_the_card(tiny_indexes, tmp_path, capsys):
    assert main(["-q", "index", "--explain", "--ram-budget", "8GB", "--size", "21000000", "--dim", "768"]) == 0
    planned = json.loads(capsys.readouterr().out)
    assert planned["kind"] == "ivfopq" and planned["bytes"] <= 8e9
    out = tmp_path / "planned"
    assert main(["-q", "index", "--embeddings", str(tiny_indexes / "emb"), "--out", str(out), "--ram-budget", "1GB"]) == 0
    card = json.loads((out / "recall_card.json").read_text())
    assert card["type"] == "flat" and card["chosen"][f"recall@{min(100, card['vectors'])}"] == 1.0 and card["index_bytes"] > 0
    assert "recall_card.json" in json.loads((out / "manifest.json").read_text())["files"]
    capsys.readouterr()
    assert main(["-q", "index", "--embeddings", str(tiny_indexes / "emb"), "--out", str(out), "--ram-budget", "10B"]) == 2
    assert "no index of" in capsys.readouterr().err
    assert main(["-q", "index", "--explain"]) == 2
    assert "--ram-budget" in capsys.readouterr().err


def test_the_recall_card_can_measure_real_questions(tiny_indexes, questions_jsonl, tmp_path, capsys):
    out = tmp_path / "carded"
    assert main(["-q", "index", "--embeddings", str(tiny_indexes / "emb"), "--out", str(out), "--ram-budget", "1GB",
                 "--card-questions", str(questions_jsonl)]) == 0
    card = json.loads((out / "recall_card.json").read_text())
    asked = sum(1 for line in Path(questions_jsonl).read_text().splitlines() if line.strip())
    assert card["queries"] == asked and card["query_kind"] == f"questions of {questions_jsonl}"
    assert card["chosen"][f"recall@{min(100, card['vectors'])}"] == 1.0  # flat: exact
    capsys.readouterr()
    assert main(["-q", "index", "--embeddings", str(tiny_indexes / "emb"), "--out", str(tmp_path / "x"),
                 "--card-questions", str(questions_jsonl)]) == 2
    assert "--card-questions goes with --ram-budget" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["flat", "ivfsq8", "ivfopq", "hnsw", "hnswsq8"])
def test_a_sharded_index_returns_what_one_index_returns(tmp_path, kind):
    vectors, ids, queries = random_vectors(3000, 24, 50, seed=1)
    params = {"nlist": 32} if kind.startswith("ivf") else {}
    one = DenseIndex.build(vectors, ids, kind, **params)
    sharded = DenseIndex.build(vectors, ids, kind, shards=3, **params)
    for index in (one, sharded):
        index.configure(nprobe=8, ef_search=64)
    sharded.save(tmp_path / "sharded")
    assert sorted(p.name for p in (tmp_path / "sharded").glob("*.faiss")) == ["index-000.faiss", "index-001.faiss", "index-002.faiss"]
    loaded = DenseIndex.load(tmp_path / "sharded")
    loaded.configure(nprobe=8, ef_search=64)
    s1, r1 = one.search(queries, 100)
    if kind.startswith("hnsw"):  # one graph vs three: each is approximate, so compare with exact search instead
        exact = DenseIndex.build(vectors, ids, "flat").search(queries, 100)[1]
        assert np.mean([len(set(a) & set(b)) for a, b in zip(loaded.search(queries, 100)[1], exact)]) >= 95
    else:
        s2, r2 = loaded.search(queries, 100)
        assert (r1 == r2).all() and np.allclose(s1, s2, atol=1e-5)  # the merged top-100 is the single index's
    if not kind.startswith("ivf"):  # IVF indexes keep no row -> list map, sharded or not
        assert np.allclose(loaded.vectors([0, 1500, 2999]), one.vectors([0, 1500, 2999]), atol=1e-5)
    with pytest.raises(DenseprError, match="--shards must be"):
        DenseIndex.build(vectors[:2], ids[:2], "flat", shards=3)

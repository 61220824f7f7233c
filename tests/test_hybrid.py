"""Hybrid BM25 + dense retrieval: min-fill linear fusion, λ, normalisation, RRF, index checks, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from densepr.cli.main import main
from densepr.errors import DenseprError
from densepr.hits import Hit, Ranked
from densepr.retrieve.hybrid import HybridRetriever, linear_fusion, rrf_fusion


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["-q", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def indexes(tiny_indexes):
    """Passages, BM25 index and flat dense index (tiny BERT) of the test corpus."""
    return tiny_indexes


@pytest.fixture
def hybrid_factory(indexes):
    from densepr.retrieve.dense import DenseRetriever
    from densepr.sparse.bm25 import BM25Retriever

    bm25, dense = BM25Retriever.load(indexes / "bm25"), DenseRetriever.load(indexes / "flat")
    return lambda **options: HybridRetriever(bm25, dense, **options)


def test_linear_fusion_fills_missing_scores_with_the_lists_minimum():
    bm25 = [Hit(1, 10.0), Hit(2, 6.0), Hit(4, 2.0)]
    dense = [Hit(3, 0.8), Hit(2, 0.6), Hit(5, 0.1)]
    fused = {h.row: h.score for h in linear_fusion(bm25, dense, lam=2.0, k=10)}
    # row 1: BM25 10, dense missing -> dense min 0.1; row 3: BM25 missing -> BM25 min 2.0
    assert fused == pytest.approx({1: 10.0 + 2 * 0.1, 2: 6.0 + 2 * 0.6, 3: 2.0 + 2 * 0.8, 4: 2.0 + 2 * 0.1, 5: 2.0 + 2 * 0.1})
    ranked = linear_fusion(bm25, dense, lam=2.0, k=3)
    assert [h.row for h in ranked] == [1, 2, 3]  # best first, cut at k
    assert [h.row for h in linear_fusion(bm25, dense, lam=2.0, k=5)][3:] == [4, 5]  # a tie goes to the lower row
    assert linear_fusion([], [], 1.0, 5) == []
    assert [h.row for h in linear_fusion([], dense, 1.0, 5)] == [3, 2, 5]  # one empty list: the other's order


def test_normalisation_before_fusion():
    bm25, dense = [Hit(1, 10.0), Hit(2, 4.0)], [Hit(2, 0.9), Hit(3, 0.5)]
    minmax = {h.row: h.score for h in linear_fusion(bm25, dense, lam=1.0, k=5, normalize="minmax")}
    assert minmax == pytest.approx({1: 1.0 + 0.0, 2: 0.0 + 1.0, 3: 0.0 + 0.0})
    z = {h.row: h.score for h in linear_fusion(bm25, dense, lam=0.5, k=5, normalize="zscore")}
    # each list: mean and std of its own two scores -> z = ±1; fills take the minimum (z = -1)
    assert z == pytest.approx({1: 1.0 + 0.5 * -1, 2: -1.0 + 0.5 * 1, 3: -1.0 + 0.5 * -1})
    assert linear_fusion([Hit(1, 3.0)], [Hit(1, 3.0)], 1.0, 1, "minmax")[0].score == pytest.approx(0.0)  # flat list: no NaN


def test_hybrid_scores_on_real_indexes_by_hand(hybrid_factory):
    hybrid = hybrid_factory(depth=3, lam=0.5)
    question = "where was einstein born"
    bm25_hits = hybrid.bm25.search([question], k=3)[0]
    dense_hits = hybrid.dense.search([question], k=3)[0]
    assert len(bm25_hits) == 3  # a full (truncated) list: pyserini's minimum fill applies
    fused = hybrid.fuse(hybrid.candidates([question])[0], k=10)  # the whole union of the top-3 lists
    assert fused[:2] == hybrid.search([question], k=2)[0]
    assert len(fused) == len({h.row for h in bm25_hits} | {h.row for h in dense_hits})
    b, d = dict(bm25_hits), dict(dense_hits)
    exact_bm25 = hybrid.bm25.scores(question, np.array([h.row for h in fused]))
    for hit, bm25_exact in zip(fused, exact_bm25):
        expected_b = b.get(hit.row, min(b.values()))
        if hit.row in b:
            assert expected_b == pytest.approx(bm25_exact, rel=1e-5)  # the listed BM25 score is the real one
        assert hit.score == pytest.approx(expected_b + 0.5 * d.get(hit.row, min(d.values())), rel=1e-5)
    assert [h.score for h in fused] == sorted((h.score for h in fused), reverse=True)


def test_short_bm25_list_fills_with_the_true_zero(hybrid_factory):
    hybrid = hybrid_factory(lam=0.5)  # depth 2000: every passage is a dense candidate
    question = "who recorded the song with reba"
    bm25_hits = hybrid.bm25.search([question], k=2000)[0]
    assert 0 < len(bm25_hits) < len(hybrid.ids)  # passages sharing no term are left out: their BM25 score is 0
    dense = dict(hybrid.dense.search([question], k=2000)[0])
    fused = hybrid.search([question], k=len(hybrid.ids))[0]
    exact_bm25 = hybrid.bm25.scores(question, np.array([h.row for h in fused]))
    assert [h.score for h in fused] == pytest.approx([b + 0.5 * dense[h.row] for h, b in zip(fused, exact_bm25)], rel=1e-5)
    assert fused[0].row == bm25_hits[0].row


def test_lambda_moves_the_ranking_from_bm25_to_dense(hybrid_factory):
    questions = ["where was einstein born", "what river flows through paris", "who recorded the song with reba"]
    tiny_lam = hybrid_factory(lam=1e-9).search(questions, k=7)
    dense_only = hybrid_factory(lam=1e6).search(questions, k=3)
    bm25, dense = hybrid_factory().bm25.search(questions, k=7), hybrid_factory().dense.search(questions, k=3)
    for fused, hits in zip(tiny_lam, bm25):
        # BM25 decides the order of its passages scoring above its own minimum (the fill of the others)
        above = [h.row for h in hits if h.score > hits[-1].score]
        assert [h.row for h in fused[: len(above)]] == above
    assert any(h[0].score > h[-1].score for h in bm25)  # (the check above is not vacuous)
    assert [[x.row for x in h] for h in dense_only] == [[x.row for x in h] for h in dense]
    assert hybrid_factory().meta["lam"] == 1.1 and hybrid_factory().ids == hybrid_factory().dense.ids


def test_rrf_path_uses_reciprocal_ranks(hybrid_factory):
    hybrid = hybrid_factory(fusion="rrf", depth=4)
    question = "what river flows through paris"
    b = [h.row for h in hybrid.bm25.search([question], k=4)[0]]
    d = [h.row for h in hybrid.dense.search([question], k=4)[0]]
    fused = hybrid.search([question], k=3)[0]
    for hit in fused:
        expected = sum(1 / (60 + lst.index(hit.row) + 1) for lst in (b, d) if hit.row in lst)
        assert hit.score == pytest.approx(expected)
    assert rrf_fusion([Hit(7, 1.0)], [Hit(7, 9.0), Hit(8, 1.0)], k=5, rrf_k=1) == [Hit(7, 1.0), Hit(8, 1 / 3)]
    assert "rrf_k" in hybrid.meta and "lam" not in hybrid.meta


def test_indexes_over_other_passages_are_refused(indexes, tmp_path):
    from densepr import pipeline
    from densepr.retrieve.dense import DenseRetriever
    from densepr.sparse.bm25 import BM25Retriever

    lines = (indexes / "psgs.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    (tmp_path / "other.tsv").write_text("".join(lines[:-1]), encoding="utf-8")  # one passage fewer
    pipeline.build_bm25(passages=tmp_path / "other.tsv", out=tmp_path / "bm25", progress=False)
    with pytest.raises(DenseprError, match="not over the same passages file"):
        HybridRetriever(BM25Retriever.load(tmp_path / "bm25"), DenseRetriever.load(indexes / "flat"))
    bm25 = BM25Retriever.load(indexes / "bm25")
    bm25.meta = dict(bm25.meta, passages_fingerprint="b2:0:changed")  # same ids, another file
    with pytest.raises(DenseprError, match="not over the same passages file"):
        HybridRetriever(bm25, DenseRetriever.load(indexes / "flat"))
    for bad, message in (({"fusion": "max"}, "unknown fusion"), ({"normalize": "l2"}, "unknown normalisation"),
                         ({"depth": 0}, "depth must be >= 1")):
        with pytest.raises(DenseprError, match=message):
            HybridRetriever(BM25Retriever.load(indexes / "bm25"), DenseRetriever.load(indexes / "flat"), **bad)


def test_cli_hybrid_retrieve_and_tune(indexes, capsys, questions_jsonl, tmp_path):
    out = tmp_path / "hybrid.json"
    code, _, err = run(capsys, "retrieve", "--retriever", "hybrid", "--index", indexes / "flat", "--bm25-index", indexes / "bm25",
                       "--questions", questions_jsonl, "--out", out, "--top-k", 3, "--lam", 0.5, "--normalize", "minmax")
    assert code == 0, err
    results = json.loads(out.read_text())
    assert len(results) == 3 and all(len(r["ctxs"]) == 3 for r in results)
    assert results[0]["ctxs"][0]["title"] == "Albert Einstein"
    code, _, err = run(capsys, "retrieve", "--retriever", "hybrid", "--index", indexes / "flat", "--bm25-index", indexes / "bm25",
                       "--questions", questions_jsonl, "--out", tmp_path / "rrf.json", "--fusion", "rrf")
    assert code == 0, err

    code, out_text, err = run(capsys, "tune-hybrid", "--index", indexes / "flat", "--bm25-index", indexes / "bm25",
                              "--questions", questions_jsonl, "--lams", "0.001,0.5,1e6", "--ks", "1,3")
    assert code == 0, err
    assert "top-1" in out_text and "best λ = " in out_text and out_text.count("\n") == 8
    assert "over the better of BM25 and dense alone" in out_text
    code, out_text, _ = run(capsys, "tune-hybrid", "--index", indexes / "flat", "--bm25-index", indexes / "bm25",
                            "--questions", questions_jsonl, "--lams", "0.001,1e6", "--ks", "1", "--json")
    report = json.loads(out_text)  # BM25 finds all three at rank 1; the random tiny model does not
    assert report["questions"] == 3 and report["accuracy"]["0.001"]["1"] == pytest.approx(100.0) and report["best"] == 0.001
    assert report["parts"]["bm25"]["1"] == pytest.approx(100.0)  # the parts alone, as retrieve gives them
    assert report["gain"]["1"] == pytest.approx(100.0 - max(report["parts"]["bm25"]["1"], report["parts"]["dense"]["1"]))
    assert report["accuracy"]["1000000.0"]["1"] == pytest.approx(report["parts"]["dense"]["1"])  # λ → ∞: dense order


def test_cli_hybrid_errors_are_one_line(indexes, capsys, questions_jsonl, tmp_path):
    base = ["--questions", questions_jsonl, "--out", tmp_path / "x.json"]
    cases = [
        (["retrieve", "--retriever", "hybrid", "--index", indexes / "flat", *base], "needs a BM25 index (--bm25-index DIR)"),
        (["retrieve", "--retriever", "bm25", "--index", indexes / "bm25", "--lam", 2, *base], "need --retriever hybrid"),
        (["retrieve", "--retriever", "hybrid", "--index", indexes / "bm25", "--bm25-index", indexes / "flat", *base],
         "is not a dense index"),
        (["tune-hybrid", "--index", indexes / "flat", "--bm25-index", indexes / "bm25", "--questions", questions_jsonl,
          "--lams", "a,b"], "--lams: expected comma-separated numbers"),
    ]
    for argv, message in cases:
        code, _, err = run(capsys, *argv)
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "x.json").exists()


def test_fusion_on_arrays_equals_fusion_on_hits_and_ranks_are_each_lists_positions(hybrid_factory):
    hybrid = hybrid_factory(depth=5)
    for question in ["where was einstein born", "what river flows through paris"]:
        c = hybrid.candidates([question])[0]
        assert isinstance(c.bm25, Ranked) and c.bm25.hits() == hybrid.bm25.search([question], k=5)[0]
        assert linear_fusion(c.bm25, c.dense, 1.1, 7) == linear_fusion(c.bm25.hits(), c.dense.hits(), 1.1, 7)
        assert rrf_fusion(c.bm25, c.dense, 7) == rrf_fusion(c.bm25.hits(), c.dense.hits(), 7)
        fused = [h.row for h in hybrid.fuse(c, k=7)]
        lists = {"bm25": [h.row for h in c.bm25.hits()], "dense": [h.row for h in c.dense.hits()]}
        by_hand = {row: {name: rows.index(row) + 1 for name, rows in lists.items() if row in rows} for row in fused}
        assert c.ranks(fused) == by_hand and all(by_hand.values())

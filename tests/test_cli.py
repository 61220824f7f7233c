"""The CLI end to end on a tiny model, and its one-line errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from densepr.cli.main import main


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["-q", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def built(tmp_path, capsys, tiny_bert, docs_jsonl):
    """passages → bm25 → encode (2 shards) → flat index, through the CLI."""
    d = tmp_path
    assert run(capsys, "passages", docs_jsonl, "--out", d / "psgs.tsv", "--words", "12")[0] == 0
    assert run(capsys, "bm25", "--passages", d / "psgs.tsv", "--out", d / "bm25")[0] == 0
    for shard in (0, 1):
        assert run(capsys, "encode", "--passages", d / "psgs.tsv", "--out", d / "emb", "--model", tiny_bert,
                   "--shard-id", shard, "--num-shards", 2, "--no-bf16")[0] == 0
    assert run(capsys, "index", "--embeddings", d / "emb", "--out", d / "flat")[0] == 0
    return d


def test_bm25_pipeline_finds_answers(built, capsys, questions_jsonl):
    code, _, err = run(capsys, "retrieve", "--retriever", "bm25", "--index", built / "bm25", "--questions", questions_jsonl,
                       "--out", built / "bm25.json", "--top-k", 3)
    assert code == 0, err
    results = json.loads((built / "bm25.json").read_text())
    assert len(results) == 3 and set(results[0]["ctxs"][0]) == {"id", "title", "text", "score", "has_answer"}
    assert results[0]["ctxs"][0]["title"] == "Albert Einstein" and results[0]["ctxs"][0]["has_answer"]
    code, out, _ = run(capsys, "evaluate", built / "bm25.json", "--json", "--ks", "1,3")
    report = json.loads(out)
    assert report["questions"] == 3 and report["top_k_accuracy"]["1"] == pytest.approx(100.0)


def test_dense_pipeline_writes_dpr_results(built, capsys, questions_jsonl):
    code, _, err = run(capsys, "retrieve", "--retriever", "dense", "--index", built / "flat", "--questions", questions_jsonl,
                       "--out", built / "dense.json", "--top-k", 100)
    assert code == 0, err
    results = json.loads((built / "dense.json").read_text())
    n_passages = sum(1 for _ in open(built / "psgs.tsv")) - 1
    assert all(len(r["ctxs"]) == n_passages for r in results)  # k is capped at the corpus size
    scores = [c["score"] for c in results[0]["ctxs"]]
    assert scores == sorted(scores, reverse=True)
    code, out, _ = run(capsys, "evaluate", built / "dense.json")
    assert "top-100  accuracy  100.00" in out


def test_ask_on_a_given_index(built, capsys):
    code, out, err = run(capsys, "ask", "where was einstein born", "--index", built / "flat", "--top-k", 2, "--passages-only")
    assert code == 0, err
    assert out.startswith("1. [") and "2. [" in out and "3. [" not in out and "no reader" not in out


def test_retrieve_errors_are_one_line(built, capsys, questions_jsonl, tiny_dpr, tmp_path):
    cases = [
        (["retrieve", "--retriever", "bm25", "--index", built / "flat", "--questions", questions_jsonl, "--out", tmp_path / "x.json"],
         "is not a BM25 index"),
        (["retrieve", "--retriever", "dense", "--index", built / "flat", "--questions", questions_jsonl, "--out", tmp_path / "x.json",
          "--model", tiny_dpr[0]], "was built with model"),
        (["retrieve", "--retriever", "dense", "--index", tmp_path / "nothing", "--questions", questions_jsonl, "--out", tmp_path / "x.json"],
         "not an index folder"),
        (["evaluate", questions_jsonl], "malformed JSON"),
        (["retrieve", "--retriever", "bm25", "--index", built / "bm25", "--questions", questions_jsonl, "--out", tmp_path / "x.json",
          "--top-k", 0], "--top-k must be >= 1"),
    ]
    for argv, message in cases:
        code, _, err = run(capsys, *argv)
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "x.json").exists()


def test_model_with_another_dimension_is_refused(built, capsys, questions_jsonl, tiny_dpr, tmp_path):
    from densepr.dense.biencoder import BiEncoder
    from densepr.retrieve.dense import DenseRetriever

    model = BiEncoder.load(tiny_dpr[0])
    model.question_encoder.model.config.projection_dim = 8  # pretend: an 8-d encoder
    with pytest.raises(Exception, match="makes 8-d vectors but the index holds 32-d"):
        DenseRetriever.load(built / "flat", model=model)


def test_changed_corpus_is_detected(built, capsys, questions_jsonl):
    psgs = built / "psgs.tsv"
    shutil.copy(psgs, built / "orig.tsv")
    with open(psgs, "a", encoding="utf-8") as fh:
        fh.write("999\textra passage\tExtra\n")
    code, _, err = run(capsys, "retrieve", "--retriever", "bm25", "--index", built / "bm25", "--questions", questions_jsonl,
                       "--out", built / "x.json")
    assert code == 2 and "not the corpus the index was built from" in err
    code, _, err = run(capsys, "retrieve", "--retriever", "bm25", "--index", built / "bm25", "--questions", questions_jsonl,
                       "--out", built / "x.json", "--passages", built / "orig.tsv")
    assert code == 0, err


def test_malformed_passages_input(capsys, tmp_path):
    bad = tmp_path / "docs.jsonl"
    bad.write_text('{"title": "a", "text": "ok"}\n{"title": "b"\n')
    code, _, err = run(capsys, "passages", bad, "--out", tmp_path / "p.tsv")
    assert code == 2 and "docs.jsonl:2: malformed JSON" in err
    assert not (tmp_path / "p.tsv").exists()
    code, _, err = run(capsys, "passages", "no-such-corpus", "--out", tmp_path / "p.tsv")
    assert code == 2 and "no such file" in err


def test_unknown_option_exits_with_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["retrieve", "--bogus"])
    assert exc.value.code == 2


def test_evaluate_with_beir_qrels(capsys, tmp_path):
    results = [{"question": "q", "answers": [], "qid": "q1",
                "ctxs": [{"id": "d2", "text": "", "has_answer": False}, {"id": "d1", "text": "", "has_answer": False}]}]
    (tmp_path / "r.json").write_text(json.dumps(results))
    (tmp_path / "qrels.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    code, out, err = run(capsys, "evaluate", tmp_path / "r.json", "--qrels", tmp_path / "qrels.tsv", "--json")
    assert code == 0, err
    beir = json.loads(out)["beir"]
    assert beir["recall@100"] == 100.0 and beir["ndcg@10"] == pytest.approx(100 / np.log2(3))


def test_prebuilt_index_is_used_only_for_its_own_passages_and_model(tiny_indexes, tmp_path, monkeypatch, caplog):
    import logging

    from densepr import quickstart
    from densepr.dense.loading import DEFAULT_MODEL
    from densepr.fileio import check_manifest, read_json, write_json

    shipped = tmp_path / "shipped" / "index"
    shutil.copytree(tiny_indexes / "flat", shipped)
    (shipped / "manifest.json").unlink()  # as shipped: the repository's index has none, the copy gets one
    write_json(shipped / "meta.json", dict(read_json(shipped / "meta.json"), model=DEFAULT_MODEL, passages="elsewhere"))
    monkeypatch.setattr(quickstart, "SHIPPED", tmp_path / "shipped")
    psgs = tiny_indexes / "psgs.tsv"
    assert quickstart._copy_prebuilt(psgs, tmp_path / "a")  # same passages, default model: copied
    assert read_json(tmp_path / "a" / "meta.json")["passages"] == str(psgs.resolve())
    assert (tmp_path / "a" / "index.faiss").read_bytes() == (shipped / "index.faiss").read_bytes()
    assert check_manifest(tmp_path / "a", checksums=True) == 3  # index.faiss, ids.txt, meta.json

    other = tmp_path / "other.tsv"
    other.write_text(psgs.read_text(encoding="utf-8").replace("Paris", "Lyon"), encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="densepr"):
        assert not quickstart._copy_prebuilt(other, tmp_path / "b")  # other passages: rebuild
        assert "other passages or another model" in caplog.text
        (shipped / "index.faiss").write_bytes(b"not a faiss index")
        assert not quickstart._copy_prebuilt(psgs, tmp_path / "c")  # corrupt: rebuild, with a message
        assert "unreadable" in caplog.text
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()


def test_ask_from_stdin_survives_any_bytes(tiny_indexes, tmp_path):
    """2,000 lines of random bytes on ``ask``'s standard input: exit 0, no traceback, one error line for each line that is
    not UTF-8 text, an answer line (JSON) for each line that is."""
    import subprocess
    import sys

    rng = np.random.default_rng(7)
    lines = [bytes(rng.integers(0, 256, size=int(rng.integers(1, 80)), dtype=np.uint8)).replace(b"\n", b" ") for _ in range(2000)]
    lines += [b"where was einstein born", "o\u00f9 est n\u00e9 einstein".encode()]
    out = subprocess.run([sys.executable, "-m", "densepr", "-q", "ask", "--index", str(tiny_indexes / "flat"), "--passages-only",
                          "--json"], input=b"\n".join(lines) + b"\n", capture_output=True, timeout=300)
    err = out.stderr.decode("utf-8", "replace").splitlines()
    assert out.returncode == 0 and "Traceback" not in "\n".join(err)
    assert all(line.startswith("densepr: error: ") for line in err)
    answered = [json.loads(line) for line in out.stdout.decode().splitlines()]
    assert answered[-2]["question"] == "where was einstein born" and answered[-1]["question"].startswith("o\u00f9")
    assert len(err) >= 1900 and len(err) + len(answered) <= len(lines)  # blank lines are skipped, not answered

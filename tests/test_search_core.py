"""One search core: a spec gives the same ranking through every door (CLI, library, HTTP); options written once;
a cheap package face."""

from __future__ import annotations

import dataclasses
import inspect
import json
import subprocess
import sys

import pytest

from densepr.cli.main import COMMANDS, main
from densepr.errors import DenseprError
from densepr.options import option_fields
from densepr.questions import read_questions
from densepr.retrieve.searcher import open_searcher
from densepr.retrieve.spec import SearchSpec

SPECS = {
    "bm25": lambda d: SearchSpec(kind="bm25", index=str(d / "bm25")),
    "dense": lambda d: SearchSpec(kind="dense", index=str(d / "flat")),
    "hybrid": lambda d: SearchSpec(kind="hybrid", index=str(d / "flat"), bm25_index=str(d / "bm25"), lam=3.0),
    "hybrid-rrf": lambda d: SearchSpec(index=str(d / "flat"), bm25_index=str(d / "bm25"), fusion="rrf", rrf_k=10),
    "hybrid-zscore": lambda d: SearchSpec(index=str(d / "flat"), bm25_index=str(d / "bm25"), lam=0.7, normalize="zscore"),
}


def ranking(ids_scores) -> list[list[tuple[str, float]]]:
    return [[(i, s) for i, s in question] for question in ids_scores]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_one_spec_one_ranking_through_cli_library_and_http(name, tiny_indexes, questions_jsonl, tmp_path, capsys):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from fastapi.testclient import TestClient

    from densepr.serve import create_app

    # the backend named: on a bf16 CPU, serve's auto runs ONNX Runtime fp32 where the library's runs torch bf16
    spec = dataclasses.replace(SPECS[name](tiny_indexes), backend="torch")
    texts = [q.text for q in read_questions(questions_jsonl)]

    searcher = open_searcher(spec)  # the library
    library = ranking([[(searcher.ids[h.row], h.score) for h in hits] for hits in searcher.search(texts, k=5)])

    spec.save(tmp_path / "spec.json")  # the CLI, from the spec file
    assert main(["-q", "retrieve", "--spec", str(tmp_path / "spec.json"), "--questions", str(questions_jsonl),
                 "--out", str(tmp_path / "r.json"), "--top-k", "5"]) == 0, capsys.readouterr().err
    cli = ranking([[(c["id"], c["score"]) for c in e["ctxs"]] for e in json.loads((tmp_path / "r.json").read_text())])

    with TestClient(create_app(spec)) as client:  # HTTP
        body = client.post("/search", json={"questions": texts, "k": 5}).json()
    http = ranking([[(p["id"], p["score"]) for p in r["passages"]] for r in body["results"]])

    assert body["retriever"] == searcher.kind
    assert all(len(q) == min(5, len(q)) and q for q in library)
    assert cli == library  # identical ids and scores, to the last bit
    assert http == library


def test_hybrid_halves_served_by_a_hybrid_rank_as_their_own_specs(tiny_indexes, questions_jsonl):
    hybrid = open_searcher(SPECS["hybrid"](tiny_indexes))
    texts = [q.text for q in read_questions(questions_jsonl)]
    for kind in ("bm25", "dense"):
        alone = open_searcher(SPECS[kind](tiny_indexes))
        assert hybrid.part(kind).search(texts, 5) == alone.search(texts, 5)
    with pytest.raises(DenseprError, match="cannot search as hybrid"):
        hybrid.part("bm25").part("hybrid")


def test_cli_options_override_the_spec_file(tiny_indexes, questions_jsonl, tmp_path, capsys):
    SPECS["hybrid"](tiny_indexes).save(tmp_path / "spec.json")
    argv = ["-q", "retrieve", "--spec", str(tmp_path / "spec.json"), "--questions", str(questions_jsonl), "--top-k", "4"]
    assert main([*argv, "--out", str(tmp_path / "a.json"), "--lam", "1e6"]) == 0, capsys.readouterr().err
    overridden = [[c["id"] for c in e["ctxs"]] for e in json.loads((tmp_path / "a.json").read_text())]
    dense_heavy = open_searcher(SPECS["hybrid"](tiny_indexes), lam=1e6)
    assert overridden == [[dense_heavy.ids[h.row] for h in hits]
                          for hits in dense_heavy.search([q.text for q in read_questions(questions_jsonl)], 4)]
    assert main([*argv, "--out", str(tmp_path / "b.json"), "--retriever", "bm25"]) == 0  # the spec's BM25 half
    bm25 = open_searcher(SPECS["bm25"](tiny_indexes))
    assert [[c["id"] for c in e["ctxs"]] for e in json.loads((tmp_path / "b.json").read_text())] == [
        [bm25.ids[h.row] for h in hits] for hits in bm25.search([q.text for q in read_questions(questions_jsonl)], 4)]


def test_spec_files_round_trip_and_reject_unknown_fields(tiny_indexes, tmp_path):
    spec = SPECS["hybrid-rrf"](tiny_indexes)
    spec.save(tmp_path / "s.json")
    assert SearchSpec.load(tmp_path / "s.json") == spec
    assert open_searcher(spec).kind == "hybrid"  # inferred from the two folders
    (tmp_path / "bad.json").write_text(json.dumps({"index": "x", "lamda": 2}))
    with pytest.raises(DenseprError, match="unknown search spec field"):
        SearchSpec.load(tmp_path / "bad.json")
    with pytest.raises(DenseprError, match="needs a BM25 index"):
        open_searcher(kind="hybrid", index=str(tiny_indexes / "flat"))
    with pytest.raises(DenseprError, match="depth must be >= 1"):
        open_searcher(SPECS["hybrid"](tiny_indexes), depth=0)


def test_spec_as_cli_options_parses_back_to_the_same_spec(tiny_indexes):
    from densepr.cli.main import build_parser, spec_from

    for make in SPECS.values():
        spec = dataclasses.replace(make(tiny_indexes), nprobe=4, allow_model_mismatch=True).resolved()
        ns = build_parser().parse_args(["retrieve", *spec.to_cli(), "--questions", "q.jsonl", "--out", "r.json"])
        assert spec_from(ns) == spec, spec.to_cli()


def test_tune_hybrid_saves_the_spec_that_retrieve_and_serve_use(tiny_indexes, questions_jsonl, tmp_path, capsys):
    assert main(["-q", "tune-hybrid", "--index", str(tiny_indexes / "flat"), "--bm25-index", str(tiny_indexes / "bm25"),
                 "--questions", str(questions_jsonl), "--lams", "0.001,1e6", "--ks", "1", "--json",
                 "--save-spec", str(tmp_path / "tuned.json")]) == 0
    best = json.loads(capsys.readouterr().out)["best"]
    tuned = SearchSpec.load(tmp_path / "tuned.json")
    assert (tuned.kind, tuned.fusion, tuned.lam) == ("hybrid", "linear", best)


# Each command's options are the keyword arguments of its function in densepr.pipeline (or densepr.training), with the
# same defaults.
PIPELINE_OF = {"passages": "make_passages", "bm25": "build_bm25", "encode": "encode", "index": "build_index",
               "retrieve": "retrieve", "build-train": "build_train", "train": "train", "mine": "mine",
               "train-reader": "train_reader", "export": "export"}


@pytest.mark.parametrize("command", sorted(PIPELINE_OF))
def test_command_options_are_the_pipeline_functions_keywords(command):
    from densepr import pipeline, training

    function = getattr(pipeline, PIPELINE_OF[command], None) or getattr(training, PIPELINE_OF[command])
    params = inspect.signature(function).parameters
    assert all(p.kind is inspect.Parameter.KEYWORD_ONLY for p in params.values())
    for field, _ in option_fields(COMMANDS[command].options):
        assert field.name in params, f"{command}: --{field.name} is not a keyword of {function.__qualname__}"
        default = params[field.name].default
        if field.default is not dataclasses.MISSING:
            assert default == field.default, f"{command} --{field.name}: {field.default!r} vs {default!r}"


LIGHT_CHECK = """
import sys
{body}
heavy = sorted(m for m in ("torch", "transformers", "faiss", "bm25s") if m in sys.modules)
print("HEAVY", heavy)
"""


@pytest.mark.parametrize("body", [
    "import densepr\ndensepr.__all__",
    "from densepr.cli.main import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass",
    "from densepr.cli.main import main\nassert main(['-q', 'evaluate', sys.argv[1]]) == 0",
], ids=["import", "help", "evaluate"])
def test_package_face_imports_no_torch_transformers_or_faiss(body, tmp_path):
    results = [{"question": "q", "answers": ["a"], "ctxs": [{"id": "1", "title": "t", "text": "a", "score": 1.0,
                                                            "has_answer": True}]}]
    (tmp_path / "r.json").write_text(json.dumps(results))
    proc = subprocess.run([sys.executable, "-c", LIGHT_CHECK.format(body=body), str(tmp_path / "r.json")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "HEAVY []" in proc.stdout, proc.stdout[-2000:]


def test_a_hybrid_specs_dense_half_is_a_valid_dense_spec():
    from densepr.retrieve.spec import SearchSpec

    hybrid = SearchSpec(kind="hybrid", index="flat/", bm25_index="bm25/", lam=50.0)
    dense = hybrid.part("dense")
    assert (dense.kind, dense.index, dense.bm25_index) == ("dense", "flat/", None)
    dense.check()  # `ask --retriever dense` on the default hybrid failed here: it kept the BM25 folder
    assert hybrid.part("bm25").index == "bm25/"


@pytest.mark.parametrize("index", ["bm25", "flat"])
def test_a_moved_corpus_folder_finds_its_passages_by_fingerprint(index, tiny_bert, passages_tsv, tmp_path):
    """An index records its passages file's absolute path; moved elsewhere with the corpus beside it, it still
    opens (the file is found next to the index and proved by its fingerprint), and a different file is refused."""
    from densepr import pipeline

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    passages_tsv = passages_tsv.rename(corpus / "psgs.tsv")
    if index == "bm25":
        pipeline.build_bm25(passages=passages_tsv, out=corpus / index, progress=False)
    else:
        pipeline.encode(passages=passages_tsv, out=corpus / "emb", model=str(tiny_bert), bf16=False, progress=False)
        pipeline.build_index(embeddings=corpus / "emb", out=corpus / index)
    before = open_searcher(index=str(corpus / index)).search(["capital of france"], k=3)
    moved = corpus.rename(tmp_path / "moved")
    assert open_searcher(index=str(moved / index)).search(["capital of france"], k=3) == before
    (moved / "psgs.tsv").write_text((moved / "psgs.tsv").read_text().replace("Paris", "Lyon"))
    with pytest.raises(DenseprError, match="passages file of the index not found"):
        open_searcher(index=str(moved / index))


def test_importing_bm25_keeps_jax_from_taking_the_gpu(tmp_path):
    """bm25s imports JAX where it is installed; densepr asks JAX not to preallocate most of a GPU's memory."""
    code = "import os, densepr.sparse.bm25; print(os.environ['XLA_PYTHON_CLIENT_PREALLOCATE'])"
    env = {k: v for k, v in __import__("os").environ.items() if k != "XLA_PYTHON_CLIENT_PREALLOCATE"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() == "false"
    chosen = subprocess.run([sys.executable, "-c", code], env={**env, "XLA_PYTHON_CLIENT_PREALLOCATE": "true"},
                            capture_output=True, text=True)
    assert chosen.stdout.strip() == "true"  # a user's own setting stands

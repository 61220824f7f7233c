"""Inference backends: ONNX Runtime exports of encoders (plain BERT, HF DPR) and readers agree with torch, are cached by
fingerprint, rebuilt when corrupt, gated on agreement, and every bad choice is one clear error."""

from __future__ import annotations

import json
import logging
import shutil
import sys

import numpy as np
import pytest
import torch

from densepr.backends import choice
from densepr.backends.choice import Backend, choose, passes_gate
from densepr.backends.gate import sample_passages
from densepr.backends.onnx import GRAPH, META
from densepr.cli.main import main
from densepr.corpus.passages import Passage, PassageStore
from densepr.dense.backend import attach_encoder
from densepr.dense.encoder import Encoder
from densepr.errors import DenseprError
from densepr.read import Reader
from densepr.read.backend import attach_reader
from densepr.read.inference import read_passages

pytest.importorskip("onnxruntime")
pytestmark = pytest.mark.kernels  # CI runs these again as an AVX2-only CPU (.ci/run)

PASSAGES = [Passage("1", "Albert Einstein was a physicist born in Ulm in Germany.", "Albert Einstein"),
            Passage("2", "Paris is the capital of France and the Seine river flows through the city.", "Paris"),
            Passage("3", "London is the capital of England on the river Thames.", "London"),
            Passage("4", "A song recorded by Reba and Linda Davis, first on the album.", "Does He Love You")]
QUESTIONS = ["where was einstein born", "what river flows through paris", "who recorded the song with reba"]


def vectors(encoder: Encoder, question: bool) -> np.ndarray:
    if question:
        return encoder.embed(QUESTIONS, bf16=False)
    return encoder.embed([p.title for p in PASSAGES], [p.text for p in PASSAGES], bf16=False)


ENGINES = [("onnx", "fp32"), ("onnx", "int8"), ("openvino", "fp32"), ("openvino", "bf16")]


def needs(engine: str) -> None:
    pytest.importorskip("openvino" if engine == "openvino" else "onnxruntime")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def assert_orders_beyond(reference: np.ndarray, scores: np.ndarray, bound: float) -> None:
    """Within each row, every pair whose reference scores differ by more than ``bound`` is ordered alike in ``scores``
    (pairs closer than that may swap: no precision promises their order). At least one pair must be compared."""
    gap = reference[:, :, None] - reference[:, None, :]
    wide = gap > bound
    assert wide.any(), "no pair of scores is far enough apart to compare"
    assert ((scores[:, :, None] - scores[:, None, :])[wide] > 0).all()


@pytest.mark.parametrize(("engine", "precision"), ENGINES)
@pytest.mark.parametrize("layout", ["bert", "dpr"])
def test_exported_encoders_agree_with_torch_as_the_gate_promises(tmp_path, tiny_bert, tiny_dpr, layout, engine, precision):
    """fp32 graphs give torch's scores to 1e-4; int8 and bf16 graphs promise the gate's agreement (each vector's cosine
    to torch fp32), not orders: the tiny random BERT's scores lie within 1e-3 of each other, which int8 kernels (VNNI or
    AVX2 u8s8, picked by CPUID) may reorder."""
    needs(engine)
    q_folder, p_folder = (tiny_bert, tiny_bert) if layout == "bert" else tiny_dpr
    question, passage = Encoder.from_pretrained(q_folder), Encoder.from_pretrained(p_folder)
    assert question.pooling == ("dpr" if layout == "dpr" else "cls")
    before = [vectors(question, True), vectors(passage, False)]
    for tower, is_question in ((question, True), (passage, False)):
        placed = attach_encoder(tower, Backend(engine, precision), PASSAGES, question=is_question, cache_near=tmp_path)
        assert placed == Backend(engine, precision) and tower.runner is not None
        assert tower.backend() == f"{engine} {precision}"
    after = [vectors(question, True), vectors(passage, False)]
    reference, scores = before[0] @ before[1].T, after[0] @ after[1].T
    if precision == "fp32":
        assert np.allclose(scores, reference, atol=1e-4)
        assert_orders_beyond(reference, scores, 2e-4)
    for old, new in zip(before, after):
        cosine = cosines(old, new)
        assert cosine.mean() >= choice.GATE["cosine_mean"] and cosine.min() >= choice.GATE["cosine_min"]
    if precision == "int8":  # activation scales are per forward pass: each text runs alone, so batches change nothing
        alone = np.concatenate([question.embed([q]) for q in QUESTIONS])
        np.testing.assert_array_equal(question.embed(QUESTIONS), alone)


@pytest.fixture(scope="module")
def spread_bert(tmp_path_factory) -> object:
    """A tiny random BERT initialised 50x wider than usual: its [CLS] vectors differ by input, so scores spread out
    (a text scores 32 against itself, 11-25 against the others) where the usual tiny BERT's tie within 1e-3."""
    from transformers import BertModel

    from conftest import _bert_config, _tokenizer

    folder = tmp_path_factory.mktemp("spread_bert")
    tokenizer = _tokenizer(folder)
    torch.manual_seed(0)
    BertModel(_bert_config(initializer_range=1.0)).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("engine", "precision"), ENGINES)
def test_exported_encoders_rank_wide_gaps_as_torch(tmp_path, spread_bert, engine, precision):
    """On scores spread wide by construction (each text against itself and the others), every engine and precision
    orders, as torch fp32 does, each pair apart by more than 5% of the score scale (int8 moves scores ~0.01% here)."""
    needs(engine)
    encoder = Encoder.from_pretrained(spread_bert)
    texts = [p.text for p in PASSAGES]
    reference = encoder.embed(texts, bf16=False) @ encoder.embed(texts, bf16=False).T
    assert (np.argmax(reference, axis=1) == np.arange(len(texts))).all()  # each text is its own best match
    attach_encoder(encoder, Backend(engine, precision), PASSAGES, question=True, cache_near=tmp_path)
    assert encoder.runner is not None
    got = encoder.embed(texts) @ encoder.embed(texts).T
    assert_orders_beyond(reference, got, 0.05 * np.abs(reference).max())


def test_one_export_serves_both_engines_with_their_own_agreement(tmp_path, tiny_bert):
    needs("openvino")
    encoder = Encoder.from_pretrained(tiny_bert)
    attach_encoder(encoder, Backend("onnx", "fp32"), PASSAGES, cache_near=tmp_path)
    attach_encoder(encoder, Backend("openvino", "bf16"), PASSAGES, cache_near=tmp_path)
    [folder] = (tmp_path / ".densepr-onnx").iterdir()
    meta = json.loads((folder / META).read_text())
    assert {"agreement", "agreement_openvino_bf16"} <= set(meta) and meta["agreement"]["cosine_min"] > 0.9999


def test_exports_are_cached_by_fingerprint_and_rebuilt_when_corrupt(tmp_path, tiny_bert, caplog):
    encoder = Encoder.from_pretrained(tiny_bert)
    attach_encoder(encoder, Backend("onnx", "fp32"), PASSAGES, cache_near=tmp_path)
    [folder] = (tmp_path / ".densepr-onnx").iterdir()
    assert (folder / GRAPH).is_file() and "cosine_mean" in (folder / META).read_text()
    stamp = (folder / GRAPH).stat().st_mtime_ns
    attach_encoder(encoder, Backend("onnx", "fp32"), PASSAGES, cache_near=tmp_path)
    assert (folder / GRAPH).stat().st_mtime_ns == stamp  # loaded, not exported again

    (folder / GRAPH).write_bytes(b"not a graph")
    with caplog.at_level(logging.WARNING):
        attach_encoder(encoder, Backend("onnx", "fp32"), PASSAGES, cache_near=tmp_path)
    assert "exporting it again" in caplog.text
    assert np.allclose(vectors(encoder, False), _torch_vectors(tiny_bert), atol=1e-4)

    with torch.no_grad():  # other weights: another fingerprint, another export
        next(encoder.model.parameters()).add_(0.01)
    attach_encoder(encoder, Backend("onnx", "fp32"), PASSAGES, cache_near=tmp_path)
    assert len(list((tmp_path / ".densepr-onnx").iterdir())) == 2


def _torch_vectors(folder) -> np.ndarray:
    return vectors(Encoder.from_pretrained(folder), False)


def test_a_graph_failing_the_gate_falls_back(tmp_path, tiny_bert, monkeypatch, caplog):
    encoder = Encoder.from_pretrained(tiny_bert)
    monkeypatch.setitem(choice.GATE, "cosine_mean", 1.01)  # nothing can pass
    with caplog.at_level(logging.WARNING):
        placed = attach_encoder(encoder, Backend("onnx", "int8"), PASSAGES, cache_near=tmp_path)
    assert placed == Backend("torch", "fp32") and encoder.runner is None
    assert "onnx int8 disagrees" in caplog.text and "onnx fp32 disagrees" in caplog.text
    assert np.allclose(vectors(encoder, False), _torch_vectors(tiny_bert))


def test_no_sample_means_torch(tmp_path, tiny_bert, caplog):
    encoder = Encoder.from_pretrained(tiny_bert)
    with caplog.at_level(logging.WARNING):
        assert attach_encoder(encoder, Backend("onnx", "int8"), [], cache_near=tmp_path) == Backend("torch", "fp32")
    assert "no passages" in caplog.text


@pytest.fixture(scope="module")
def reader_folder(tmp_path_factory, tiny_bert):
    from transformers import BertTokenizer

    folder = tmp_path_factory.mktemp("reader_bert")
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        shutil.copy(tiny_bert / name, folder / name)
    BertTokenizer.from_pretrained(folder, do_lower_case=True).save_pretrained(folder)
    torch.manual_seed(0)
    Reader.from_pretrained(str(folder)).save(folder / "reader")
    return folder / "reader"


@pytest.fixture(scope="module")
def dpr_reader_folder(tmp_path_factory):
    from transformers import DPRConfig, DPRReader

    from conftest import _bert_config, _tokenizer

    folder = tmp_path_factory.mktemp("dpr_reader")
    tokenizer = _tokenizer(folder)
    torch.manual_seed(3)
    DPRReader(DPRConfig(**{k: v for k, v in _bert_config().to_dict().items() if k in DPRConfig().to_dict()})).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("engine", "precision"), ENGINES)
@pytest.mark.parametrize("kind", ["densepr", "dpr"])
def test_exported_readers_pick_the_spans_torch_picks(tmp_path, reader_folder, dpr_reader_folder, kind, engine, precision):
    needs(engine)
    reader = Reader.load(reader_folder if kind == "densepr" else dpr_reader_folder)
    ctxs = [p.ctx() for p in PASSAGES]
    reference = [read_passages(reader, q, ctxs, bf16=False) for q in QUESTIONS]
    placed = attach_reader(reader, Backend(engine, precision), PASSAGES, cache_near=tmp_path)
    graph = "int8" if precision == "int8" else "fp32"
    [meta] = [json.loads((f / META).read_text()) for f in (tmp_path / ".densepr-onnx").iterdir() if f"-{graph}-" in f.name]
    agreement = meta["agreement" if engine == "onnx" else f"agreement_{engine}_{precision}"]
    # a tiny random reader may well fail the gate in int8 or bf16 (its logits are near ties): then fp32 runs
    assert placed == Backend(engine, precision if passes_gate(agreement) else "fp32") and reader.backend() == str(placed)
    got = [read_passages(reader, q, ctxs) for q in QUESTIONS]
    for mine, theirs in zip(got, reference):
        assert [r.selection for r in mine] == pytest.approx([r.selection for r in theirs], abs=1e-3 if placed.precision == "fp32" else 0.2)
        if placed.precision == "fp32":
            assert [(r.start, r.end, r.answer) for r in mine] == [(r.start, r.end, r.answer) for r in theirs]


@pytest.mark.parametrize("lite", [True, False])
def test_the_readers_int8_graph_keeps_its_early_down_projections_fp32(tmp_path, reader_folder, lite):
    """2 layers: the first layer's feed-forward down-projection (64 -> 32) stays a float MatMul, every other weight
    product is quantised, whichever module layout (lite or transformers') was exported."""
    import onnx

    attach_reader(Reader.load(reader_folder, lite=lite), Backend("onnx", "int8"), PASSAGES, cache_near=tmp_path)
    (folder,) = (tmp_path / ".densepr-onnx").glob("*-int8-*")
    kept = json.loads((folder / META).read_text())["fp32_nodes"]
    graph = onnx.load(str(folder / GRAPH)).graph
    nodes, weights = graph.node, {w.name for w in graph.initializer}
    float_weight_products = [n.name for n in nodes if n.op_type == "MatMul" and n.input[1] in weights]
    assert len(kept) == 1 and "0" in kept[0] and "dense" in kept[0]
    assert float_weight_products == kept
    assert sum(n.op_type == "MatMulInteger" for n in nodes) >= 2 * 6 - 1  # q, k, v, out, up, down a layer, one kept


def test_choose_rules_and_errors(monkeypatch):
    monkeypatch.setattr(choice, "cpu_supports_bf16", lambda: False)
    assert choose("auto") == Backend("onnx", "int8")
    assert choose("auto", "fp32") == Backend("onnx", "fp32")
    assert choose("auto", gpu=True) == Backend("torch", "bf16")
    assert choose("auto", int8=False) == Backend("onnx", "fp32")  # the reader: auto never picks int8
    assert choose("auto", "int8", int8=False) == Backend("onnx", "int8")  # unless asked
    assert choose("torch") == Backend("torch", "fp32") and choose("onnx") == Backend("onnx", "fp32")
    monkeypatch.setattr(choice, "cpu_supports_bf16", lambda: True)
    assert choose("auto") == Backend("torch", "bf16") and choose("torch") == Backend("torch", "bf16")
    assert choose("auto", "int8") == Backend("onnx", "int8")
    monkeypatch.setattr(choice, "onnxruntime_installed", lambda: False)
    assert choose("auto") == Backend("torch", "bf16")
    monkeypatch.setattr(choice, "cpu_supports_bf16", lambda: False)
    assert choose("auto") == Backend("torch", "fp32")
    assert choose("openvino") == Backend("openvino", "fp32") and choose("openvino", "bf16") == Backend("openvino", "bf16")
    for args, message in ((("auto", "int8"), "int8 runs on the onnx backend"), (("torch", "int8"), "runs fp32 or bf16"),
                          (("onnx", "bf16"), "runs fp32 or int8"), (("openvino", "int8"), "runs fp32 or bf16"),
                          (("tensorrt",), "unknown backend"), (("auto", "fp8"), "unknown precision")):
        with pytest.raises(DenseprError, match=message):
            choose(*args)
    for engine in ("onnx", "openvino"):
        with pytest.raises(DenseprError, match=f"the {engine} backend runs on CPU"):
            choose(engine, gpu=True)
    monkeypatch.setattr(choice, "cpu_supports_bf16", lambda: True)
    assert choose("openvino") == Backend("openvino", "bf16")
    # long jobs on a bf16 CPU: OpenVINO bf16 where installed; one-shot commands and GPUs keep torch
    monkeypatch.setattr(choice, "openvino_installed", lambda: True)
    assert choose("auto", bulk=True) == Backend("openvino", "bf16") and choose("auto", int8=False, bulk=True) == Backend("openvino", "bf16")
    assert choose("auto") == Backend("torch", "bf16") and choose("auto", gpu=True, bulk=True) == Backend("torch", "bf16")
    assert choose("auto", "fp32", bulk=True) == Backend("torch", "fp32")
    monkeypatch.setattr(choice, "openvino_installed", lambda: False)
    assert choose("auto", bulk=True) == Backend("torch", "bf16")
    monkeypatch.setattr(choice, "cpu_supports_bf16", lambda: False)
    monkeypatch.setattr(choice, "openvino_installed", lambda: True)
    assert choose("auto", bulk=True) == Backend("torch", "fp32")  # measured on bf16 CPUs only
    # a lean install (no torch): ONNX Runtime everywhere, OpenVINO bf16 for long jobs on bf16 CPUs; torch asked: an error
    monkeypatch.setattr(choice, "torch_installed", lambda: False)
    monkeypatch.setattr(choice, "onnxruntime_installed", lambda: True)
    assert choose("auto") == Backend("onnx", "int8") and choose("auto", int8=False) == Backend("onnx", "fp32")
    monkeypatch.setattr(choice, "cpu_supports_bf16", lambda: True)
    assert choose("auto") == Backend("onnx", "int8") and choose("auto", bulk=True) == Backend("openvino", "bf16")
    for args in (("torch",), ("torch", "bf16"), ("auto", "bf16")):
        with pytest.raises(DenseprError, match=r"densepr\[train\]"):
            choose(*args)


def test_bf16_asked_on_a_cpu_without_bf16_units_warns(monkeypatch, caplog):
    monkeypatch.setattr(choice, "cpu_supports_bf16", lambda: False)
    with caplog.at_level(logging.WARNING, logger="densepr.backends.choice"):
        assert choose("openvino", "bf16") == Backend("openvino", "bf16") and choose("torch", "bf16") == Backend("torch", "bf16")
        assert choose("torch", "bf16", gpu=True) == Backend("torch", "bf16") and choose("auto") == Backend("onnx", "int8")
        assert choose("auto", "bf16") == Backend("torch", "bf16")
    assert [r.message.split(":")[1].split(" bf16")[0].strip() for r in caplog.records] == ["openvino", "torch", "torch"]
    caplog.clear()
    monkeypatch.setattr(choice, "cpu_supports_bf16", lambda: True)
    with caplog.at_level(logging.WARNING, logger="densepr.backends.choice"):
        choose("openvino", "bf16"), choose("torch", "bf16")
    assert not caplog.records


@pytest.mark.parametrize(("engine", "module"), [("onnx", "onnxruntime"), ("openvino", "openvino")])
def test_a_missing_engine_is_one_clear_error(tmp_path, tiny_bert, monkeypatch, engine, module):
    encoder = Encoder.from_pretrained(tiny_bert)
    if engine == "onnx":
        attach_encoder(encoder, Backend("onnx", "fp32"), PASSAGES, cache_near=tmp_path)  # a cached export: still refused
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    with pytest.raises(DenseprError, match=rf"pip install 'densepr\[{engine}\]'"):
        attach_encoder(encoder, Backend(engine, "fp32"), PASSAGES, cache_near=tmp_path)


def test_cli_runs_and_names_the_backend(tmp_path, tiny_indexes, capsys):
    out = tmp_path / "res.json"
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "where was einstein born", "answer": ["Ulm"]}\n')
    ranked = {}
    for backend in ("torch", "onnx"):
        code = main(["-q", "retrieve", "--index", str(tiny_indexes / "flat"), "--questions", str(questions), "--out", str(out),
                     "--backend", backend, "--precision", "fp32", "--top-k", "7"])
        assert code == 0
        ranked[backend] = {c["id"]: float(c["score"]) for c in json.loads(out.read_text())[0]["ctxs"]}
    # every passage with the same score (the random tiny BERT ties some within 1e-5, which either order may rank first)
    assert ranked["onnx"] == pytest.approx(ranked["torch"], abs=1e-4) and len(ranked["torch"]) == 7
    assert list(ranked["onnx"].values()) == pytest.approx(list(ranked["torch"].values()), abs=1e-4)
    capsys.readouterr()
    code = main(["-q", "retrieve", "--index", str(tiny_indexes / "flat"), "--questions", str(questions), "--out", str(out),
                 "--backend", "onnx", "--precision", "bf16"])
    err = capsys.readouterr().err
    assert code == 2 and "the onnx backend runs fp32 or int8, not bf16" in err and len(err.strip().splitlines()) == 1


def test_passage_sample_spreads_over_the_corpus(passages_tsv):
    store = PassageStore(passages_tsv)
    sample = sample_passages(store, 3)
    assert [p.id for p in sample] == [store[0].id, store[len(store) // 2].id if len(store) % 2 else sample[1].id, store[len(store) - 1].id]
    assert sample_passages(store, 1000) == [store[i] for i in range(len(store))]


def test_auto_bf16_leaves_small_batches_in_fp32(tiny_bert):
    from densepr.dense.encoder import BF16_MIN_TOKENS

    encoder = Encoder.from_pretrained(tiny_bert)
    assert attach_encoder(encoder, Backend("torch", "bf16", chosen=True), PASSAGES).chosen
    assert encoder.precision is None  # auto's pick: the CPU default, batch by batch
    assert not encoder._batch_bf16(True, None, BF16_MIN_TOKENS - 1, "cpu")
    assert encoder._batch_bf16(True, None, BF16_MIN_TOKENS, "cpu") and encoder._batch_bf16(True, None, 1, "cuda")
    assert encoder._batch_bf16(True, True, 1, "cpu")  # asked for in the call
    attach_encoder(encoder, choose("torch", "bf16"), PASSAGES)
    assert encoder.precision == "bf16" and encoder._batch_bf16(True, None, 1, "cpu")  # asked for by --precision


@pytest.mark.parametrize("bf16_cpu, ort, gpu, asked, expected", [
    (True, True, False, ("auto", None), ("onnx", "fp32")),      # a bf16 CPU with ONNX Runtime: steady memory
    (True, False, False, ("auto", None), ("auto", None)),       # without it, auto's usual torch bf16
    (False, True, False, ("auto", None), ("auto", None)),       # AVX2: auto's usual ONNX int8
    (True, True, True, ("auto", None), ("auto", None)),         # a GPU: torch
    (True, True, False, ("torch", None), ("torch", None)),      # asked for: kept
    (True, True, False, ("auto", "bf16"), ("auto", "bf16")),
])
def test_a_server_on_a_bf16_cpu_runs_onnx_fp32(bf16_cpu, ort, gpu, asked, expected, monkeypatch):
    monkeypatch.setattr(choice, "cpu_supports_bf16", lambda: bf16_cpu)
    monkeypatch.setattr(choice, "onnxruntime_installed", lambda: ort)
    assert choice.serving_backend(*asked, gpu=gpu) == expected


def test_serve_picks_its_backend_and_says_so(tiny_indexes, monkeypatch, caplog):
    """create_app turns auto into ONNX Runtime fp32 on a bf16 CPU, and the question encoder then runs the graph."""
    from densepr.serve.app import create_app

    monkeypatch.setattr(choice, "cpu_supports_bf16", lambda: True)
    with caplog.at_level(logging.INFO):
        app = create_app(index=str(tiny_indexes / "flat"))
    assert "serving questions on onnx fp32" in caplog.text
    assert app.state.service.searcher.dense.model.question_encoder.backend() == "onnx fp32"


def test_a_served_reader_keeps_the_backend_asked_for(tiny_indexes, tiny_bert, tmp_path, monkeypatch):
    """On a bf16 CPU the server's questions go to ONNX Runtime fp32, its reader stays on auto's torch bf16."""
    from fastapi.testclient import TestClient

    from densepr.serve.app import create_app

    Reader.from_pretrained(str(tiny_bert)).save(tmp_path / "reader")
    monkeypatch.setattr(choice, "cpu_supports_bf16", lambda: True)
    monkeypatch.setattr("densepr.hardware.cpu_supports_bf16", lambda: True)
    app = create_app(index=str(tiny_indexes / "flat"), reader=tmp_path / "reader")
    assert app.state.service.searcher.dense.model.question_encoder.backend() == "onnx fp32"
    with TestClient(app) as client:
        health = client.get("/health").json()
        assert client.post("/ask", json={"question": "where was einstein born", "k": 2}).status_code == 200
    assert health["backends"]["reader"] == "torch bf16"


def test_auto_runs_what_this_cpu_supports(tmp_path, tiny_bert):
    """Unpatched: auto picks, on this CPU as CPUID reports it (an emulated AVX2 CPU included), torch bf16 where it has
    bf16 units and ONNX Runtime int8 elsewhere (the reader: ONNX Runtime fp32 there), and what it picks runs within
    the gate's agreement with torch fp32."""
    from densepr.hardware import cpu_supports_bf16

    bf16 = cpu_supports_bf16()
    assert choose("auto") == (Backend("torch", "bf16") if bf16 else Backend("onnx", "int8"))
    assert choose("auto", int8=False) == (Backend("torch", "bf16") if bf16 else Backend("onnx", "fp32"))
    encoder = Encoder.from_pretrained(tiny_bert)
    reference = vectors(encoder, False)
    assert attach_encoder(encoder, choose("auto"), PASSAGES, cache_near=tmp_path) == choose("auto")
    got = encoder.embed([p.title for p in PASSAGES], [p.text for p in PASSAGES])
    cosine = cosines(reference, got)
    assert cosine.mean() >= choice.GATE["cosine_mean"] and cosine.min() >= choice.GATE["cosine_min"]

"""ONNX graphs written from a BERT's weights without torch compute what torch computes: towers (cls, mean, normalised,
Hugging Face DPR), the reader, and the shipped defaults; loading and answering with them imports no torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from densepr.backends.choice import GATE, Backend
from densepr.corpus.passages import Passage
from densepr.dense.biencoder import BiEncoder, load_tower
from densepr.dense.graph_tower import GraphTower
from densepr.dense.loading import SHIPPED_DEFAULT, tower_spec
from densepr.errors import DenseprError
from densepr.quickstart import default_reader
from densepr.read.graph_reader import GraphReader, load_reader
from densepr.read.inference import read_passages

TEXTS = ["where was einstein born", "paris is the capital of france", "a song by reba and linda davis"]
PASSAGES = [Passage(str(i), t, f"title {i}") for i, t in enumerate(TEXTS * 3)]


@pytest.mark.parametrize(("pooling", "normalize"), [("cls", False), ("mean", False), ("mean", True)])
def test_a_graph_tower_gives_torchs_vectors(tiny_bert, tmp_path, pooling, normalize):
    from densepr.dense.encoder import Encoder

    torch_tower = Encoder.from_pretrained(tiny_bert, pooling=pooling)
    torch_tower.normalize = normalize
    spec = tower_spec(tiny_bert, pooling)
    spec.normalize = normalize
    graph = GraphTower.load(spec)
    assert graph is not None and graph.dim == torch_tower.dim
    for pairs in (None, TEXTS[::-1]):
        want = torch_tower.embed(TEXTS, pairs, bf16=False)
        np.testing.assert_allclose(graph.embed(TEXTS, pairs), want, atol=1e-4)
    assert graph.backend() == "onnx fp32"


def test_hf_dpr_towers_run_as_graphs(tiny_dpr):
    for folder in tiny_dpr:
        from densepr.dense.encoder import Encoder

        graph = load_tower(folder, graph=True)
        assert isinstance(graph, GraphTower) and graph.pooling == "dpr"
        np.testing.assert_allclose(graph.embed(TEXTS), Encoder.from_pretrained(folder).embed(TEXTS, bf16=False), atol=1e-4)


def test_the_graph_reader_reads_as_torch(tiny_bert, tmp_path):
    from densepr.read.model import Reader

    Reader.from_pretrained(str(tiny_bert)).save(tmp_path / "reader")
    torch_reader, graph = Reader.load(tmp_path / "reader", lite=True), GraphReader.load(tmp_path / "reader")
    assert graph is not None
    ctxs = [p.ctx() for p in PASSAGES]
    batch = torch_reader.encode(TEXTS[:1] * len(ctxs), ctxs)
    for want, got in zip(torch_reader.logits(batch, bf16=False), graph.logits(graph.encode(TEXTS[:1] * len(ctxs), ctxs))):
        np.testing.assert_allclose(got, want, atol=1e-4)
    mine, theirs = read_passages(graph, TEXTS[0], ctxs), read_passages(torch_reader, TEXTS[0], ctxs, bf16=False)
    assert [(r.start, r.end, r.answer) for r in mine] == [(r.start, r.end, r.answer) for r in theirs]


@pytest.mark.kernels
@pytest.mark.parametrize("kind", ["encoder", "reader"])
def test_graphs_quantised_to_int8_pass_the_gate_or_fall_back_to_fp32(tiny_bert, tmp_path, kind):
    """int8 graphs run only when they agree with the fp32 graph as the gate asks (recorded beside the graph)."""
    from densepr.read.model import Reader

    if kind == "encoder":
        runner_of = GraphTower.load(tower_spec(tiny_bert))
        assert runner_of is not None
        placed = runner_of.attach(Backend("onnx", "int8"), PASSAGES, question=True)
    else:
        Reader.from_pretrained(str(tiny_bert)).save(tmp_path / "reader")
        runner_of = GraphReader.load(tmp_path / "reader")
        assert runner_of is not None
        placed = runner_of.attach(Backend("onnx", "int8"), PASSAGES)
    assert runner_of.runner is not None and runner_of.backend() == f"onnx {placed.precision}"
    agreement = runner_of.runner.agreement or {}
    assert placed.precision == "fp32" or all(v >= GATE[k] for k, v in agreement.items())


def test_the_torch_backend_on_a_graph_tower_is_one_clear_error(tiny_bert):
    graph = GraphTower.load(tower_spec(tiny_bert))
    assert graph is not None
    with pytest.raises(DenseprError, match=r"densepr\[train\]"):
        graph.attach(Backend("torch", "fp32"), PASSAGES)


@pytest.mark.slow
def test_the_shipped_default_encoder_and_reader_match_torch():
    """The fp16 default encoder shipped in densepr gives the packaged fp32 MiniLM's vectors (cosine >= 0.9999), and the
    default reader's graph gives torch's logits."""
    from densepr.dense.encoder import Encoder
    from densepr.quickstart import default_reader
    from densepr.read.model import Reader

    shipped = load_tower("default", graph=True)
    assert isinstance(shipped, GraphTower) and shipped.source == SHIPPED_DEFAULT
    assert shipped.pooling == "mean" and shipped.normalize and shipped.max_length == 256
    reference = Encoder.from_pretrained(SHIPPED_DEFAULT).embed(TEXTS, bf16=False)
    assert ((shipped.embed(TEXTS) * reference).sum(1) > 0.9999).all()
    # its int8 graph (what auto runs on CPUs without bf16 units) keeps the gate's agreement with torch fp32 itself
    assert shipped.attach(Backend("onnx", "int8"), PASSAGES) == Backend("onnx", "int8")
    texts, pairs = [p.title for p in PASSAGES], [p.text for p in PASSAGES]
    cosine = (shipped.embed(texts, pairs) * Encoder.from_pretrained(SHIPPED_DEFAULT).embed(texts, pairs, bf16=False)).sum(1)
    assert cosine.mean() >= GATE["cosine_mean"] and cosine.min() >= GATE["cosine_min"]
    folder = default_reader()
    assert folder is not None
    graph, torch_reader = load_reader(folder, graph=True), Reader.load(folder, lite=True)
    assert isinstance(graph, GraphReader)
    ctxs = [p.ctx() for p in PASSAGES[:3]]
    for want, got in zip(torch_reader.logits(torch_reader.encode(TEXTS[:1] * 3, ctxs), bf16=False),
                         graph.logits(graph.encode(TEXTS[:1] * 3, ctxs))):
        np.testing.assert_allclose(got, want, atol=1e-3)


def test_an_int8_tower_gives_a_text_the_same_vector_alone_as_in_any_batch():
    """Dynamic int8 quantisation scales activations over the whole batch, so the int8 default encoder runs one text
    at a time: a question's vector (and so ``ask``'s passages) does not depend on what else is encoded with it."""
    tower = load_tower("default", graph=True)
    assert tower.attach(Backend("onnx", "int8"), PASSAGES, question=True) == Backend("onnx", "int8")
    questions = ["who", "who sang the song a country boy can survive in 1982 and in which album", *TEXTS]
    alone = np.concatenate([tower.embed([q]) for q in questions])
    np.testing.assert_array_equal(tower.embed(questions), alone)
    np.testing.assert_array_equal(tower.embed(questions[::-1], batch_size=4)[::-1], alone)


def test_the_int8_reader_reads_a_passage_the_same_alone_as_among_others():
    """The reader's int8 graph (``--precision int8``) reads one passage at a time too: a passage's logits, span and
    selection do not depend on the passages read with it (before, 15 of 120 held-out SQuAD answers at k = 5 differed)."""
    passages = [Passage(str(i), text, title) for i, (title, text) in enumerate([
        ("Albert Einstein", "Albert Einstein was a German-born theoretical physicist who developed the theory of relativity. "
                            "He was born in Ulm, in the Kingdom of Württemberg, on 14 March 1879."),
        ("Paris", "Paris is the capital and most populous city of France, with an estimated population of 2,102,650 "
                  "residents in January 2023."),
        ("The Last Supper", "The Last Supper is a mural painting by the Italian High Renaissance artist Leonardo da "
                            "Vinci, dated to c. 1495-1498, in the Convent of Santa Maria delle Grazie in Milan."),
        ("Apollo 11", "Apollo 11 was the first spaceflight to land humans on the Moon. Neil Armstrong and Buzz Aldrin "
                      "landed the lunar module Eagle on July 20, 1969."),
        ("Reba McEntire", "Reba McEntire is an American singer, songwriter and actress, who recorded Does He Love You "
                          "with Linda Davis in 1993.")])]
    reader = load_reader(default_reader(), graph=True)
    reader.runner = reader._runner(Backend("onnx", "int8"))  # the graph itself: whether the gate passes depends on the sample
    assert reader.runner.per_row
    ctxs = [p.ctx() for p in passages]
    for question in ("where was einstein born", "who painted the last supper"):
        alone = [read_passages(reader, question, [c])[0] for c in ctxs]
        for mine, theirs in zip(read_passages(reader, question, ctxs), alone):
            assert (mine.selection, mine.span_score, mine.answer, mine.span_logprob) == (
                theirs.selection, theirs.span_score, theirs.answer, theirs.span_logprob)


def test_retrieving_and_answering_on_graphs_import_no_torch(tiny_indexes, tiny_bert, tmp_path):
    """A fresh process retrieves and reads with the graph backends and never imports torch or transformers."""
    from densepr.read.model import Reader

    Reader.from_pretrained(str(tiny_bert)).save(tmp_path / "reader")
    script = f"""
import sys
from densepr.cli.main import main
code = main(["-q", "ask", "where was einstein born", "--index", {str(tiny_indexes / "flat")!r}, "--reader",
             {str(tmp_path / "reader")!r}, "--backend", "onnx", "--json"])
print("TORCH" if {{"torch", "transformers"}} & set(sys.modules) else "NO-TORCH", code)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "NO-TORCH 0" and json.loads(lines[0])["answer"] is not None
    assert isinstance(BiEncoder.load(tiny_bert, graph=True).question_encoder, GraphTower)


def test_an_exported_checkpoint_loads_as_graph_towers(tiny_dpr, tmp_path):
    """``densepr export``: a densepr checkpoint of two towers becomes an ONNX folder whose towers load without torch's
    models and compute what torch computes."""
    from densepr import training
    from densepr.dense.encoder import Encoder

    checkpoint = BiEncoder(Encoder.from_pretrained(tiny_dpr[0]), Encoder.from_pretrained(tiny_dpr[1]))
    checkpoint.save(tmp_path / "ckpt")
    assert training.export(model=str(tmp_path / "ckpt"), out=tmp_path / "onnx") == tmp_path / "onnx"
    lean, torch_model = BiEncoder.load(tmp_path / "onnx"), BiEncoder.load(tmp_path / "ckpt")
    assert isinstance(lean.question_encoder, GraphTower) and isinstance(lean.passage_encoder, GraphTower)
    np.testing.assert_allclose(lean.encode_questions(TEXTS), torch_model.encode_questions(TEXTS, bf16=False), atol=1e-4)
    np.testing.assert_allclose(lean.encode_passages(PASSAGES), torch_model.encode_passages(PASSAGES, bf16=False), atol=1e-4)


def test_an_exported_dpr_reader_reads_as_torch(tmp_path):
    import torch
    from transformers import DPRConfig, DPRReader

    from conftest import _bert_config, _tokenizer
    from densepr import training
    from densepr.read.model import Reader

    folder = tmp_path / "dpr_reader"
    tokenizer = _tokenizer(folder)
    torch.manual_seed(3)
    DPRReader(DPRConfig(**{k: v for k, v in _bert_config().to_dict().items() if k in DPRConfig().to_dict()})).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    assert load_reader(folder, graph=True).__class__.__name__ == "Reader"  # DPRReader's layout: torch, until exported
    training.export(model=str(folder), out=tmp_path / "onnx", reader=True)
    graph, torch_reader = GraphReader.load(tmp_path / "onnx"), Reader.load(folder)
    assert graph is not None and graph.input_format == "dpr"
    ctxs = [p.ctx() for p in PASSAGES]
    mine, theirs = read_passages(graph, TEXTS[0], ctxs), read_passages(torch_reader, TEXTS[0], ctxs, bf16=False)
    assert [(r.start, r.end) for r in mine] == [(r.start, r.end) for r in theirs]
    assert [r.selection for r in mine] == pytest.approx([r.selection for r in theirs], abs=1e-4)

"""BertLite: transformers' BERT outputs without its model code, for every inference path that loads a plain BERT."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from densepr.dense.bert_lite import BertLite
from densepr.dense.encoder import Encoder
from densepr.dense.tokenizer_lite import TokenizerLite
from densepr.errors import DenseprError
from densepr.read import Reader

TEXTS = ["einstein was born in ulm", "paris is the capital of france and the seine river flows through the city"]


def _batch(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)(TEXTS, ["physicist", "city"], padding=True, return_tensors="pt")


def _bert(folder, tiny_bert, pooler=True, prefix="", half=False, **config):
    """A tiny BERT saved as its own folder: with or without pooler, head-model key prefix, fp16 weights."""
    import shutil

    from safetensors.torch import load_file, save_file
    from transformers import BertConfig, BertModel

    shutil.copytree(tiny_bert, folder)
    torch.manual_seed(3)
    model = BertModel(BertConfig.from_pretrained(tiny_bert, **config), add_pooling_layer=pooler)
    model.save_pretrained(folder)
    state = {prefix + k: (v.half() if half else v).contiguous() for k, v in load_file(folder / "model.safetensors").items()}
    save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    return model.float().eval()


@pytest.mark.parametrize("variant", [{}, {"pooler": False}, {"prefix": "bert."}, {"half": True},
                                     {"hidden_act": "gelu_new"}])
def test_outputs_equal_transformers_bert(variant, tiny_bert, tmp_path):
    reference = _bert(tmp_path / "m", tiny_bert, **variant)
    if variant.get("half"):
        reference = reference.half().float()  # the fp16-rounded weights the folder holds
    lite = BertLite.load(tmp_path / "m")
    assert lite is not None
    batch = _batch(tmp_path / "m")
    mask = batch["attention_mask"].bool()
    with torch.inference_mode():
        want, got = reference(**batch), lite(**batch)
        assert torch.allclose(got.last_hidden_state[mask], want.last_hidden_state[mask], atol=1e-5)
        if variant.get("pooler", True):
            assert torch.allclose(got.pooler_output, want.pooler_output, atol=1e-5)
        else:
            assert got.pooler_output is None
        lite.set_attn_implementation("eager")
        assert torch.allclose(lite(**batch).last_hidden_state[mask], want.last_hidden_state[mask], atol=1e-5)


@pytest.mark.parametrize("config", [{"position_embedding_type": "relative_key"}, {"model_type": "roberta"},
                                    {"hidden_act": "silu"}, {"is_decoder": True}])
def test_other_models_are_left_to_transformers(config, tiny_bert, tmp_path):
    _bert(tmp_path / "m", tiny_bert)
    path = tmp_path / "m" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    assert BertLite.load(tmp_path / "m") is None


def test_unknown_or_missing_weights_are_left_to_transformers(tiny_bert, tmp_path):
    from safetensors.torch import load_file, save_file

    _bert(tmp_path / "m", tiny_bert)
    weights = tmp_path / "m" / "model.safetensors"
    state = load_file(weights)
    save_file({k: v for k, v in state.items() if "layer.1." not in k}, weights)
    assert BertLite.load(tmp_path / "m") is None
    weights.write_bytes(b"not a safetensors file")
    assert BertLite.load(tmp_path / "m") is None


def test_lite_towers_and_reader_compute_what_the_training_ones_do(tiny_bert, tmp_path):
    full, lite = Encoder.from_pretrained(tiny_bert, pooling="mean"), Encoder.from_pretrained(tiny_bert, pooling="mean", lite=True)
    assert isinstance(lite.model, BertLite) and not isinstance(full.model, BertLite)
    assert np.allclose(lite.embed(TEXTS, bf16=False), full.embed(TEXTS, bf16=False), atol=1e-5)
    with pytest.raises(DenseprError, match="inference only"):
        lite.save(tmp_path / "tower")

    Reader.from_pretrained(str(tiny_bert)).save(tmp_path / "reader")
    ctxs = [{"title": "Ulm", "text": "einstein was born in ulm in germany"}] * 2
    logits = []
    for reader in (Reader.load(tmp_path / "reader"), Reader.load(tmp_path / "reader", lite=True)):
        batch = reader.encode(["where was einstein born", "who was born in ulm"], ctxs)
        with torch.inference_mode():
            logits.append(reader(**batch.tensors))
    for want, got in zip(*logits):
        assert torch.allclose(got, want, atol=1e-5)


@pytest.mark.kernels
def test_a_lite_tower_encodes_bf16_batches_with_one_bf16_copy_of_its_weights(tiny_bert, monkeypatch):
    lite, full = Encoder.from_pretrained(tiny_bert, lite=True), Encoder.from_pretrained(tiny_bert)
    keys = set(lite.state_dict())
    fp32 = lite.embed(TEXTS, bf16=False)
    assert lite._bf16_model is None
    bf16 = lite.embed(TEXTS, bf16=True)
    copy = lite._bf16_model
    assert copy is not None and copy.embeddings.word_embeddings.weight is lite.model.embeddings.word_embeddings.weight
    assert {p.dtype for n, p in copy.named_parameters() if n != "embeddings.word_embeddings.weight"} == {torch.bfloat16}
    assert {p.dtype for p in lite.parameters()} == {torch.float32} and set(lite.state_dict()) == keys  # not a submodule
    cos = (fp32 * bf16).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert bf16.dtype == np.float32 and cos.min() > 0.99 and not np.array_equal(fp32, bf16)
    lite.embed(TEXTS[:1], bf16=True)
    assert lite._bf16_model is copy  # made once

    # the CPU's default (bf16 units assumed): a lite tower runs even a lone short question in bf16, from its copy;
    # a transformers tower keeps such a batch in fp32 (autocast is slower there)
    monkeypatch.setattr("densepr.dense.encoder.use_bf16", lambda device, requested=None, precision=None:
                        requested if requested is not None else True)
    assert lite.backend() == "torch bf16" and full.backend().startswith("torch bf16 (fp32 under")
    np.testing.assert_array_equal(lite.embed(TEXTS[:1]), lite.embed(TEXTS[:1], bf16=True))
    np.testing.assert_array_equal(full.embed(TEXTS[:1]), full.embed(TEXTS[:1], bf16=False))


@pytest.mark.kernels
def test_a_lite_reader_reads_bf16_with_one_bf16_copy_of_its_weights(tiny_bert, tmp_path):
    from densepr.read.inference import read_passages

    Reader.from_pretrained(str(tiny_bert)).save(tmp_path / "reader")
    ctxs = [{"title": "Ulm", "text": "einstein was born in ulm in germany"}, {"title": "Paris", "text": "paris is in france"}]
    lite = Reader.load(tmp_path / "reader", lite=True)
    fp32 = read_passages(lite, "where was einstein born", ctxs, bf16=False)
    assert lite._bf16_copy is None
    bf16 = read_passages(lite, "where was einstein born", ctxs, bf16=True)
    copy = lite._bf16_copy  # made by the first bf16 read, and kept
    assert copy is not None and copy is lite.bf16_copy() and copy.tokenizer is lite.tokenizer
    assert {p.dtype for n, p in copy.named_parameters() if "word_embeddings" not in n} == {torch.bfloat16}
    assert {p.dtype for p in lite.parameters()} == {torch.float32}
    assert lite._bf16_copy not in list(lite.modules())  # not a submodule: no second set of weights in state_dict()
    batch = lite.encode(["where was einstein born"] * 2, ctxs)
    with torch.inference_mode():
        for want, got in zip(lite(**batch.tensors), copy(**batch.tensors)):
            assert torch.allclose(got, want, atol=0.1, rtol=0.05)
    assert [r.selection for r in bf16] == pytest.approx([r.selection for r in fp32], abs=0.1)
    with pytest.raises(DenseprError, match="inference"):
        Reader.load(tmp_path / "reader").bf16_copy()


def test_answering_imports_no_transformers(tiny_bert, tmp_path):
    """The point of BertLite and TokenizerLite: an inference load imports no transformers (seconds of imports)."""
    Reader.from_pretrained(str(tiny_bert)).save(tmp_path / "reader")
    code = f"""
import sys
from densepr.dense.encoder import Encoder
from densepr.read import Reader
Encoder.from_pretrained({str(tiny_bert)!r}, lite=True).embed(["a question"], bf16=False)
reader = Reader.load({str(tmp_path / "reader")!r}, lite=True)
reader(**reader.encode(["a question"], [{{"title": "t", "text": "the answer"}}]).tensors)
print("transformers" in sys.modules, "torch._dynamo" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]


PAIRS = ["Albert Einstein [SEP] " + "physicist born in ulm " * 80, "Paris [SEP] capital"]
ODD = ["Who developed the theory of relativity?", "Ça va? naïve café — 東京 🙂 " * 20]


@pytest.mark.parametrize("folder", ["tiny", "reader"])
def test_tokenizer_lite_gives_transformers_ids_offsets_and_sequence_ids(folder, tiny_bert):
    from pathlib import Path

    from transformers import BertTokenizerFast

    path = tiny_bert if folder == "tiny" else Path(__file__).parents[1] / "src/densepr/default/reader"
    hf, lite = BertTokenizerFast.from_pretrained(path), TokenizerLite.load(path)
    assert lite is not None and (lite.sep_token_id, lite.model_max_length) == (hf.sep_token_id, hf.model_max_length)
    for pairs in (None, PAIRS):
        want, got = hf(ODD, pairs, truncation=True, max_length=64), lite(ODD, pairs, truncation=True, max_length=64)
        assert {k: want[k] for k in got} == dict(got)
        padded = hf.pad(dict(want), return_tensors="pt", pad_to_multiple_of=8)
        assert all(torch.equal(padded[k], v) for k, v in lite.pad(dict(got), return_tensors="pt", pad_to_multiple_of=8).items())
    kwargs = dict(truncation="longest_first", max_length=64, padding="longest", pad_to_multiple_of=32,
                  return_offsets_mapping=True, return_tensors="pt")
    want, got = hf(ODD, PAIRS, **kwargs), lite(ODD, PAIRS, **kwargs)
    assert set(want.keys()) == set(got) and all(torch.equal(want[k], got[k]) for k in got)
    assert [want.sequence_ids(i) for i in range(2)] == [got.sequence_ids(i) for i in range(2)]
    assert hf(ODD, add_special_tokens=False)["input_ids"] == lite(ODD, add_special_tokens=False)["input_ids"]


def test_tokenizer_lite_leaves_other_tokenizers_to_transformers(tiny_bert, tmp_path):
    import shutil

    shutil.copytree(tiny_bert, tmp_path / "t")
    config = tmp_path / "t" / "tokenizer_config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "tokenizer_class": "RobertaTokenizer"}))
    assert TokenizerLite.load(tmp_path / "t") is None
    (tmp_path / "t" / "tokenizer.json").unlink()
    config.write_text(json.dumps({**json.loads(config.read_text()), "tokenizer_class": "BertTokenizer"}))
    assert TokenizerLite.load(tmp_path / "t") is None

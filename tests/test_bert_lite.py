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


def test_answering_imports_no_transformers_model_code(tiny_bert, tmp_path):
    """The point of BertLite: an inference load skips transformers.modeling_utils (seconds of imports)."""
    code = f"""
import sys
from densepr.dense.encoder import Encoder
Encoder.from_pretrained({str(tiny_bert)!r}, lite=True).embed(["a question"], bf16=False)
print("transformers.modeling_utils" in sys.modules, "torch._dynamo" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False"]

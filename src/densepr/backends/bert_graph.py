"""A BERT folder's ONNX graph written from its safetensors weights with numpy and ``onnx`` alone (no torch).

The graph computes what :class:`~densepr.dense.bert_lite.BertLite` computes (absolute positions, post-LayerNorm layers,
GELU or ReLU) followed by a head: an encoder tower's pooling (``cls``, ``mean``; optionally L2-normalised; DPR's
``encode_proj``) or the reader's start/end/selection logits. It takes the tokenizer's int64 ``input_ids``,
``attention_mask`` and ``token_type_ids`` with dynamic batch and sequence axes, as the graphs exported from torch do,
so :class:`~densepr.backends.onnx.OnnxRunner`, int8 quantisation and the agreement gate treat both alike.
``tests/test_bert_graph.py`` checks it against transformers' BERT, DPR encoders and the reader to 1e-4.

>>> graph = bert_graph(load_weights(folder), config, head=pooling_head("mean", normalize=True))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from densepr.errors import DenseprError

OPSET = 17
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ACTIVATIONS = ("gelu", "relu", "gelu_new", "gelu_pytorch_tanh")
PREFIXES = ("bert.", "bert_model.", "question_encoder.bert_model.", "ctx_encoder.bert_model.", "encoder.")


def supports(config: Mapping[str, object]) -> bool:
    """Whether a ``config.json`` describes a BERT this graph computes exactly (as ``BertLite.supports``; DPR's
    ``model_type`` "dpr" is a BERT too)."""
    return (config.get("model_type") in ("bert", "dpr") and config.get("position_embedding_type", "absolute") == "absolute"
            and config.get("hidden_act", "gelu") in ACTIVATIONS and not config.get("is_decoder")
            and not config.get("add_cross_attention"))


def load_weights(path: Path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file as float32 (or int64) numpy arrays; a one-line error if unreadable."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(path))
    except (OSError, SafetensorError, TypeError, ValueError) as exc:
        raise DenseprError(f"{path}: unreadable weights ({str(exc).splitlines()[0]})") from None
    return {k: v.astype(np.float32) if v.dtype.kind == "f" else v for k, v in tensors.items()}


def bert_weights(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The BERT's own tensors (``embeddings.*``, ``encoder.*``), whatever prefix a checkpoint gives them."""
    for prefix in PREFIXES:
        inner = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
        if "embeddings.word_embeddings.weight" in inner:
            return inner
    return dict(tensors)


@dataclass
class Graph:
    """An ONNX graph under construction: nodes, weights (initializers) and unique names."""

    nodes: list = field(default_factory=list)
    weights: list = field(default_factory=list)
    count: int = 0

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def const(self, value: np.ndarray | float | list, hint: str = "c") -> str:
        from onnx import numpy_helper

        name = self.name(hint)
        array = np.asarray(value, dtype=np.float32 if isinstance(value, float) else None)
        self.weights.append(numpy_helper.from_array(array, name))
        return name

    def op(self, kind: str, *inputs: str, hint: str = "", **attributes: Any) -> str:
        from onnx import helper

        out = self.name(hint or kind.lower())
        self.nodes.append(helper.make_node(kind, list(inputs), [out], name=out, **attributes))
        return out

    def linear(self, x: str, weights: Mapping[str, np.ndarray], prefix: str) -> str:
        """``x @ W.T + b`` of a torch ``Linear`` saved under ``prefix`` (the MatMul named after it, for int8 choices)."""
        w = self.const(np.ascontiguousarray(weights[f"{prefix}.weight"].T), f"{prefix}.weight")
        return self.op("Add", self.op("MatMul", x, w, hint=prefix), self.const(weights[f"{prefix}.bias"], f"{prefix}.bias"))

    def layer_norm(self, x: str, weights: Mapping[str, np.ndarray], prefix: str, eps: float) -> str:
        return self.op("LayerNormalization", x, self.const(weights[f"{prefix}.weight"]), self.const(weights[f"{prefix}.bias"]),
                       axis=-1, epsilon=eps)


Head = Callable[[Graph, str, str], dict[str, str]]  # (graph, hidden states, attention mask as float) -> outputs


def _activation(g: Graph, x: str, kind: str) -> str:
    if kind == "relu":
        return g.op("Relu", x)
    if kind == "gelu":  # erf form, as torch's default GELU
        erf = g.op("Erf", g.op("Mul", x, g.const(1 / math.sqrt(2.0))))
        return g.op("Mul", g.op("Mul", x, g.const(0.5)), g.op("Add", erf, g.const(1.0)))
    cube = g.op("Mul", g.op("Mul", x, x), x)  # tanh approximation
    inner = g.op("Mul", g.op("Add", x, g.op("Mul", cube, g.const(0.044715))), g.const(math.sqrt(2 / math.pi)))
    return g.op("Mul", g.op("Mul", x, g.const(0.5)), g.op("Add", g.op("Tanh", inner), g.const(1.0)))


def _layer(g: Graph, x: str, bias: str, w: Mapping[str, np.ndarray], i: int, config: Mapping) -> str:
    hidden, heads = int(config["hidden_size"]), int(config["num_attention_heads"])
    eps, p = float(config.get("layer_norm_eps", 1e-12)), f"encoder.layer.{i}"
    split = g.const(np.array([0, 0, heads, hidden // heads], dtype=np.int64))
    q, k, v = (g.op("Reshape", g.linear(x, w, f"{p}.attention.self.{n}"), split) for n in ("query", "key", "value"))
    q = g.op("Transpose", q, perm=[0, 2, 1, 3])
    k = g.op("Transpose", k, perm=[0, 2, 3, 1])
    v = g.op("Transpose", v, perm=[0, 2, 1, 3])
    scores = g.op("Add", g.op("Mul", g.op("MatMul", q, k), g.const(1 / math.sqrt(hidden // heads))), bias)
    context = g.op("MatMul", g.op("Softmax", scores, axis=-1), v)
    merged = g.op("Reshape", g.op("Transpose", context, perm=[0, 2, 1, 3]), g.const(np.array([0, 0, hidden], dtype=np.int64)))
    x = g.layer_norm(g.op("Add", g.linear(merged, w, f"{p}.attention.output.dense"), x), w, f"{p}.attention.output.LayerNorm", eps)
    up = _activation(g, g.linear(x, w, f"{p}.intermediate.dense"), str(config.get("hidden_act", "gelu")))
    return g.layer_norm(g.op("Add", g.linear(up, w, f"{p}.output.dense"), x), w, f"{p}.output.LayerNorm", eps)


def bert_graph(tensors: Mapping[str, np.ndarray], config: Mapping, head: Head, name: str = "densepr-bert") -> bytes:
    """The serialised ONNX model of a BERT (``tensors`` as :func:`load_weights` gives them) followed by ``head``."""
    from onnx import TensorProto, helper

    if not supports(config):
        raise DenseprError(f"{name}: not a plain BERT (model_type {config.get('model_type')!r}); export it with 'densepr export'")
    w = {**bert_weights(tensors), **{k: v for k, v in tensors.items() if not k.startswith(PREFIXES)}}
    g = Graph()
    eps = float(config.get("layer_norm_eps", 1e-12))
    ids, mask, types = INPUTS
    try:
        length = g.op("Gather", g.op("Shape", ids), g.const(np.array(1, dtype=np.int64)), axis=0)
        positions = g.op("Range", g.const(np.array(0, dtype=np.int64)), length, g.const(np.array(1, dtype=np.int64)))
        x = g.op("Add", g.op("Gather", g.const(w["embeddings.word_embeddings.weight"]), ids),
                 g.op("Gather", g.const(w["embeddings.position_embeddings.weight"]), positions))
        x = g.op("Add", x, g.op("Gather", g.const(w["embeddings.token_type_embeddings.weight"]), types))
        x = g.layer_norm(x, w, "embeddings.LayerNorm", eps)
        mask_f = g.op("Cast", mask, to=TensorProto.FLOAT)
        blocked = g.op("Sub", g.const(1.0), g.op("Unsqueeze", mask_f, g.const(np.array([1, 2], dtype=np.int64))))
        bias = g.op("Mul", blocked, g.const(float(np.finfo(np.float32).min)))
        for i in range(int(config["num_hidden_layers"])):
            x = _layer(g, x, bias, w, i, config)
        outputs = head(g, x, mask_f)
    except KeyError as exc:
        raise DenseprError(f"{name}: the weights have no tensor {exc} that a BERT of this config needs") from None
    for out, node_output in outputs.items():  # the heads' last nodes carry the output names
        for node in g.nodes:
            node.output[:] = [out if o == node_output else o for o in node.output]
            node.input[:] = [out if i == node_output else i for i in node.input]
    dynamic = ["batch", "sequence"]
    graph = helper.make_graph(g.nodes, name, [helper.make_tensor_value_info(n, TensorProto.INT64, dynamic) for n in INPUTS],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, None) for out in outputs], g.weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="densepr")
    model.ir_version = 8
    return model.SerializeToString()


def pooling_head(pooling: str, normalize: bool = False, weights: Mapping[str, np.ndarray] | None = None) -> Head:
    """An encoder tower's output ``vectors``: the [CLS] state (``cls``; DPR's, through ``encode_proj`` where the
    checkpoint has one) or the masked mean (``mean``), L2-normalised if asked."""
    projection = {k.split("encode_proj.")[-1]: v for k, v in (weights or {}).items() if "encode_proj." in k}

    def head(g: Graph, x: str, mask: str) -> dict[str, str]:
        if pooling in ("cls", "dpr"):
            vectors = g.op("Gather", x, g.const(np.array(0, dtype=np.int64)), axis=1)
            if pooling == "dpr" and projection:
                vectors = g.linear(vectors, {f"encode_proj.{k}": v for k, v in projection.items()}, "encode_proj")
        elif pooling == "mean":
            m = g.op("Unsqueeze", mask, g.const(np.array([2], dtype=np.int64)))
            total = g.op("ReduceSum", g.op("Mul", x, m), g.const(np.array([1], dtype=np.int64)), keepdims=0)
            count = g.op("Max", g.op("ReduceSum", m, g.const(np.array([1], dtype=np.int64)), keepdims=0), g.const(1e-9))
            vectors = g.op("Div", total, count)
        else:
            raise DenseprError(f"unknown pooling {pooling!r}")
        if normalize:
            norm = g.op("ReduceL2", vectors, axes=[-1], keepdims=1)  # axes an attribute until opset 18
            vectors = g.op("Div", vectors, g.op("Max", norm, g.const(1e-12)))
        return {"vectors": vectors}

    return head


def reader_head(heads: Mapping[str, np.ndarray]) -> Head:
    """The reader's ``start`` and ``end`` logits per token and ``select`` logit per passage (``qa_outputs``,
    ``qa_classifier``), as :class:`~densepr.read.model.Reader` computes them."""

    def head(g: Graph, x: str, mask: str) -> dict[str, str]:
        both = g.linear(x, heads, "qa_outputs")
        start = g.op("Squeeze", g.op("Slice", both, *(g.const(np.array([v], dtype=np.int64)) for v in (0, 1, 2))),
                     g.const(np.array([2], dtype=np.int64)))
        end = g.op("Squeeze", g.op("Slice", both, *(g.const(np.array([v], dtype=np.int64)) for v in (1, 2, 2))),
                   g.const(np.array([2], dtype=np.int64)))
        cls = g.op("Gather", x, g.const(np.array(0, dtype=np.int64)), axis=1)
        select = g.op("Squeeze", g.linear(cls, heads, "qa_classifier"), g.const(np.array([1], dtype=np.int64)))
        return {"start": start, "end": end, "select": select}

    return head


def read_config(folder: Path) -> dict:
    """A model folder's ``config.json`` (a one-line error if missing or unreadable)."""
    try:
        return json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DenseprError(f"{folder / 'config.json'}: unreadable model config ({exc})") from None

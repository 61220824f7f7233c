"""BERT for inference in plain torch: a Hugging Face BERT folder loaded without transformers' model code.

Importing ``transformers.modeling_utils`` takes ~2.5 s on a 2-core CPU, longer than a warm ``densepr ask`` spends on
its question. The question/passage towers and the reader load through here when their folder holds a plain BERT
(``model_type`` "bert", absolute positions, a GELU or ReLU activation, safetensors weights): the same module names,
so the same state dict, and the same outputs as ``transformers.BertModel`` (``tests/test_bert_lite.py``). Anything
else, and all training, goes through transformers.

>>> model = BertLite.load("path/to/bert")  # None when the folder is not a plain BERT   # doctest: +SKIP
>>> model(input_ids, attention_mask).last_hidden_state.shape  # doctest: +SKIP
torch.Size([2, 7, 384])
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import NamedTuple, TypeVar

import torch
import torch.nn.functional as F
from torch import nn


def _gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"gelu": F.gelu, "relu": F.relu, "gelu_new": _gelu_tanh,
                                                                  "gelu_pytorch_tanh": _gelu_tanh}


class BertOutput(NamedTuple):
    """What the towers and the reader read of a forward pass (named as transformers names them)."""

    last_hidden_state: torch.Tensor
    pooler_output: torch.Tensor | None


M = TypeVar("M", bound=nn.Module)


def bf16_copy(module: M, share: Sequence[object] = ()) -> M:
    """An inference copy of ``module`` with its parameters in bf16, each cast once (no fp32 copy is made), except the
    word embeddings of the :class:`BertLite` models in it, which stay fp32 and shared: they are a lookup, and casting
    them reads every row of the (memory-mapped) table in: 128 MB more resident memory for MiniLM's copy instead of 22 MB.
    The objects in ``share`` (e.g. a tokenizer) are shared, not copied. On a CPU with bf16 units, running the copy
    without autocast beat fp32 weights under bf16 autocast, which casts every weight on every call: passages 1.17x,
    one question end to end 1.30x, the reader over 5 passages 1.19x (2-core AMX Xeon, MiniLM, A/B in alternating
    processes; passages' cosine to fp32 0.99996 mean, 0.99994 min over 1,000 mini-Wikipedia passages)."""
    kept = {id(m.embeddings.word_embeddings.weight) for m in module.modules() if isinstance(m, BertLite)}
    memo: dict[int, object] = {id(p): p if id(p) in kept else nn.Parameter(p.detach().to(torch.bfloat16), requires_grad=False)
                               for p in module.parameters()}
    memo.update((id(o), o) for o in share)
    return copy.deepcopy(module, memo).eval()


# Modules are made empty on the meta device and ``load`` assigns the weights. Their random init is skipped: on meta
# tensors it runs torch's Python decompositions, which import its compiler (0.8 s).
META = torch.device("meta")


class _Linear(nn.Linear):
    def reset_parameters(self) -> None:
        pass


class _Embedding(nn.Embedding):
    def reset_parameters(self) -> None:
        pass


class _LayerNorm(nn.LayerNorm):
    def reset_parameters(self) -> None:
        pass


def _linear(n_in: int, n_out: int) -> nn.Linear:
    return _Linear(n_in, n_out, device=META)


def _norm(c: SimpleNamespace) -> nn.LayerNorm:
    return _LayerNorm(c.hidden_size, eps=c.layer_norm_eps, device=META)


class _Embeddings(nn.Module):
    def __init__(self, c: SimpleNamespace):
        super().__init__()
        self.word_embeddings = _Embedding(c.vocab_size, c.hidden_size, device=META)
        self.position_embeddings = _Embedding(c.max_position_embeddings, c.hidden_size, device=META)
        self.token_type_embeddings = _Embedding(c.type_vocab_size, c.hidden_size, device=META)
        self.LayerNorm = _norm(c)

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)[None]
        x = x + self.token_type_embeddings(token_type_ids)
        return self.LayerNorm(x.to(self.LayerNorm.weight.dtype))  # a bf16 copy keeps fp32 word embeddings


class _SelfAttention(nn.Module):
    def __init__(self, h: int):
        super().__init__()
        self.query, self.key, self.value = _linear(h, h), _linear(h, h), _linear(h, h)


class _DenseNorm(nn.Module):
    def __init__(self, n_in: int, c: SimpleNamespace):
        super().__init__()
        self.dense, self.LayerNorm = _linear(n_in, c.hidden_size), _norm(c)


class _Attention(nn.Module):
    def __init__(self, c: SimpleNamespace):
        super().__init__()
        self.self, self.output = _SelfAttention(c.hidden_size), _DenseNorm(c.hidden_size, c)


class _Intermediate(nn.Module):
    def __init__(self, c: SimpleNamespace):
        super().__init__()
        self.dense = _linear(c.hidden_size, c.intermediate_size)


class _Layer(nn.Module):
    """One encoder layer, its submodules named as in ``BertLayer`` (attention.self.query, ..., output.LayerNorm)."""

    def __init__(self, c: SimpleNamespace):
        super().__init__()
        self.heads, self.config = c.num_attention_heads, c
        self.act: Callable[[torch.Tensor], torch.Tensor] = ACTIVATIONS[c.hidden_act]
        self.attention, self.intermediate, self.output = _Attention(c), _Intermediate(c), _DenseNorm(c.intermediate_size, c)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        n, length, h = x.shape
        att = self.attention.self

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(n, length, self.heads, h // self.heads).transpose(1, 2)

        q, k, v = heads(att.query(x)), heads(att.key(x)), heads(att.value(x))
        if self.config._attn_implementation == "eager":  # plain ops: the form ONNX export runs fastest
            weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(h // self.heads) + bias, dim=-1)
            context = weights @ v
        else:
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        context = context.transpose(1, 2).reshape(n, length, h)
        x = self.attention.output.LayerNorm(self.attention.output.dense(context) + x)
        return self.output.LayerNorm(self.output.dense(self.act(self.intermediate.dense(x))) + x)


class _Encoder(nn.Module):
    def __init__(self, c: SimpleNamespace):
        super().__init__()
        self.layer = nn.ModuleList(_Layer(c) for _ in range(c.num_hidden_layers))


class _Pooler(nn.Module):
    def __init__(self, c: SimpleNamespace):
        super().__init__()
        self.dense = _linear(c.hidden_size, c.hidden_size)


class BertLite(nn.Module):
    """``transformers.BertModel``'s inference forward (no dropout, no cache, no head masks); made empty on the meta
    device, so use :meth:`load`."""

    def __init__(self, config: dict):
        super().__init__()
        c = SimpleNamespace(**{"type_vocab_size": 2, "layer_norm_eps": 1e-12, "hidden_act": "gelu", **config,
                               "_attn_implementation": "sdpa"})
        self.config = c
        self.embeddings = _Embeddings(c)
        self.encoder = _Encoder(c)
        self.pooler: _Pooler | None = _Pooler(c)

    @staticmethod
    def supports(config: dict) -> bool:
        """Whether a ``config.json`` describes a BERT this module computes exactly."""
        return (config.get("model_type") == "bert" and config.get("position_embedding_type", "absolute") == "absolute"
                and config.get("hidden_act", "gelu") in ACTIVATIONS and not config.get("is_decoder")
                and not config.get("add_cross_attention"))

    @classmethod
    def load(cls, folder: str | Path) -> BertLite | None:
        """The model of a BERT folder (fp32, eval mode), or ``None`` where transformers must load it: another
        architecture, no ``model.safetensors``, or weights whose names or shapes this module does not have."""
        folder = Path(folder)
        weights = folder / "model.safetensors"
        if not (folder / "config.json").is_file() or not weights.is_file():
            return None
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        if not cls.supports(config):
            return None
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(weights)
        except (OSError, SafetensorError):
            return None  # transformers then says what is wrong with the file
        if all(k.startswith("bert.") for k in state if not k.startswith(("cls.", "qa_outputs", "classifier"))):
            state = {k.removeprefix("bert."): v for k, v in state.items() if k.startswith("bert.")}
        state = {k: v.float() for k, v in state.items() if k != "embeddings.position_ids"}
        model = cls(config)
        own = model.state_dict()
        has_pooler = "pooler.dense.weight" in state
        needed = {k for k in own if has_pooler or not k.startswith("pooler.")}
        if set(state) != needed or any(state[k].shape != own[k].shape for k in needed):
            return None
        if not has_pooler:
            model.pooler = None
        model.load_state_dict(state, assign=True)
        return model.eval()

    def set_attn_implementation(self, name: str) -> None:
        """``"eager"`` (plain matmul/softmax) or ``"sdpa"``, as transformers' models take it (the ONNX export asks eager)."""
        self.config._attn_implementation = name

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None) -> BertOutput:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        x = self.embeddings(input_ids, token_type_ids)
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in self.encoder.layer:
            x = layer(x, bias)
        pooled = torch.tanh(self.pooler.dense(x[:, 0])) if self.pooler is not None else None
        return BertOutput(x, pooled)

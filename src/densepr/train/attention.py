"""Attention for training on CPUs: under bf16 autocast, fused attention runs in fp32.

PyTorch's fused (flash) attention on CPU is fast forward in bf16 but ~3x slower backward in bf16 than in fp32
(``docs/results/training.md``, section ``train-speed``); the projections around it stay bf16. Elsewhere (GPUs, fp32
training) this is transformers' own ``sdpa`` attention.
"""

from __future__ import annotations

from typing import Any

import torch

NAME = "densepr_sdpa"


def sdpa_fp32_on_cpu(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, **kwargs: Any) -> tuple[torch.Tensor, Any]:
    """transformers' ``sdpa`` attention, in fp32 for bf16 inputs on a CPU."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if query.device.type != "cpu" or query.dtype != torch.bfloat16:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if attention_mask is not None and attention_mask.is_floating_point():
        attention_mask = attention_mask.float()
    with torch.autocast("cpu", enabled=False):
        out, weights = sdpa_attention_forward(module, query.float(), key.float(), value.float(), attention_mask, **kwargs)
    return out.to(query.dtype), weights


def use_training_attention(model: torch.nn.Module) -> None:
    """Switch every transformers sub-model of ``model`` that runs ``sdpa`` attention to :func:`sdpa_fp32_on_cpu`."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, sdpa_fp32_on_cpu)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    for m in model.modules():
        config = getattr(m, "config", None)
        if getattr(config, "_attn_implementation", None) == "sdpa":
            config._attn_implementation = NAME  # type: ignore[union-attr]

"""Dual-encoder training options (torch-free, so the CLI parser is cheap to build)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from densepr.loop.config import LoopConfig
from densepr.options import opt
from densepr.train.sampling import BATCHING, SAMPLING

SIMILARITIES = ("dot", "cosine", "l2")


@dataclass(kw_only=True)
class TrainConfig(LoopConfig):
    """Dual-encoder options on top of the loop's."""

    hard_negatives: int = opt(1, help="hard negatives per question (paper: 1)")
    dropout: float = opt(0.1, help="dropout of both towers while training")
    attention_dropout: float = opt(0.0, help="dropout of the attention probabilities; 0 lets attention run fused "
                                             "kernels: a CPU step takes half the time, at the same accuracy")
    similarity: str = opt("dot", choices=SIMILARITIES, help="score of a question and a passage")
    temperature: float | None = opt(None, help="score divisor (default: 1, or 0.05 for unit-length vectors)")
    shared: bool = opt(False, help="one tower for questions and passages")
    grad_cache_chunk: int = opt(0, help="gradient caching with this sub-batch size (0: off)")
    sampling: str = opt("proportional", choices=SAMPLING,
                        help="several --train sets: each set's share of an epoch (its size, equal, or size^(1/T))")
    sampling_temperature: float = opt(2.0, help="T of --sampling temperature")
    batching: str = opt("per-source", choices=BATCHING,
                        help="several --train sets: each batch from one set (DPR; in-batch negatives stay in a domain) or mixed")

    RESUME_KEYS: ClassVar[tuple[str, ...]] = (*LoopConfig.RESUME_KEYS, "hard_negatives", "sampling", "sampling_temperature",
                                              "batching")

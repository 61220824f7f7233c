"""Reader training options (torch-free, so the CLI parser is cheap to build)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from densepr.loop.config import LoopConfig
from densepr.options import opt


@dataclass(kw_only=True)
class ReaderConfig(LoopConfig):
    """Reader options on top of the loop's; ``batch_size`` questions per step, each with ``passages_per_question``."""

    passages_per_question: int = opt(24, help="m: 1 positive + m-1 sampled negatives (paper: 24)")

    RESUME_KEYS: ClassVar[tuple[str, ...]] = (*LoopConfig.RESUME_KEYS, "passages_per_question")

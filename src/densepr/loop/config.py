"""Options every training run shares (the loop's); each model's config adds its own fields."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from densepr.options import opt


@dataclass(kw_only=True)
class LoopConfig:
    """Optimiser, schedule, precision, checkpoints; ``batch_size`` is examples per process per step."""

    out: str = opt(help="output folder: checkpoint-*/ and final/", required=True)
    batch_size: int = opt(16, help="questions per process per step")
    grad_accumulation: int = opt(1, help="batches whose gradients add up to one optimiser step")
    epochs: int = opt(1, help="passes over the training examples")
    lr: float = opt(2e-5, help="peak learning rate (AdamW)")
    warmup_steps: int = opt(100, help="linear warm-up steps, then linear decay to 0")
    weight_decay: float = opt(0.0, help="AdamW weight decay")
    max_grad_norm: float = opt(2.0, help="gradient clipping norm")
    bf16: bool | None = opt(None, help="bf16 autocast (default: on GPUs and on CPUs with bf16 units)")
    seed: int = opt(42, help="seed of the data order and sampling")
    save_every: int = opt(500, help="checkpoint every N steps")
    keep_checkpoints: int = opt(2, help="checkpoints kept (the newest)")
    max_steps: int = opt(0, help="stop after N steps (0: all epochs)")
    log_every: int = opt(20, help="log the loss every N steps")

    # Options a resumed run must share with the checkpoint (they fix which examples each step sees).
    RESUME_KEYS: ClassVar[tuple[str, ...]] = ("batch_size", "grad_accumulation", "seed", "epochs")

"""The dual encoder as a task of the training loop: DPR batches, NLL over in-batch + hard negatives, validation."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import torch

from densepr.dense.encoder import Encoder
from densepr.train.batches import make_batch
from densepr.train.config import TrainConfig
from densepr.train.data import TrainingExample
from densepr.train.grad_cache import grad_cache_backward
from densepr.train.model import DualEncoderModel


def average_rank(model: DualEncoderModel, examples: list[TrainingExample], pool: int = 64) -> float:
    """DPR's validation metric: mean rank of each positive among its pool's positives and first hard negatives."""
    bi = model.biencoder()
    ranks = []
    for start in range(0, len(examples), pool):
        chunk = examples[start : start + pool]
        passages = [ex.positives[0] for ex in chunk] + [ex.hard_negatives[0] for ex in chunk if ex.hard_negatives]
        q = torch.from_numpy(bi.encode_questions([ex.question for ex in chunk]))
        scores = q @ torch.from_numpy(bi.encode_passages(passages)).T
        gold = scores[torch.arange(len(chunk)), torch.arange(len(chunk))]
        ranks.extend((scores > gold[:, None]).sum(1).tolist())
    return float(np.mean(ranks))


class DualEncoderTask:
    """Trains a :class:`DualEncoderModel` on DPR examples with :class:`~densepr.loop.TrainingLoop`.

    Every process encodes its slice of the global batch; the loss gathers all vectors (gradients flow through
    each process's own), so the processes' gradients add up to the global batch's.

    >>> TrainingLoop(DualEncoderTask(model, examples, TrainConfig(out="run/"), dev)).train()   # doctest: +SKIP
    """

    name = "dual encoder"
    drop_last = True  # every step needs a full global batch of in-batch negatives
    gradients = "sum"

    def __init__(self, model: DualEncoderModel, examples: list[TrainingExample], config: TrainConfig,
                 dev: list[TrainingExample] | None = None, model_name: str = ""):
        self.module, self.examples, self.config, self.dev, self.model_name = model, examples, config, dev or [], model_name
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = config.dropout

    def __len__(self) -> int:
        return len(self.examples)

    def backward(self, indices: np.ndarray, epoch: int, autocast: AbstractContextManager, scale: float) -> float:
        cfg, model = self.config, self.module
        q, p = make_batch(self.examples, indices, model.question_encoder, model.passage_encoder, cfg.hard_negatives,
                          cfg.seed, epoch)
        if cfg.grad_cache_chunk:
            return float(grad_cache_backward(model, q, p, cfg.grad_cache_chunk, autocast, scale))
        with autocast:
            loss = model(q, p)
        (loss * scale if scale != 1 else loss).backward()
        return float(loss.detach())

    def validate(self) -> float | None:
        return average_rank(self.module, self.dev) if self.dev else None

    def save(self, folder: Path) -> None:
        self.module.biencoder(self.model_name).save(folder)

    def load(self, folder: Path) -> None:
        for tower, sub in ((self.module.question_encoder, "question_encoder"), (self.module.passage_encoder, "passage_encoder")):
            saved = Encoder.from_pretrained(folder / sub, pooling=tower.pooling)
            tower.model.load_state_dict(saved.model.state_dict())

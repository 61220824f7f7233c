"""The dual encoder as a task of the training loop: DPR batches, NLL over in-batch + hard negatives, validation."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import torch

from densepr.dense.encoder import Encoder
from densepr.train.attention import use_training_attention
from densepr.train.batches import make_batch
from densepr.train.config import TrainConfig
from densepr.train.data import TrainingExample
from densepr.train.grad_cache import grad_cache_backward
from densepr.train.model import DualEncoderModel
from densepr.train.sampling import epoch_order, source_shares

CARD_FILE = "training_card.json"


def set_dropout(model: torch.nn.Module, hidden: float, attention: float) -> None:
    """Every dropout to ``hidden``, except those of attention probabilities (a dropout beside query/key projections,
    as in BERT's and MPNet's self-attention) to ``attention``."""
    for parent in model.modules():
        attention_block = any(hasattr(parent, name) for name in ("query", "q", "q_proj"))
        for child in parent.children():
            if isinstance(child, torch.nn.Dropout):
                child.p = attention if attention_block else hidden


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
    each process's own), so the processes' gradients add up to the global batch's. Examples of several training
    sets (their ``dataset``) are drawn as ``config.sampling`` and ``config.batching`` say (:mod:`densepr.train.sampling`).

    >>> TrainingLoop(DualEncoderTask(model, examples, TrainConfig(out="run/"), dev)).train()   # doctest: +SKIP
    """

    name = "dual encoder"
    drop_last = True  # every step needs a full global batch of in-batch negatives
    gradients = "sum"

    def __init__(self, model: DualEncoderModel, examples: list[TrainingExample], config: TrainConfig,
                 dev: list[TrainingExample] | None = None, model_name: str = ""):
        self.module, self.examples, self.config, self.dev, self.model_name = model, examples, config, dev or [], model_name
        self.datasets = sorted({ex.dataset for ex in examples})
        position = {name: i for i, name in enumerate(self.datasets)}
        self.sources = np.array([position[ex.dataset] for ex in examples], dtype=np.int64)
        set_dropout(model, config.dropout, config.attention_dropout)
        use_training_attention(model)

    def __len__(self) -> int:
        return len(self.examples)

    def epoch_order(self, epoch: int, block: int, steps: int) -> np.ndarray:
        """The examples of ``steps`` global batches of ``block``, drawn from the training sets as configured."""
        cfg = self.config
        return epoch_order(self.sources, block, steps, cfg.sampling, cfg.batching, cfg.seed, epoch, cfg.sampling_temperature)

    def card(self) -> dict:
        """What the model was trained on and how: sets with their sizes and shares, sampling, batching, options."""
        sizes = Counter(ex.dataset for ex in self.examples)
        shares = source_shares(np.array([sizes[d] for d in self.datasets]), self.config.sampling, self.config.sampling_temperature)
        return {"base_model": self.model_name, "examples": len(self.examples),
                "datasets": {d or "(unnamed)": {"examples": sizes[d], "share": round(float(w), 4)}
                             for d, w in zip(self.datasets, shares)},
                "sampling": self.config.sampling, "batching": self.config.batching, "config": dataclasses.asdict(self.config)}

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
        (folder / CARD_FILE).write_text(json.dumps(self.card(), indent=2), encoding="utf-8")

    def load(self, folder: Path) -> None:
        for tower, sub in ((self.module.question_encoder, "question_encoder"), (self.module.passage_encoder, "passage_encoder")):
            saved = Encoder.from_pretrained(folder / sub, pooling=tower.pooling)
            tower.model.load_state_dict(saved.model.state_dict())

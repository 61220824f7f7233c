"""Deterministic dual-encoder batches: negatives sampled from (seed, epoch, example), so a resumed run sees the same data."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch

from densepr.corpus.passages import Passage
from densepr.dense.encoder import Encoder
from densepr.train.data import TrainingExample


def passages_for(example: TrainingExample, index: int, hard_negatives: int, seed: int, epoch: int,
                 pool: Sequence[TrainingExample]) -> list[Passage]:
    """Positive first, then ``hard_negatives`` sampled from the example's hard (else plain) negatives."""
    rng = random.Random(f"{seed}-{epoch}-{index}")
    negatives = example.hard_negatives or example.negatives
    chosen = rng.sample(negatives, min(hard_negatives, len(negatives)))
    while len(chosen) < hard_negatives:  # too few negatives: borrow another question's positive
        chosen.append(pool[rng.randrange(len(pool))].positives[0])
    return [example.positives[0], *chosen]


def tokenize_batch(encoder: Encoder, texts: Sequence[str], pairs: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
    """Padded tensors for one tower (``pairs``: DPR's ``title [SEP] text`` inputs)."""
    enc = encoder.tokenizer(list(texts), list(pairs) if pairs is not None else None, truncation=True,
                            max_length=encoder.max_length, padding=True, return_tensors="pt")
    device = next(encoder.parameters()).device
    return {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def make_batch(examples: Sequence[TrainingExample], indices: Sequence[int] | np.ndarray, q_encoder: Encoder, p_encoder: Encoder,
               hard_negatives: int, seed: int, epoch: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Tokenised questions and their passage blocks for the examples at ``indices``."""
    chosen = [examples[i] for i in indices]
    passages = [p for i, ex in zip(indices, chosen) for p in passages_for(ex, int(i), hard_negatives, seed, epoch, examples)]
    questions = tokenize_batch(q_encoder, [ex.question for ex in chosen])
    return questions, tokenize_batch(p_encoder, [p.title for p in passages], [p.text for p in passages])

"""The training view of the dual encoder: encode batches, gather across processes, NLL over in-batch negatives."""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from densepr.dense.biencoder import BiEncoder
from densepr.dense.encoder import Encoder
from densepr.errors import DenseprError
from densepr.loop.distributed import gather_with_grad
from densepr.train.config import SIMILARITIES


def similarity(q: torch.Tensor, p: torch.Tensor, kind: str = "dot") -> torch.Tensor:
    """``(Q, P)`` scores: inner product, cosine, or negative squared L2 distance."""
    if kind == "dot":
        return q @ p.T
    if kind == "cosine":
        return F.normalize(q, dim=-1) @ F.normalize(p, dim=-1).T
    if kind == "l2":
        return -torch.cdist(q, p).pow(2)
    raise DenseprError(f"unknown similarity {kind!r}; choose from {', '.join(SIMILARITIES)}")


# Passages are encoded in this many groups of similar length: less padding. With 2 groups against 1, a CPU training step
# (MiniLM, batch 32, one hard negative; 2-core Xeon) took 1.09x less time in fp32 with torch capped to AVX2 and 1.06x
# in bf16 (benchmarks/ablations/train_step_ablation.py); a first probe gave 1.16x and 1.32x (4 groups: 1.17x and 1.26x).
LENGTH_GROUPS = 2


class DualEncoderModel(torch.nn.Module):
    """Question and passage towers trained with DPR's loss.

    Each question's passages come in a block of ``1 + hard negatives`` (positive first); every other
    passage in the (global) batch is a negative for it. Scores are divided by ``temperature``
    (default: 1 for raw vectors as in DPR, 0.05 for unit-length ones).
    """

    def __init__(self, model: BiEncoder, shared: bool = False, similarity: str = "dot", temperature: float | None = None):
        super().__init__()
        question, passage = model.question_encoder, model.passage_encoder
        if not isinstance(question, Encoder) or not isinstance(passage, Encoder):
            raise DenseprError("training needs torch towers: load the model with BiEncoder.load(...) where torch is installed")
        self.question_encoder: Encoder = question
        self.passage_encoder: Encoder = copy.deepcopy(passage) if model.shared and not shared else passage  # one tower → two, as DPR
        # Unit-length vectors score in [-1, 1]: without a temperature the softmax is nearly flat and training
        # degrades the model (seen here). 0.05 is sentence-transformers' MNRL scale of 20; raw DPR vectors use 1.
        unit = similarity == "cosine" or self.question_encoder.normalize
        self.similarity = similarity
        self.temperature = temperature if temperature is not None else (0.05 if unit else 1.0)
        self.length_groups = LENGTH_GROUPS

    def biencoder(self, name: str = "") -> BiEncoder:
        return BiEncoder(self.question_encoder, self.passage_encoder, name=name)

    def encode_questions(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.question_encoder(**batch)

    def encode_passages(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The passages' vectors; on a CPU in ``length_groups`` groups of similar length (each padded to its own longest)."""
        mask = batch["attention_mask"]
        if mask.device.type != "cpu" or mask.size(0) < 2 * self.length_groups:  # measured on CPUs only
            return self.passage_encoder(**batch)
        order = torch.argsort(mask.sum(1), stable=True)
        parts = []
        for rows in order.chunk(self.length_groups):
            columns = mask[rows].any(0)  # the group's non-padding positions (left or right padding alike)
            parts.append(self.passage_encoder(**{k: v[rows][:, columns] for k, v in batch.items()}))
        return torch.cat(parts)[torch.argsort(order)]

    def loss(self, q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        """NLL of each question's positive among all passages of all processes."""
        q_all, p_all = gather_with_grad(q.float()), gather_with_grad(p.float())
        per_question = p_all.size(0) // q_all.size(0)
        scores = similarity(q_all, p_all, self.similarity) / self.temperature
        targets = torch.arange(q_all.size(0), device=scores.device) * per_question
        return F.cross_entropy(scores, targets)

    def forward(self, questions: dict[str, torch.Tensor], passages: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.loss(self.encode_questions(questions), self.encode_passages(passages))

"""A small learned fusion, for :mod:`benchmarks.ablations.fusion_ablation`: one linear score over both retrievers' features.

Each question's pool is the union of both lists' top ``POOL``; every pooled passage gets the features below and the
weights are fitted listwise on dev questions (the softmax mass of a question's answer passages, as DPR's loss with
several positives, plus a small L2 term; questions with no answer or only answers in the pool teach nothing and are
skipped). Its top k is the pool ranked by the fitted score.

>>> model = LearnedFusion.fit(pools)         # doctest: +SKIP  (pools: [(features, labels)] of dev questions)
>>> model.fuse(candidates, k=20)             # doctest: +SKIP  (a question's top 20 hits of its pool)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from densepr.hits import Hit, Ranked
from densepr.retrieve.hybrid import Candidates

POOL = 200
FEATURES = ("bm25", "dense", "bm25 z", "dense z", "bm25 - its top", "dense - its top", "log bm25 rank", "log dense rank",
            "bm25 1/(60+rank)", "dense 1/(60+rank)", "both in top 20", "both in top 100")


def _aligned(ranked: Ranked, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores and ranks (from 1) of the sorted ``rows`` in one list; a row it lacks gets the list's minimum score
    (pyserini's rule, as :func:`densepr.retrieve.fusion.linear_fusion`) and rank len + 1."""
    scores = np.full(rows.size, float(ranked.scores.min()))
    ranks = np.full(rows.size, len(ranked.rows) + 1.0)
    inside = np.isin(ranked.rows, rows)
    at = np.searchsorted(rows, ranked.rows[inside])
    scores[at], ranks[at] = ranked.scores[inside], np.flatnonzero(inside) + 1.0
    return scores, ranks


def pool_features(c: Candidates, pool: int = POOL) -> tuple[np.ndarray, np.ndarray]:
    """The pooled passage rows of one question and their ``(rows, len(FEATURES))`` feature matrix."""
    rows = np.union1d(c.bm25.rows[:pool], c.dense.rows[:pool])
    (b, b_rank), (d, d_rank) = _aligned(c.bm25, rows), _aligned(c.dense, rows)
    cols = [b, d]
    cols += [(s - r.scores[:100].mean()) / (r.scores[:100].std() + 1e-9) for s, r in ((b, c.bm25), (d, c.dense))]
    cols += [b - c.bm25.scores[0], d - c.dense.scores[0], np.log(b_rank), np.log(d_rank), 1 / (60 + b_rank),
             1 / (60 + d_rank), ((b_rank <= 20) & (d_rank <= 20)).astype(float),
             ((b_rank <= 100) & (d_rank <= 100)).astype(float)]
    return rows, np.stack(cols, 1)


@dataclass(frozen=True)
class LearnedFusion:
    """Weights over :data:`FEATURES` (for standardised features: ``mean``/``std`` as fitted)."""

    weights: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, pools: Sequence[tuple[np.ndarray, np.ndarray]], l2: float = 1e-3) -> LearnedFusion:
        """Fit on ``(features, has_answer)`` per dev question."""
        everything = np.concatenate([x for x, _ in pools])
        mean, std = everything.mean(0), everything.std(0) + 1e-9
        useful = [(torch.tensor((x - mean) / std), torch.tensor(y)) for x, y in pools if y.any() and not y.all()]
        w = torch.zeros(everything.shape[1], dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([w], max_iter=300, line_search_fn="strong_wolfe")

        def loss() -> torch.Tensor:
            opt.zero_grad()
            total = sum(torch.logsumexp(x @ w, 0) - torch.logsumexp((x @ w)[y], 0) for x, y in useful)
            value = total / max(1, len(useful)) + l2 * (w * w).sum()
            value.backward()
            return value

        opt.step(loss)
        return cls(w.detach().numpy(), mean, std)

    def scores(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std) @ self.weights

    def fuse(self, c: Candidates, k: int) -> list[Hit]:
        """One question's top ``k`` of its pool by the fitted score (ties by passage row)."""
        rows, features = pool_features(c)
        s = self.scores(features)
        order = np.lexsort((rows, -s))[:k]
        return Ranked(rows[order], s[order]).hits()

    def described(self) -> dict[str, float]:
        """Each feature's weight (per standard deviation of the feature)."""
        return {name: round(float(w), 3) for name, w in zip(FEATURES, self.weights)}

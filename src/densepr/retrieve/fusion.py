"""Fusing two ranked lists: DPR's linear score fusion (section 5.1) and reciprocal rank fusion.

Linear fusion re-ranks the union of both lists by ``BM25(q, p) + λ · sim(q, p)``. A candidate found by only
one retriever gets the other list's minimum score (pyserini's rule), optionally after min-max or z-score
normalisation of each list. Reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009) adds
``1 / (rrf_k + rank)`` over the lists.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Literal, TypeVar

import numpy as np

from densepr.errors import DenseprError
from densepr.hits import Hit, Ranked

FUSIONS = ("linear", "rrf")
NORMALIZATIONS = ("minmax", "zscore")
RRF_K = 60
Fusion = Literal["linear", "rrf"]
Normalization = Literal["minmax", "zscore"]
K = TypeVar("K", bound=Hashable)


def check_fusion(fusion: str, normalize: str | None, depth: int, rrf_k: int) -> None:
    """One-line errors for fusion settings a hybrid cannot use."""
    if fusion not in FUSIONS:
        raise DenseprError(f"unknown fusion {fusion!r}; choose from {', '.join(FUSIONS)}")
    if normalize is not None and normalize not in NORMALIZATIONS:
        raise DenseprError(f"unknown normalisation {normalize!r}; choose from {', '.join(NORMALIZATIONS)}")
    if depth < 1:
        raise DenseprError(f"hybrid depth must be >= 1, got {depth}")
    if rrf_k < 0:
        raise DenseprError(f"rrf k must be >= 0, got {rrf_k}")


def rrf(lists_of_hits: Sequence[Iterable[K]], k: int = RRF_K) -> list[tuple[K, float]]:
    """Fuse ranked lists of hit keys (e.g. passage ids, best first) into one list of ``(key, score)``.

    Each list contributes ``1 / (k + rank)`` (rank from 1) to every key it holds; keys are returned by
    fused score, best first, ties kept in the order the keys were first seen. A key repeated within
    one list counts at its best rank only.

    >>> rrf([["a", "b"], ["b", "c"]], k=1)
    [('b', 0.8333333333333333), ('a', 0.5), ('c', 0.3333333333333333)]
    """
    if k < 0:
        raise ValueError(f"rrf k must be >= 0, got {k}")
    scores: dict[K, float] = {}
    for hits in lists_of_hits:
        seen: set[K] = set()
        for rank, key in enumerate(hits, 1):
            if key in seen:
                continue
            seen.add(key)
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    order = {key: i for i, key in enumerate(scores)}
    return sorted(scores.items(), key=lambda item: (-item[1], order[item[0]]))


def rrf_fusion(bm25_hits: Sequence[Hit] | Ranked, dense_hits: Sequence[Hit] | Ranked, k: int,
               rrf_k: int = RRF_K) -> list[Hit]:
    """Top ``k`` by reciprocal rank fusion of the two ranked lists (BM25's first on ties)."""
    fused = rrf([Ranked.of(bm25_hits).rows.tolist(), Ranked.of(dense_hits).rows.tolist()], k=rrf_k)
    return [Hit(int(row), float(score)) for row, score in fused[:k]]


def _normalized(scores: np.ndarray, reference: np.ndarray, how: str | None) -> np.ndarray:
    """``scores`` rescaled by the statistics of ``reference`` (one retriever's own list)."""
    if how is None or reference.size == 0:
        return scores
    if how == "minmax":
        low, span = reference.min(), reference.max() - reference.min()
        return (scores - low) / (span if span > 0 else 1.0)
    if how == "zscore":
        std = reference.std()
        return (scores - reference.mean()) / (std if std > 0 else 1.0)
    raise DenseprError(f"unknown normalisation {how!r}; choose from {', '.join(NORMALIZATIONS)}")


def linear_fusion(bm25_hits: Sequence[Hit] | Ranked, dense_hits: Sequence[Hit] | Ranked, lam: float, k: int,
                  normalize: str | None = None, bm25_fill: float | None = None) -> list[Hit]:
    """Top ``k`` of the union by ``bm25 + lam * dense``; a list missing a candidate lends it its minimum.

    ``bm25_fill`` replaces the BM25 list's minimum as the score of candidates it lacks (e.g. 0 when the list
    is exhaustive). Normalisation uses each list's own statistics.

    >>> linear_fusion([Hit(1, 10.0), Hit(2, 4.0)], [Hit(2, 0.9), Hit(3, 0.5)], lam=1.0, k=3)
    [Hit(row=1, score=10.5), Hit(row=2, score=4.9), Hit(row=3, score=4.5)]
    """
    bm25, dense = Ranked.of(bm25_hits), Ranked.of(dense_hits)
    b_rows, b_scores = bm25.rows, bm25.scores.astype(np.float64)
    d_rows, d_scores = dense.rows, dense.scores.astype(np.float64)
    rows = np.union1d(b_rows, d_rows)
    if rows.size == 0:
        return []
    if bm25_fill is None:
        bm25_fill = b_scores.min() if b_scores.size else 0.0
    b_full = np.full(rows.size, bm25_fill)
    b_full[np.searchsorted(rows, b_rows)] = b_scores
    d_full = np.full(rows.size, d_scores.min() if d_scores.size else 0.0)
    d_full[np.searchsorted(rows, d_rows)] = d_scores
    fused = _normalized(b_full, b_scores, normalize) + lam * _normalized(d_full, d_scores, normalize)
    order = np.lexsort((rows, -fused))[:k]  # best first; ties by passage row
    return Ranked(rows[order], fused[order]).hits()

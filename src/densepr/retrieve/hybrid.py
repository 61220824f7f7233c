"""Hybrid retrieval: BM25 and dense candidates re-scored together (DPR section 5.1), or fused by RRF.

Linear fusion follows the paper: the union of both retrievers' top-``depth`` passages is re-ranked by
``BM25(q, p) + λ · sim(q, p)``. A candidate found by only one retriever gets the other list's minimum
score (pyserini's rule), optionally after min-max or z-score normalisation of each list. One exception: a
BM25 list shorter than ``depth`` holds every passage sharing a term with the question, so the others' BM25
score is known to be 0 and is used instead of the minimum. ``fusion="rrf"`` uses reciprocal rank fusion
(:func:`densepr.serve.fusion.rrf`) instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from densepr.corpus.passages import PassageStore
from densepr.errors import DenseprError
from densepr.evaluate.metrics import top_k_accuracy
from densepr.hits import Hit
from densepr.questions import Question
from densepr.retrieve.dense import DenseRetriever
from densepr.retrieve.results import build_results
from densepr.serve.fusion import rrf
from densepr.sparse.bm25 import BM25Retriever

FUSIONS = ("linear", "rrf")
NORMALIZATIONS = ("minmax", "zscore")
RRF_K = 60  # as the HTTP service's hybrid


class Candidates(NamedTuple):
    """One question's hits from each retriever, searched ``depth`` deep."""

    bm25: list[Hit]
    dense: list[Hit]
    depth: int


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


def linear_fusion(bm25_hits: Sequence[Hit], dense_hits: Sequence[Hit], lam: float, k: int,
                  normalize: str | None = None, bm25_fill: float | None = None) -> list[Hit]:
    """Top ``k`` of the union by ``bm25 + lam * dense``; a list missing a candidate lends it its minimum.

    ``bm25_fill`` replaces the BM25 list's minimum as the score of candidates it lacks (e.g. 0 when the list
    is exhaustive). Normalisation uses each list's own statistics.

    >>> linear_fusion([Hit(1, 10.0), Hit(2, 4.0)], [Hit(2, 0.9), Hit(3, 0.5)], lam=1.0, k=3)
    [Hit(row=1, score=10.5), Hit(row=2, score=4.9), Hit(row=3, score=4.5)]
    """
    b_rows = np.fromiter((h.row for h in bm25_hits), dtype=np.int64, count=len(bm25_hits))
    b_scores = np.fromiter((h.score for h in bm25_hits), dtype=np.float64, count=len(bm25_hits))
    d_rows = np.fromiter((h.row for h in dense_hits), dtype=np.int64, count=len(dense_hits))
    d_scores = np.fromiter((h.score for h in dense_hits), dtype=np.float64, count=len(dense_hits))
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
    return [Hit(int(rows[i]), float(fused[i])) for i in order]


def rrf_fusion(bm25_hits: Sequence[Hit], dense_hits: Sequence[Hit], k: int, rrf_k: int = RRF_K) -> list[Hit]:
    """Top ``k`` by reciprocal rank fusion of the two ranked lists."""
    fused = rrf([[h.row for h in bm25_hits], [h.row for h in dense_hits]], k=rrf_k)
    return [Hit(int(row), float(score)) for row, score in fused[:k]]


class HybridRetriever:
    """BM25 + dense retrieval over one passages file, with the same ``search`` as the other retrievers.

    >>> hybrid = HybridRetriever.load("flat/", "bm25/", lam=1.1)             # doctest: +SKIP
    >>> hybrid.search(["who wrote hamlet"], k=5)[0]                            # doctest: +SKIP
    """

    def __init__(self, bm25: BM25Retriever, dense: DenseRetriever, depth: int = 2000, lam: float = 1.1,
                 normalize: str | None = None, fusion: str = "linear", rrf_k: int = RRF_K):
        if fusion not in FUSIONS:
            raise DenseprError(f"unknown fusion {fusion!r}; choose from {', '.join(FUSIONS)}")
        if normalize is not None and normalize not in NORMALIZATIONS:
            raise DenseprError(f"unknown normalisation {normalize!r}; choose from {', '.join(NORMALIZATIONS)}")
        if depth < 1:
            raise DenseprError(f"hybrid depth must be >= 1, got {depth}")
        fp_b, fp_d = bm25.meta.get("passages_fingerprint"), dense.meta.get("passages_fingerprint")
        if (fp_b and fp_d and fp_b != fp_d) or bm25.ids != dense.ids:
            raise DenseprError(
                f"the BM25 index ({len(bm25.ids)} passages of {bm25.meta.get('passages')!r}) and the dense index "
                f"({len(dense.ids)} passages of {dense.meta.get('passages')!r}) are not over the same passages file; "
                "build both from one passages TSV")
        self.bm25, self.dense = bm25, dense
        self.depth, self.lam, self.normalize, self.fusion, self.rrf_k = depth, lam, normalize, fusion, rrf_k

    @classmethod
    def load(cls, dense_dir: str | Path, bm25_dir: str | Path, model: str | None = None,
             allow_model_mismatch: bool = False, **options) -> HybridRetriever:
        """Open a dense index folder and a BM25 index folder built over the same passages."""
        dense = DenseRetriever.load(dense_dir, model=model, allow_model_mismatch=allow_model_mismatch)
        return cls(BM25Retriever.load(bm25_dir), dense, **options)

    @property
    def ids(self) -> list[str]:
        return self.dense.ids

    @property
    def meta(self) -> dict:
        settings = {"retriever": "hybrid", "fusion": self.fusion, "depth": self.depth,
                    **({"lam": self.lam, "normalize": self.normalize} if self.fusion == "linear" else {"rrf_k": self.rrf_k})}
        return dict(self.dense.meta, **settings)

    def candidates(self, questions: Sequence[str], depth: int | None = None) -> list[Candidates]:
        """Both retrievers' top-``depth`` hits per question (what fusion re-ranks)."""
        depth = depth or self.depth
        bm25 = self.bm25.search(questions, k=depth)
        dense = self.dense.search(questions, k=depth)
        return [Candidates(b, d, depth) for b, d in zip(bm25, dense)]

    def fuse(self, candidates: Candidates, k: int, lam: float | None = None) -> list[Hit]:
        """Top ``k`` of one question's candidates (``lam`` overrides the retriever's λ)."""
        if self.fusion == "rrf":
            return rrf_fusion(candidates.bm25, candidates.dense, k, self.rrf_k)
        exhaustive = len(candidates.bm25) < min(candidates.depth, len(self.ids))  # unlisted passages score 0
        return linear_fusion(candidates.bm25, candidates.dense, self.lam if lam is None else lam, k, self.normalize,
                             0.0 if exhaustive else None)

    def search(self, questions: Sequence[str], k: int = 100, chunk: int = 256) -> list[list[Hit]]:
        """Top-k fused passages per question, best first (questions handled ``chunk`` at a time)."""
        out: list[list[Hit]] = []
        depth = max(self.depth, k)
        for start in range(0, len(questions), chunk):
            out.extend(self.fuse(c, k) for c in self.candidates(questions[start : start + chunk], depth))
        return out


def tune_lambda(hybrid: HybridRetriever, questions: Sequence[Question], store: PassageStore, lams: Iterable[float],
                ks: Sequence[int] = (20, 100), match: str = "string") -> dict:
    """Top-k accuracy of linear fusion for each λ (candidates retrieved once); the best λ by the first k, then the next.

    Returns ``{"accuracy": {λ: {k: acc}}, "best": λ, "questions": n}``.
    """
    lams = list(lams)
    if not lams:
        raise DenseprError("give at least one λ to try")
    if hybrid.fusion != "linear":
        raise DenseprError("λ tuning needs linear fusion")
    candidates = hybrid.candidates([q.text for q in questions], max(hybrid.depth, max(ks)))
    accuracy: dict[float, dict[str, float]] = {}
    for lam in lams:
        hits = [hybrid.fuse(c, max(ks), lam=lam) for c in candidates]
        accuracy[lam] = top_k_accuracy(build_results(questions, hits, store, hybrid.ids, match), ks)
    keys = [str(k) for k in ks]
    best = max(lams, key=lambda lam: tuple(accuracy[lam][key] for key in keys))
    return {"accuracy": accuracy, "best": best, "questions": len(questions)}

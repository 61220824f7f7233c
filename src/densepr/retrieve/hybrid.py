"""Hybrid retrieval: BM25 and dense candidates re-scored together (DPR section 5.1), or fused by RRF.

The union of both retrievers' top-``depth`` passages is fused by :mod:`densepr.retrieve.fusion`. One
exception to the minimum-fill rule: a BM25 list shorter than ``depth`` holds every passage sharing a term
with the question, so the others' BM25 score is known to be 0 and is used instead of the minimum.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from densepr.corpus.passages import Passages
from densepr.errors import DenseprError
from densepr.evaluate.metrics import top_k_accuracy
from densepr.fileio import same_fingerprints
from densepr.hits import Hit, Ranked
from densepr.questions import Question
from densepr.retrieve.dense import DenseRetriever
from densepr.retrieve.fusion import RRF_K, check_fusion, linear_fusion, rrf_fusion
from densepr.retrieve.results import build_results
from densepr.sparse.bm25 import BM25Retriever
from densepr.sparse.terms import TermBM25


@dataclass(frozen=True)
class Candidates:
    """One question's ranked lists from each retriever, searched ``depth`` deep."""

    bm25: Ranked
    dense: Ranked
    depth: int

    def ranks(self, rows: Sequence[int]) -> dict[int, dict[str, int]]:
        """Passage row (of ``rows``) → its rank (from 1) in each list holding it."""
        wanted = np.asarray(rows, dtype=np.int64)
        out: dict[int, dict[str, int]] = {}
        for name, ranked in (("bm25", self.bm25), ("dense", self.dense)):
            which, position = np.nonzero(ranked.rows[None, :] == wanted[:, None])
            for i, rank in zip(which.tolist(), (position + 1).tolist()):
                out.setdefault(int(wanted[i]), {}).setdefault(name, rank)
        return out


class HybridRetriever:
    """BM25 + dense retrieval over one passages file, with the same ``search`` as the other retrievers.

    >>> hybrid = HybridRetriever(BM25Retriever.load("bm25/"), DenseRetriever.load("flat/"), lam=1.1)  # doctest: +SKIP
    >>> hybrid.search(["who wrote hamlet"], k=5)[0]                                                     # doctest: +SKIP
    """

    def __init__(self, bm25: BM25Retriever | TermBM25, dense: DenseRetriever, depth: int = 2000, lam: float = 1.1,
                 normalize: str | None = None, fusion: str = "linear", rrf_k: int = RRF_K):
        check_fusion(fusion, normalize, depth, rrf_k)
        same = same_fingerprints(bm25.meta.get("passages_fingerprint"), dense.meta.get("passages_fingerprint"))
        if same is False or bm25.ids != dense.ids:
            raise DenseprError(
                f"the BM25 index ({len(bm25.ids)} passages of {bm25.meta.get('passages')!r}) and the dense index "
                f"({len(dense.ids)} passages of {dense.meta.get('passages')!r}) are not over the same passages file; "
                "build both from one passages TSV")
        self.bm25, self.dense = bm25, dense
        self.depth, self.lam, self.normalize, self.fusion, self.rrf_k = depth, lam, normalize, fusion, rrf_k

    @property
    def ids(self) -> Sequence[str]:
        return self.dense.ids

    @property
    def meta(self) -> dict:
        settings = {"retriever": "hybrid", "fusion": self.fusion, "depth": self.depth,
                    **({"lam": self.lam, "normalize": self.normalize} if self.fusion == "linear" else {"rrf_k": self.rrf_k})}
        return dict(self.dense.meta, **settings)

    def candidates(self, questions: Sequence[str], depth: int | None = None,
                   vectors: np.ndarray | None = None) -> list[Candidates]:
        """Both retrievers' top-``depth`` hits per question (what fusion re-ranks)."""
        depth = depth or self.depth
        bm25 = self.bm25.ranked(questions, k=depth)
        dense = self.dense.ranked(questions, k=depth, vectors=vectors)
        return [Candidates(b, d, depth) for b, d in zip(bm25, dense)]

    def fuse(self, candidates: Candidates, k: int, lam: float | None = None) -> list[Hit]:
        """Top ``k`` of one question's candidates (``lam`` overrides the retriever's λ)."""
        if self.fusion == "rrf":
            return rrf_fusion(candidates.bm25, candidates.dense, k, self.rrf_k)
        exhaustive = len(candidates.bm25) < min(candidates.depth, len(self.ids))  # unlisted passages score 0
        return linear_fusion(candidates.bm25, candidates.dense, self.lam if lam is None else lam, k, self.normalize,
                             0.0 if exhaustive else None)

    def search_candidates(self, questions: Sequence[str], k: int = 100, vectors: np.ndarray | None = None,
                          chunk: int = 256) -> list[tuple[list[Hit], Candidates]]:
        """Top-k fused passages per question with the candidates they came from (``chunk`` questions at a time)."""
        out: list[tuple[list[Hit], Candidates]] = []
        depth = max(self.depth, k)
        for start in range(0, len(questions), chunk):
            part = None if vectors is None else vectors[start : start + chunk]
            out.extend((self.fuse(c, k), c) for c in self.candidates(questions[start : start + chunk], depth, part))
        return out

    def search(self, questions: Sequence[str], k: int = 100, vectors: np.ndarray | None = None) -> list[list[Hit]]:
        """Top-k fused passages per question, best first."""
        return [hits for hits, _ in self.search_candidates(questions, k, vectors)]


def tune_lambda(hybrid: HybridRetriever, questions: Sequence[Question], store: Passages, lams: Iterable[float],
                ks: Sequence[int] = (20, 100), match: str = "string") -> dict:
    """Top-k accuracy of linear fusion for each λ (candidates retrieved once); the best λ by the first k, then the next.

    Returns ``{"accuracy": {λ: {k: acc}}, "best": λ, "questions": n, "parts": {"bm25"|"dense": {k: acc}},
    "gain": {k: best λ's accuracy minus the better part's}}``: whether fusion helps on these questions at all.
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
    parts = {name: top_k_accuracy(build_results(questions, [getattr(c, name).hits(max(ks)) for c in candidates],
                                                store, hybrid.ids, match), ks) for name in ("bm25", "dense")}
    gain = {key: accuracy[best][key] - max(parts["bm25"][key], parts["dense"][key]) for key in keys}
    return {"accuracy": accuracy, "best": best, "questions": len(questions), "parts": parts, "gain": gain}

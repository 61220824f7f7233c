"""Exact inner-product top-k over a flat index's own vectors, with numpy.

FAISS's ``IndexFlatIP.search`` multiplies queries by 1,024-row blocks of the database and keeps a heap per query;
one BLAS product per large block and a partial sort is faster at serving batch sizes. Measured with FAISS 1.15.1 (2
OpenMP threads) against this (1 BLAS thread) over the 14,885 MiniLM vectors of the mini-Wikipedia, k = 10, medians of
9-21 calls in one process: 1 query 1.13 -> 1.02 ms, 8: 4.35 -> 3.75 ms, 30: 17.3 -> 7.1 ms, 64: 37.0 -> 10.9 ms,
255: 141 -> 35 ms; from ~384 queries on FAISS changes method and wins (512: 24 ms against 44 ms on 2 BLAS threads), so
batches of ``MAX_QUERIES`` or more stay with FAISS. The rows and scores are FAISS's (scores to float rounding); equal
scores are ordered by row.

The products run on one BLAS thread: OpenBLAS's idle threads keep spinning after a call, and on 2 cores they slowed
what ran next. With 2 BLAS threads, one question's encoding (torch) right after a search took p50 104.6 ms instead of
6.7 ms (``benchmarks/ablations/question_latency.py``), and a server answered 127 instead of 224 requests/s at 16 clients
(``benchmarks/serve.py``).
"""

from __future__ import annotations

import functools
from typing import Any

import faiss
import numpy as np
from threadpoolctl import ThreadpoolController

SCORE_BLOCK_BYTES = 64 << 20  # the queries x rows score block held at once
MAX_QUERIES = 256  # larger batches: FAISS's own search


def flat_vectors(index: Any) -> np.ndarray | None:
    """A read-only view (no copy) of an exact inner-product index's vectors, or ``None`` for any other index."""
    index = faiss.downcast_index(index)
    if not isinstance(index, faiss.IndexFlat) or index.metric_type != faiss.METRIC_INNER_PRODUCT:
        return None
    if index.ntotal == 0:
        return np.empty((0, index.d), dtype=np.float32)
    view = faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)
    view.flags.writeable = False
    return view


def _best(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` highest scores of each row of ``scores`` (unordered), with their ``rows``; of passages tied at the
    k-th score, those of lower row (so a smaller k keeps a prefix of a larger one's ranking)."""
    if scores.shape[1] <= k:
        return scores, rows
    pick = np.argpartition(scores, -k, axis=1)[:, -k:]
    best, best_rows = np.take_along_axis(scores, pick, axis=1), np.take_along_axis(rows, pick, axis=1)
    floor = best.min(axis=1, keepdims=True)
    for q in np.flatnonzero((scores >= floor).sum(axis=1) > k):  # more passages share the k-th score than fit
        candidates = np.flatnonzero(scores[q] >= floor[q])
        keep = candidates[np.lexsort((rows[q, candidates], -scores[q, candidates]))[:k]]
        best[q], best_rows[q] = scores[q, keep], rows[q, keep]
    return best, best_rows


@functools.cache
def _threadpools() -> ThreadpoolController:
    return ThreadpoolController()


def top_k(queries: np.ndarray, vectors: list[np.ndarray], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` ``(scores, rows)`` of ``queries`` against the rows of ``vectors`` (shards, numbered on from one to
    the next), best first; ``k`` must be at most the total rows. Holds one score block and 2k candidates a query."""
    n = len(queries)
    block = max(1024, SCORE_BLOCK_BYTES // (4 * max(n, 1)))
    scores, rows = np.empty((n, 0), dtype=np.float32), np.empty((n, 0), dtype=np.int64)
    first = 0
    with _threadpools().limit(limits=1, user_api="blas"):
        for shard in vectors:
            for start in range(0, len(shard), block):
                part = shard[start : start + block]
                part_rows = np.broadcast_to(np.arange(first + start, first + start + len(part)), (n, len(part)))
                part_scores, part_rows = _best(queries @ part.T, part_rows, k)
                scores, rows = _best(np.concatenate([scores, part_scores], axis=1), np.concatenate([rows, part_rows], axis=1), k)
            first += len(shard)
    order = np.lexsort((rows, -scores), axis=1)  # best score first, equal scores by row
    return np.take_along_axis(scores, order, axis=1), np.take_along_axis(rows, order, axis=1)

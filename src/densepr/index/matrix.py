"""An exact inner-product index over vectors held in memory (a collection's live passages, assembled at load).

It answers as :class:`~densepr.index.faiss_index.DenseIndex` does (``search``, ``ids``, ``meta``, ``dim``), through the
same exact top-k (:func:`densepr.index.exact.top_k`): equal scores are ordered by row.

>>> index = MatrixIndex(np.eye(3, dtype=np.float32), ["a", "b", "c"], {"model": "m"})
>>> scores, rows = index.search(np.array([[0.0, 1.0, 0.5]], dtype=np.float32), 2)
>>> rows.tolist(), scores.tolist()
([[1, 2]], [[1.0, 0.5]])
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from densepr.errors import DenseprError
from densepr.index import exact


class MatrixIndex:
    """Exact search over the rows of a float32 matrix; rows are passages ``ids``."""

    def __init__(self, vectors: np.ndarray, ids: Sequence[str], meta: dict):
        if len(vectors) != len(ids):
            raise DenseprError(f"{len(ids)} passage ids for {len(vectors)} vectors")
        self.matrix, self.ids = np.ascontiguousarray(vectors, dtype=np.float32), ids
        self.meta = {"retriever": "dense", "type": "flat", "size": len(ids), "dim": self.matrix.shape[1], **meta}

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def configure(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Nothing to tune: the search is exact."""

    def vectors(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """The stored vectors of ``rows``."""
        return self.matrix[np.asarray(rows, dtype=np.int64)]

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ``(scores, rows)`` per query, best first (``-1`` rows pad when ``k`` exceeds the rows)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise DenseprError(f"query vectors have dimension {queries.shape[-1]}, the index has {self.dim}")
        n, kept = len(queries), min(k, len(self.ids))
        scores, rows = np.full((n, k), -np.inf, np.float32), np.full((n, k), -1, np.int64)
        if kept and n:
            scores[:, :kept], rows[:, :kept] = exact.top_k(queries, [self.matrix], kept)
        return scores, rows

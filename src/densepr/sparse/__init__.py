"""Sparse (lexical) retrieval."""

from typing import TYPE_CHECKING

from densepr.lazy import lazy_exports

if TYPE_CHECKING:
    from densepr.sparse.bm25 import BM25Retriever

_EXPORTS = {"BM25Retriever": "densepr.sparse.bm25"}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

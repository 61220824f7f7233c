"""Dense vector indexes (FAISS)."""

from typing import TYPE_CHECKING

from densepr.lazy import lazy_exports

if TYPE_CHECKING:
    from densepr.index.faiss_index import DenseIndex, build_faiss

INDEX_TYPES = ("flat", "hnsw", "hnswsq8", "sq8", "sq4", "ivfsq8", "ivfpq", "ivfopq")
_EXPORTS = {"DenseIndex": "densepr.index.faiss_index", "build_faiss": "densepr.index.faiss_index"}
__all__ = ["INDEX_TYPES", *sorted(_EXPORTS)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

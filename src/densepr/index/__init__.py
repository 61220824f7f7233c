"""Dense vector indexes (FAISS)."""

from densepr.index.faiss_index import INDEX_TYPES, DenseIndex, build_faiss

__all__ = ["INDEX_TYPES", "DenseIndex", "build_faiss"]

"""Sparse (lexical) retrieval."""

from densepr.sparse.bm25 import BM25Retriever

__all__ = ["BM25Retriever"]

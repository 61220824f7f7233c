"""Retrievers and DPR result files."""

from densepr.retrieve.dense import DenseRetriever
from densepr.hits import Hit
from densepr.retrieve.hybrid import HybridRetriever, tune_lambda
from densepr.retrieve.open import load_retriever
from densepr.retrieve.results import build_results, open_passages, read_results, write_results

__all__ = ["DenseRetriever", "Hit", "HybridRetriever", "build_results", "load_retriever", "open_passages", "read_results", "tune_lambda",
           "write_results"]

"""Evaluation: DPR answer matching, top-k accuracy and BEIR metrics."""

from densepr.evaluate.answers import has_answer, tokenize
from densepr.evaluate.metrics import beir_metrics, read_qrels, top_k_accuracy

__all__ = ["beir_metrics", "has_answer", "read_qrels", "tokenize", "top_k_accuracy"]

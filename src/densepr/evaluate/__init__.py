"""Evaluation: DPR answer matching, top-k accuracy, BEIR metrics and reader exact match."""

from densepr.evaluate.answers import has_answer, tokenize
from densepr.evaluate.exact_match import exact_match, exact_match_score, normalize_answer
from densepr.evaluate.metrics import beir_metrics, read_qrels, top_k_accuracy

__all__ = ["beir_metrics", "exact_match", "exact_match_score", "has_answer", "normalize_answer", "read_qrels", "tokenize",
           "top_k_accuracy"]

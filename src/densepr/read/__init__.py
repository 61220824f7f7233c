"""The extractive reader: span and passage-selection heads over one encoder, its training and inference."""

from densepr.read.data import ReaderExample, encode_pairs, find_answer_spans, reader_examples
from densepr.read.model import Reader, best_spans, reader_loss, span_loss
from densepr.read.predict import PassageReading, answer_results, answers_at_k, choose, predict, read_passages
from densepr.read.trainer import ReaderConfig, ReaderTrainer

__all__ = ["PassageReading", "Reader", "ReaderConfig", "ReaderExample", "ReaderTrainer", "answer_results", "answers_at_k",
           "best_spans", "choose", "encode_pairs", "find_answer_spans", "predict", "read_passages", "reader_examples",
           "reader_loss", "span_loss"]

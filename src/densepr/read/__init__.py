"""The extractive reader: span and passage-selection heads over one encoder, its training task and inference."""

from typing import TYPE_CHECKING

from densepr.lazy import lazy_exports

if TYPE_CHECKING:
    from densepr.read.config import ReaderConfig
    from densepr.read.data import ReaderExample, encode_pairs, find_answer_spans, reader_examples
    from densepr.read.graph_reader import GraphReader, load_reader
    from densepr.read.inference import PassageReading, answer_results, answers_at_k, choose, predict, read_passages
    from densepr.read.model import Reader, reader_loss, span_loss
    from densepr.read.spans import best_spans
    from densepr.read.task import ReaderTask

_EXPORTS = {
    "ReaderConfig": "densepr.read.config", "ReaderExample": "densepr.read.data", "encode_pairs": "densepr.read.data",
    "find_answer_spans": "densepr.read.data", "reader_examples": "densepr.read.data", "Reader": "densepr.read.model",
    "best_spans": "densepr.read.spans", "GraphReader": "densepr.read.graph_reader",
    "load_reader": "densepr.read.graph_reader", "reader_loss": "densepr.read.model", "span_loss": "densepr.read.model",
    "PassageReading": "densepr.read.inference", "answer_results": "densepr.read.inference",
    "answers_at_k": "densepr.read.inference", "choose": "densepr.read.inference", "predict": "densepr.read.inference",
    "read_passages": "densepr.read.inference", "ReaderTask": "densepr.read.task",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

"""Retrieval: one spec, one searcher (BM25, dense or hybrid), fusion, and DPR result files."""

from typing import TYPE_CHECKING

from densepr.lazy import lazy_exports

if TYPE_CHECKING:
    from densepr.retrieve.dense import DenseRetriever
    from densepr.retrieve.fusion import linear_fusion, rrf, rrf_fusion
    from densepr.retrieve.hybrid import HybridRetriever, tune_lambda
    from densepr.retrieve.results import build_results, open_passages, read_results, write_results
    from densepr.retrieve.searcher import Searcher, open_searcher
    from densepr.retrieve.spec import SearchSpec

_EXPORTS = {
    "DenseRetriever": "densepr.retrieve.dense", "HybridRetriever": "densepr.retrieve.hybrid",
    "tune_lambda": "densepr.retrieve.hybrid", "linear_fusion": "densepr.retrieve.fusion", "rrf": "densepr.retrieve.fusion",
    "rrf_fusion": "densepr.retrieve.fusion", "build_results": "densepr.retrieve.results",
    "open_passages": "densepr.retrieve.results", "read_results": "densepr.retrieve.results",
    "write_results": "densepr.retrieve.results", "Searcher": "densepr.retrieve.searcher",
    "open_searcher": "densepr.retrieve.searcher", "SearchSpec": "densepr.retrieve.spec",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

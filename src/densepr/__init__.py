"""densepr: Dense Passage Retrieval and open-domain QA.

Names load on first use, so ``import densepr`` stays cheap (no torch, transformers or faiss until needed).

>>> import densepr                                                                   # doctest: +SKIP
>>> searcher = densepr.open_searcher(index="flat/", bm25_index="bm25/", lam=1.1)     # doctest: +SKIP
>>> questions = densepr.read_questions("NQ-open.dev.jsonl")                          # doctest: +SKIP
>>> results = searcher.results(questions, k=100)                                     # doctest: +SKIP
>>> densepr.top_k_accuracy(results)                                                  # doctest: +SKIP
"""

from typing import TYPE_CHECKING

from densepr.lazy import lazy_exports

if TYPE_CHECKING:
    from densepr.corpus import (
        Document,
        Passage,
        PassageStore,
        documents_to_passages,
        read_documents,
        split_words,
        write_passages,
    )
    from densepr.dense import BiEncoder, Encoder, encode_passages, load_embeddings
    from densepr.errors import DenseprError
    from densepr.evaluate import (
        beir_metrics,
        exact_match,
        exact_match_score,
        has_answer,
        normalize_answer,
        read_qrels,
        top_k_accuracy,
    )
    from densepr.hits import Ctx, Hit, ResultEntry, ScoredPassage
    from densepr.index import DenseIndex
    from densepr.questions import Question, read_questions
    from densepr.read import Reader
    from densepr.retrieve import (
        DenseRetriever,
        HybridRetriever,
        Searcher,
        SearchSpec,
        build_results,
        open_passages,
        open_searcher,
        read_results,
        write_results,
    )
    from densepr.sparse import BM25Retriever

__version__ = "0.1.0"
_EXPORTS = {
    **dict.fromkeys(["Document", "documents_to_passages", "read_documents"], "densepr.corpus.documents"),
    **dict.fromkeys(["Passage", "PassageStore", "split_words", "write_passages"], "densepr.corpus.passages"),
    "BiEncoder": "densepr.dense.biencoder", "Encoder": "densepr.dense.encoder",
    **dict.fromkeys(["encode_passages", "load_embeddings"], "densepr.dense.passage_encoding"),
    "DenseprError": "densepr.errors",
    **dict.fromkeys(["has_answer"], "densepr.evaluate.answers"),
    **dict.fromkeys(["exact_match", "exact_match_score", "normalize_answer"], "densepr.evaluate.exact_match"),
    **dict.fromkeys(["beir_metrics", "read_qrels", "top_k_accuracy"], "densepr.evaluate.metrics"),
    **dict.fromkeys(["Ctx", "Hit", "ResultEntry", "ScoredPassage"], "densepr.hits"),
    "DenseIndex": "densepr.index.faiss_index",
    **dict.fromkeys(["Question", "read_questions"], "densepr.questions"),
    "Reader": "densepr.read.model",
    "DenseRetriever": "densepr.retrieve.dense", "HybridRetriever": "densepr.retrieve.hybrid",
    **dict.fromkeys(["build_results", "open_passages", "read_results", "write_results"], "densepr.retrieve.results"),
    **dict.fromkeys(["Searcher", "open_searcher"], "densepr.retrieve.searcher"), "SearchSpec": "densepr.retrieve.spec",
    "BM25Retriever": "densepr.sparse.bm25",
}
__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

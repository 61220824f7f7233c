"""densepr: Dense Passage Retrieval and open-domain QA.

>>> import densepr                                                         # doctest: +SKIP
>>> store = densepr.PassageStore("psgs_w100.tsv")                         # doctest: +SKIP
>>> bm25 = densepr.BM25Retriever.build(store)                             # doctest: +SKIP
>>> questions = densepr.read_questions("NQ-open.dev.jsonl")               # doctest: +SKIP
>>> hits = bm25.search([q.text for q in questions], k=100)                # doctest: +SKIP
>>> results = densepr.build_results(questions, hits, store, bm25.ids)     # doctest: +SKIP
>>> densepr.top_k_accuracy(results)                                       # doctest: +SKIP
"""

from densepr.corpus import Document, Passage, PassageStore, documents_to_passages, read_documents, split_words, write_passages
from densepr.dense import BiEncoder, Encoder, encode_passages, load_embeddings
from densepr.errors import DenseprError
from densepr.evaluate import (beir_metrics, exact_match, exact_match_score, has_answer, normalize_answer, read_qrels,
                              top_k_accuracy)
from densepr.hits import Hit
from densepr.index import DenseIndex
from densepr.questions import Question, read_questions
from densepr.read import Reader
from densepr.retrieve import (DenseRetriever, HybridRetriever, build_results, load_retriever, open_passages, read_results,
                              write_results)
from densepr.sparse import BM25Retriever

__version__ = "0.1.0"
__all__ = [
    "BM25Retriever", "BiEncoder", "DenseIndex", "DenseRetriever", "DenseprError", "Document", "Encoder", "Hit",
    "HybridRetriever", "Passage", "PassageStore", "Question", "Reader", "beir_metrics", "build_results",
    "documents_to_passages", "encode_passages", "exact_match", "exact_match_score", "has_answer", "load_embeddings",
    "load_retriever", "normalize_answer", "open_passages", "read_documents", "read_qrels", "read_questions", "read_results",
    "split_words", "top_k_accuracy", "write_passages", "write_results",
]

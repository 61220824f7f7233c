"""The one door to retrieval: :func:`open_searcher` turns a :class:`SearchSpec` into a :class:`Searcher`.

Every entry point (``retrieve``, ``tune-hybrid``, ``ask``, ``serve``, ``mine``, ``build-train`` and the
library) opens its retriever here, so one spec gives one ranking whichever door a question comes in by.

>>> searcher = open_searcher(SearchSpec(index="flat/", bm25_index="bm25/", lam=20))   # doctest: +SKIP
>>> searcher.search(["who wrote hamlet"], k=5)[0]                                      # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from densepr.backends.choice import Backend
from densepr.corpus.passages import Passage, Passages
from densepr.dense.biencoder import BiEncoder
from densepr.errors import DenseprError
from densepr.fileio import BackgroundChecksums
from densepr.hits import Hit, ResultEntry, ScoredPassage
from densepr.questions import Question
from densepr.retrieve.collection import load_collection
from densepr.retrieve.dense import DenseRetriever
from densepr.retrieve.hybrid import HybridRetriever
from densepr.retrieve.results import build_results, open_passages
from densepr.retrieve.spec import Kind, SearchSpec
from densepr.sparse.bm25 import BM25Retriever
from densepr.sparse.terms import TermBM25

Retriever = BM25Retriever | TermBM25 | DenseRetriever | HybridRetriever
log = logging.getLogger(__name__)


class Searcher:
    """An opened :class:`SearchSpec`: hits, passages or DPR result entries for questions.

    A hybrid searcher also serves its BM25 and dense halves (:meth:`part`), which share its indexes and
    passage file. Passage reads are locked, so one searcher may serve concurrent threads.
    """

    def __init__(self, spec: SearchSpec, retriever: Retriever, store: Passages, lock: Any = None):
        self.spec, self.retriever, self.store = spec, retriever, store
        self._lock = lock or threading.RLock()  # a PassageStore reads through one file handle; bm25s tokenises in place
        self.version: int | None = None  # a collection's version number

    @property
    def kind(self) -> Kind:
        return self.spec.kind  # type: ignore[return-value]

    @property
    def ids(self) -> Sequence[str]:
        return self.retriever.ids

    @property
    def meta(self) -> dict:
        return self.retriever.meta

    @property
    def dense(self) -> DenseRetriever | None:
        """The dense retriever inside (``None`` for BM25): its question encoder makes the vectors."""
        retriever = self.retriever
        return retriever.dense if isinstance(retriever, HybridRetriever) else retriever if isinstance(retriever, DenseRetriever) else None

    @property
    def kinds(self) -> list[str]:
        """What :meth:`part` can open: the spec's own kind, plus a hybrid's two halves."""
        return ["dense", "bm25", "hybrid"] if self.kind == "hybrid" else [self.kind]

    def part(self, kind: str) -> Searcher:
        """This searcher (``kind`` is its own), or a hybrid's ``bm25`` or ``dense`` half."""
        if kind == self.kind:
            return self
        if not isinstance(self.retriever, HybridRetriever) or kind not in ("bm25", "dense"):
            raise DenseprError(f"this searcher is {self.kind}: it cannot search as {kind}")
        half: Retriever = self.retriever.bm25 if kind == "bm25" else self.retriever.dense
        part = Searcher(self.spec.part(kind), half, self.store, self._lock)  # type: ignore[arg-type]
        part.version = self.version
        return part

    def encode(self, questions: Sequence[str]) -> np.ndarray | None:
        """Question vectors for :meth:`search` (``None`` for BM25, which needs none)."""
        dense = self.dense
        return None if dense is None else dense.encode(questions)

    def search(self, questions: Sequence[str], k: int = 100, vectors: np.ndarray | None = None) -> list[list[Hit]]:
        """Top-k hits (passage rows and scores) per question, best first (``vectors``: from :meth:`encode`)."""
        if k < 1:
            raise DenseprError(f"k must be >= 1, got {k}")
        if isinstance(self.retriever, (BM25Retriever, TermBM25)):
            with self._lock:
                return self.retriever.search(questions, k)
        if isinstance(self.retriever, HybridRetriever):
            with self._lock:  # the BM25 half tokenises
                return self.retriever.search(questions, k, vectors)
        return self.retriever.search(questions, k, vectors)

    def passages(self, questions: Sequence[str], k: int = 100, vectors: np.ndarray | None = None) -> list[list[ScoredPassage]]:
        """Top-k passages per question (``{"id", "title", "text", "score"}``; a hybrid's add each half's ``ranks``)."""
        if isinstance(self.retriever, HybridRetriever):
            with self._lock:
                found = self.retriever.search_candidates(questions, k, vectors)
            ranks = [candidates.ranks([h.row for h in hits]) for hits, candidates in found]
            hits = [h for h, _ in found]
        else:
            hits, ranks = self.search(questions, k, vectors), [{} for _ in questions]
        out = []
        with self._lock:
            for question_hits, question_ranks in zip(hits, ranks):
                passages = []
                for hit in question_hits:
                    p = self._passage(hit.row)
                    passage = ScoredPassage(id=p.id, title=p.title, text=p.text, score=hit.score)
                    if hit.row in question_ranks:
                        passage["ranks"] = question_ranks[hit.row]
                    passages.append(passage)
                out.append(passages)
        return out

    def results(self, questions: Sequence[Question], k: int = 100, match: str = "string") -> list[ResultEntry]:
        """DPR result entries (``question``, ``answers``, ``ctxs`` with ``has_answer``) for questions with answers."""
        hits = self.search([q.text for q in questions], k)
        with self._lock:
            return build_results(questions, hits, self.store, self.ids, match)

    def _passage(self, row: int) -> Passage:
        passage = self.store[row]
        if passage.id != self.ids[row]:
            raise DenseprError(f"index row {row} is passage {self.ids[row]!r} but {self.store.path} has {passage.id!r} there")
        return passage


def open_searcher(spec: SearchSpec | None = None, /, **options: Any) -> Searcher:
    """Open the indexes (and question encoder) a spec names; ``options`` override its fields.

    >>> open_searcher(index="bm25/")                                           # doctest: +SKIP
    >>> open_searcher(SearchSpec.load("hybrid.json"), nprobe=64)               # doctest: +SKIP
    """
    spec = dataclasses.replace(spec or SearchSpec(), **options).resolved()
    if spec.verify is False:
        log.warning("--no-verify: index files are not checksummed on load")
    if spec.collection:
        return open_collection(spec)
    # by default, the checksums of folders up to AUTO_VERIFY_BYTES are made while the folders load, and awaited
    pending = BackgroundChecksums([spec.dense_dir, spec.bm25_dir]) if spec.verify is None else None
    try:
        searcher = _open_folders(spec, verify=False if pending else spec.verify)
    except Exception:
        if pending:
            pending.wait()  # a corrupt file explains a failed load better than its symptom does
        raise
    if pending:
        pending.wait()
    return searcher


def _open_folders(spec: SearchSpec, verify: bool | None) -> Searcher:
    """:func:`open_searcher`'s loading: the dense and BM25 folders, the passages, the question encoder."""
    dense = None
    if spec.dense_dir:
        from densepr.backends.choice import choose
        from densepr.hardware import gpu_available

        asked = choose(spec.backend, spec.precision, gpu=gpu_available())
        dense = DenseRetriever.load(spec.dense_dir, model=spec.model, allow_model_mismatch=spec.allow_model_mismatch,
                                    verify=verify, ray_address=spec.ray_address, ray_cpus=spec.ray_cpus,
                                    graph=asked.name != "torch")
        dense.index.configure(nprobe=spec.nprobe, ef_search=spec.ef_search)
    bm25 = BM25Retriever.load(spec.bm25_dir, verify=verify) if spec.bm25_dir else None
    retriever: Retriever
    if bm25 is not None and dense is not None:
        retriever = HybridRetriever(bm25, dense, depth=spec.depth, lam=spec.lam, normalize=spec.normalize,
                                    fusion=spec.fusion, rrf_k=spec.rrf_k)
    else:
        retriever = bm25 or dense  # type: ignore[assignment]
    store = open_passages(retriever.meta if dense is None else dense.meta, spec.passages,
                          index_dir=spec.bm25_dir if dense is None else spec.dense_dir)
    if dense is not None:
        _attach_question_encoder(dense, asked, store)
    return Searcher(spec, retriever, store)


def _attach_question_encoder(dense: DenseRetriever, asked: Backend, store: Passages) -> None:
    from densepr.backends.gate import sample_passages
    from densepr.dense.biencoder import attach_tower

    encoder = dense.model.question_encoder
    attach_tower(encoder, asked, sample_passages(store), question=True)
    log.info("question encoder: %s%s", encoder.backend(), f" (auto: {asked.why})" if asked.why else "")


def open_collection(spec: SearchSpec, model: BiEncoder | None = None) -> Searcher:
    """A searcher over a collection's published version (``spec.collection``); ``model``: a question encoder already
    loaded (and placed) for it, as a server reloading a new version passes. Hybrid settings the spec leaves at their
    defaults are the collection's."""
    from densepr.backends.choice import choose
    from densepr.hardware import gpu_available

    loaded = load_collection(spec.collection, verify=spec.verify)  # type: ignore[arg-type]
    defaults = SearchSpec()
    settings = {k: v for k, v in loaded.record["settings"].get("search", {}).items()
                if getattr(spec, k) == getattr(defaults, k)}
    spec = dataclasses.replace(spec, **settings)
    asked = choose(spec.backend, spec.precision, gpu=gpu_available())
    fresh = model is None
    encoder = model or BiEncoder.load(loaded.record["settings"]["model"], lite=True, graph=asked.name != "torch")
    dense = DenseRetriever(encoder, loaded.index)
    if fresh:
        _attach_question_encoder(dense, asked, loaded.passages)
    retriever: Retriever
    if spec.kind == "hybrid":
        retriever = HybridRetriever(loaded.bm25, dense, depth=spec.depth, lam=spec.lam, normalize=spec.normalize,
                                    fusion=spec.fusion, rrf_k=spec.rrf_k)
    else:
        retriever = loaded.bm25 if spec.kind == "bm25" else dense
    searcher = Searcher(spec, retriever, loaded.passages)
    searcher.version = loaded.version
    return searcher

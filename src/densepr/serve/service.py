"""The retrievers behind the HTTP service: dense (micro-batched encoding), BM25, and their RRF hybrid."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from densepr.corpus.passages import PassageStore
from densepr.errors import DenseprError
from densepr.evaluate.answers import has_answer
from densepr.hits import Hit
from densepr.retrieve.dense import DenseRetriever
from densepr.retrieve.results import open_passages
from densepr.serve.batching import MicroBatcher
from densepr.serve.fusion import rrf
from densepr.sparse.bm25 import BM25Retriever

HYBRID_DEPTH = 100  # candidates taken from each retriever before fusion (at least k)
RRF_K = 60


class RetrieverNotLoaded(DenseprError):
    """A request named a retriever whose index the server was not started with."""


class SearchService:
    """Loaded retrievers and their passage files, safe to call from concurrent requests.

    >>> service = SearchService.load("flat/", "bm25/")                       # doctest: +SKIP
    >>> await service.search(["who wrote hamlet"], k=5, kind="hybrid")       # doctest: +SKIP
    """

    def __init__(self, dense: DenseRetriever | None = None, bm25: BM25Retriever | None = None,
                 passages: str | Path | None = None, max_batch: int = 64, max_wait: float = 0.005):
        if dense is None and bm25 is None:
            raise DenseprError("give a dense index (--index), a BM25 index (--bm25-index), or both")
        self.dense, self.bm25 = dense, bm25
        self.paths: dict[str, str] = {}
        self._stores: dict[str, PassageStore] = {}
        for name, retriever in (("dense", dense), ("bm25", bm25)):
            if retriever is not None:
                path = str(passages or retriever.meta.get("passages"))
                shared = next((s for s in self._stores.values() if str(s.path) == path), None)
                self._stores[name] = shared or open_passages(retriever.meta, passages)
        self._store_lock = threading.Lock()  # a PassageStore reads through one file handle
        self._bm25_lock = threading.Lock()
        self.batcher = MicroBatcher(self._encode, max_batch=max_batch, max_wait=max_wait) if dense else None

    @classmethod
    def load(cls, dense_index: str | Path | None = None, bm25_index: str | Path | None = None, model: str | None = None,
             passages: str | Path | None = None, **options) -> SearchService:
        """Open the index folders (the dense one with its recorded question encoder unless ``model``)."""
        dense = DenseRetriever.load(dense_index, model=model) if dense_index else None
        bm25 = BM25Retriever.load(bm25_index) if bm25_index else None
        service = cls(dense, bm25, passages, **options)
        service.paths = {k: str(v) for k, v in (("dense", dense_index), ("bm25", bm25_index)) if v}
        return service

    @property
    def retrievers(self) -> list[str]:
        """The retrievers requests may name."""
        names = [n for n, r in (("dense", self.dense), ("bm25", self.bm25)) if r is not None]
        return [*names, "hybrid"] if len(names) == 2 else names

    @property
    def passage_count(self) -> int:
        return max(len(s) for s in self._stores.values())

    def default_retriever(self) -> str:
        return "dense" if self.dense is not None else "bm25"

    def check(self, kind: str) -> None:
        """Raise :class:`RetrieverNotLoaded` (a 400) unless ``kind`` can be served."""
        if kind in self.retrievers:
            return
        if kind == "hybrid":
            raise RetrieverNotLoaded(f"hybrid search needs both a dense index (--index) and a BM25 index (--bm25-index); "
                                     f"this server has only {self.retrievers[0]}")
        flag = "--index DIR (a dense index folder)" if kind == "dense" else "--bm25-index DIR"
        raise RetrieverNotLoaded(f"the {kind} retriever is not loaded: start the server with {flag}; "
                                 f"loaded: {', '.join(self.retrievers)}")

    async def search(self, questions: Sequence[str], k: int, kind: str, answers: Sequence[str] | None = None) -> list[list[dict]]:
        """Top-k passages per question as ``{"rank", "id", "title", "text", "score"[, "ranks"][, "has_answer"]}``."""
        self.check(kind)
        if kind == "dense":
            results = await self._dense_search(questions, k)
        elif kind == "bm25":
            results = await asyncio.to_thread(self._bm25_search, questions, k)
        else:
            depth = min(max(k, HYBRID_DEPTH), 1000)
            dense, bm25 = await asyncio.gather(self._dense_search(questions, depth),
                                               asyncio.to_thread(self._bm25_search, questions, depth))
            results = [fuse({"dense": d, "bm25": b}, k) for d, b in zip(dense, bm25, strict=True)]
        for passages in results:
            for rank, p in enumerate(passages, 1):
                p["rank"] = rank
                if answers:
                    p["has_answer"] = has_answer(list(answers), p["text"])
        return results

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()

    def _encode(self, questions: list[str]) -> np.ndarray:
        assert self.dense is not None
        return self.dense.model.encode_questions(questions)

    async def _dense_search(self, questions: Sequence[str], k: int) -> list[list[dict]]:
        assert self.dense is not None and self.batcher is not None
        vectors = await self.batcher.submit(questions)
        return await asyncio.to_thread(self._dense_lookup, vectors, k)

    def _dense_lookup(self, vectors: np.ndarray, k: int) -> list[list[dict]]:
        assert self.dense is not None
        scores, rows = self.dense.index.search(vectors, k)
        hits = [[Hit(int(r), float(s)) for r, s in zip(rr, ss, strict=True) if r >= 0]
                for rr, ss in zip(rows, scores, strict=True)]
        return self._passages("dense", self.dense.ids, hits)

    def _bm25_search(self, questions: Sequence[str], k: int) -> list[list[dict]]:
        assert self.bm25 is not None
        with self._bm25_lock:  # the stemmer and tokenizer are not known to be thread-safe
            hits = self.bm25.search(list(questions), k=k)
        return self._passages("bm25", self.bm25.ids, hits)

    def _passages(self, name: str, ids: Sequence[str], hits: Sequence[Sequence[Hit]]) -> list[list[dict]]:
        store, out = self._stores[name], []
        with self._store_lock:
            for question_hits in hits:
                passages = []
                for hit in question_hits:
                    p = store[hit.row]
                    if p.id != ids[hit.row]:
                        raise DenseprError(f"{name} index row {hit.row} is passage {ids[hit.row]!r} but "
                                           f"{store.path} has {p.id!r} there")
                    passages.append({**p.ctx(), "score": hit.score})
                out.append(passages)
        return out


def fuse(ranked: dict[str, list[dict]], k: int, rrf_k: int = RRF_K) -> list[dict]:
    """The top ``k`` of several retrievers' ranked passages by reciprocal rank fusion over passage ids."""
    by_id: dict[str, dict] = {}
    ranks: dict[str, dict[str, int]] = {}
    for name, passages in ranked.items():
        for rank, p in enumerate(passages, 1):
            by_id.setdefault(p["id"], p)
            ranks.setdefault(p["id"], {}).setdefault(name, rank)
    fused = rrf([[p["id"] for p in passages] for passages in ranked.values()], k=rrf_k)[:k]
    return [dict(by_id[pid], score=score, ranks=ranks[pid]) for pid, score in fused]

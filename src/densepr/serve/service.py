"""The searcher behind the HTTP service: one :class:`~densepr.retrieve.Searcher`, its question encoding micro-batched."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from densepr.errors import DenseprError
from densepr.evaluate.answers import has_answer
from densepr.hits import ScoredPassage
from densepr.retrieve.searcher import Searcher, open_searcher
from densepr.retrieve.spec import SearchSpec
from densepr.serve.batching import MicroBatcher


class RetrieverNotLoaded(DenseprError):
    """A request named a retriever whose index the server was not started with."""


class SearchService:
    """A searcher safe to call from concurrent requests; dense questions arriving together are encoded together.

    A hybrid spec serves ``hybrid`` (its own fusion: linear with its λ, or RRF) and its ``bm25`` and ``dense``
    halves, with the same rankings as ``densepr retrieve`` with that spec.

    >>> service = SearchService(open_searcher(index="flat/", bm25_index="bm25/"))   # doctest: +SKIP
    >>> await service.search(["who wrote hamlet"], k=5, kind="hybrid")              # doctest: +SKIP
    """

    def __init__(self, searcher: Searcher, max_batch: int = 64, max_wait: float = 0.005):
        self.searcher = searcher
        self.batcher = MicroBatcher(self._encode, max_batch=max_batch, max_wait=max_wait) if searcher.dense else None

    @classmethod
    def load(cls, spec: SearchSpec, **options: float) -> SearchService:
        """Open the indexes a spec names (raises :class:`DenseprError` for unusable folders)."""
        return cls(open_searcher(spec), **options)  # type: ignore[arg-type]

    @property
    def retrievers(self) -> list[str]:
        """The retrievers requests may name."""
        return self.searcher.kinds

    @property
    def passage_count(self) -> int:
        return len(self.searcher.store)

    def default_retriever(self) -> str:
        return self.searcher.kind

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

    async def search(self, questions: Sequence[str], k: int, kind: str,
                     answers: Sequence[str] | None = None) -> list[list[ScoredPassage]]:
        """Top-k passages per question as ``{"rank", "id", "title", "text", "score"[, "ranks"][, "has_answer"]}``."""
        self.check(kind)
        searcher = self.searcher.part(kind)
        vectors = await self.batcher.submit(questions) if self.batcher is not None and kind != "bm25" else None
        results = await asyncio.to_thread(searcher.passages, questions, k, vectors)
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
        vectors = self.searcher.encode(questions)
        assert vectors is not None
        return vectors

"""The searcher behind the HTTP service: one :class:`~densepr.retrieve.Searcher`, its question encoding micro-batched."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from densepr.errors import DenseprError
from densepr.evaluate.answers import has_answer
from densepr.hits import ScoredPassage
from densepr.retrieve.searcher import Searcher, open_searcher
from densepr.retrieve.spec import SearchSpec
from densepr.serve.batching import MicroBatcher


class RetrieverNotLoaded(DenseprError):
    """A request named a retriever whose index the server was not started with."""


class Query(NamedTuple):
    """One question of a request, as the micro-batcher carries it."""

    text: str
    kind: str
    k: int


class SearchService:
    """A searcher safe to call from concurrent requests; questions arriving together are answered together: one
    encoding call for the batch's questions, one index search per retriever and ``k`` among them.

    A hybrid spec serves ``hybrid`` (its own fusion: linear with its λ, or RRF) and its ``bm25`` and ``dense``
    halves, with the same rankings as ``densepr retrieve`` with that spec.

    >>> service = SearchService(open_searcher(index="flat/", bm25_index="bm25/"))   # doctest: +SKIP
    >>> await service.search(["who wrote hamlet"], k=5, kind="hybrid")              # doctest: +SKIP
    """

    def __init__(self, searcher: Searcher, max_batch: int = 64, max_wait: float = 0.005):
        self.searcher = searcher
        self.batcher: MicroBatcher[Query] = MicroBatcher(self._answer, max_batch=max_batch, max_wait=max_wait)

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
        results = await self.batcher.submit([Query(q, kind, k) for q in questions])
        for passages in results:
            if isinstance(passages, Exception):
                raise passages
            for rank, p in enumerate(passages, 1):
                p["rank"] = rank
                if answers:
                    p["has_answer"] = has_answer(list(answers), p["text"])
        return results

    async def close(self) -> None:
        await self.batcher.close()

    def _answer(self, queries: list[Query]) -> list[list[ScoredPassage] | Exception]:
        """Passages for a batch's queries (in a worker thread): the dense questions encoded in one call, then one
        search per (retriever, k); a search's error is handed to its own queries only."""
        searcher = self.searcher  # one version for the whole batch, even if a collection's next one is swapped in
        dense = [i for i, q in enumerate(queries) if q.kind != "bm25"]
        vectors = searcher.encode([queries[i].text for i in dense]) if dense else None
        row = {i: n for n, i in enumerate(dense)}
        groups: dict[tuple[str, int], list[int]] = {}
        for i, q in enumerate(queries):
            groups.setdefault((q.kind, q.k), []).append(i)
        out: list[list[ScoredPassage] | Exception] = [[] for _ in queries]
        for (kind, k), members in groups.items():
            rows = vectors[[row[i] for i in members]] if vectors is not None and kind != "bm25" else None
            try:
                found: list[list[ScoredPassage] | Exception] = list(
                    searcher.part(kind).passages([queries[i].text for i in members], k, rows))
            except DenseprError as exc:
                found = [exc] * len(members)
            for i, passages in zip(members, found, strict=True):
                out[i] = passages
        return out

"""The FastAPI application: ``POST /search``, ``POST /ask``, ``GET /health`` and a search page at ``/``."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

import densepr
from densepr.errors import DenseprError
from densepr.retrieve.spec import SearchSpec
from densepr.serve.page import PAGE
from densepr.serve.schemas import (AnswerResponse, AskResponse, ErrorBody, Health, IndexInfo, ReaderAnswer, SearchRequest,
                                   SearchResponse)
from densepr.serve.service import SearchService

NO_READER = "no reader loaded (start the server with --reader DIR from 'densepr train-reader'): these are the passages it would read"
_ERRORS: dict[int | str, dict[str, Any]] = {400: {"model": ErrorBody, "description": "the request names a retriever that is not loaded"}}


def create_app(spec: SearchSpec | None = None, *, reader: str | Path | None = None, max_batch: int = 64,
               max_wait: float = 0.005, **spec_options: Any) -> FastAPI:
    """A service over the retriever a :class:`SearchSpec` describes (``spec_options`` override its fields).

    A hybrid spec (a dense and a BM25 index) serves hybrid, dense and BM25 search; ``reader`` is a folder from
    ``densepr train-reader`` that makes ``/ask`` answer. Dense questions arriving within ``max_wait`` seconds are
    encoded together (at most ``max_batch``). Raises :class:`DenseprError` for unusable folders.

    >>> app = create_app(index="flat/", bm25_index="bm25/")    # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)           # doctest: +SKIP
    """
    spec = dataclasses.replace(spec or SearchSpec(), **spec_options)
    service = SearchService.load(spec, max_batch=max_batch, max_wait=max_wait)
    answerer = None
    if reader is not None:
        from densepr.read import Reader

        answerer = Reader.load(reader)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await service.close()

    app = FastAPI(title="densepr", version=densepr.__version__, lifespan=lifespan,
                  description="Dense Passage Retrieval search service: dense, BM25 and hybrid retrieval.")
    app.state.service = service

    @app.exception_handler(DenseprError)
    async def _user_error(_: Request, exc: DenseprError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    async def run(body: SearchRequest) -> dict:
        kind = body.retriever or service.default_retriever()
        start = time.perf_counter()
        questions = body.texts()
        hits = await service.search(questions, body.k, kind, body.answers)
        return {"retriever": kind, "k": body.k, "took_ms": round((time.perf_counter() - start) * 1000, 2),
                "results": [{"question": q, "passages": p} for q, p in zip(questions, hits, strict=True)]}

    @app.post("/search", response_model=SearchResponse, response_model_exclude_none=True, responses=_ERRORS)
    async def search(body: SearchRequest) -> dict:
        """Top-k passages for each question from the dense, BM25 or hybrid retriever (the server spec's fusion)."""
        return await run(body)

    @app.post("/ask", response_model=AnswerResponse, response_model_exclude_none=True,
              responses={**_ERRORS, 501: {"model": AskResponse, "description": "no reader loaded: the message and the retrieved passages"}})
    async def ask(body: SearchRequest) -> JSONResponse:
        """Answer spans from the top passages (server started with ``--reader``); else 501 with the passages."""
        found = await run(body)
        if answerer is None:
            return JSONResponse(status_code=501, content=AskResponse(detail=NO_READER, **found).model_dump(exclude_none=True))
        from densepr.read import predict

        answers: list[ReaderAnswer] = []
        for entry in found["results"]:
            if not entry["passages"]:
                continue
            best = await asyncio.to_thread(predict, answerer, entry["question"], entry["passages"])
            answers.append(ReaderAnswer(question=entry["question"], answer=best["answer"], passage_id=best["passage"]["id"],
                                        title=best["passage"]["title"], passage_rank=best["passage_index"] + 1,
                                        span_score=float(best["span_score"]), answer_start=best["answer_start"]))
        return JSONResponse(content=AnswerResponse(answers=answers, **found).model_dump(exclude_none=True))

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        """Liveness, the loaded retrievers, the passage count and micro-batching figures."""
        indexes: dict[str, IndexInfo] = {}
        for name in ("dense", "bm25"):
            if name in service.retrievers:
                part = service.searcher.part(name)
                indexes[name] = IndexInfo(path=str(part.spec.dense_dir or part.spec.bm25_dir), size=len(part.ids),
                                          model=part.meta.get("model"), type=part.meta.get("type", name))
        batching = service.batcher.stats.as_dict() if service.batcher else {}
        reader_name = None if answerer is None else Path(answerer.base_model).name or "reader"
        return Health(status="ok", reader=reader_name, retrievers=service.retrievers,  # type: ignore[arg-type]
                      passages=service.passage_count,
                      indexes=indexes, batching=batching)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE)

    return app

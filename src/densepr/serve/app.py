"""The FastAPI application: ``POST /search``, ``POST /ask``, ``GET /health`` and a search page at ``/``."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

import densepr
from densepr.backends.choice import serving_backend
from densepr.errors import DenseprError
from densepr.hardware import gpu_available
from densepr.retrieve.spec import SearchSpec
from densepr.serve.admission import ALWAYS_ADMITTED, Admission
from densepr.serve.page import PAGE
from densepr.serve.schemas import (
    AnswerResponse,
    AskRequest,
    CollectionInfo,
    ErrorBody,
    Health,
    IndexInfo,
    ReaderAnswer,
    SearchRequest,
    SearchResponse,
)
from densepr.serve.service import SearchService
from densepr.serve.verification import BackgroundVerify

log = logging.getLogger(__name__)
_ERRORS: dict[int | str, dict[str, Any]] = {400: {"model": ErrorBody, "description": "the request names a retriever that is not loaded"}}


MAX_BODY_BYTES = 1 << 20  # 64 questions of 1,000 characters fit many times over


def create_app(spec: SearchSpec | None = None, *, reader: str | Path | None = None, max_batch: int = 64,
               max_wait: float = 0.005, api_key: str | None = None, docs: bool = True,
               max_body_bytes: int = MAX_BODY_BYTES, max_pending: int = 256, max_queue_wait: float = 0.5,
               **spec_options: Any) -> FastAPI:
    """A service over the retriever a :class:`SearchSpec` describes (``spec_options`` override its fields).

    A hybrid spec (a dense and a BM25 index) serves hybrid, dense and BM25 search; ``reader`` is a folder from
    ``densepr train-reader`` that makes ``/ask`` answer. Dense questions arriving within ``max_wait`` seconds are
    encoded together (at most ``max_batch``). With ``api_key``, POST requests need ``Authorization: Bearer KEY`` (or
    ``X-API-Key: KEY``); ``docs=False`` turns off ``/docs`` and ``/redoc``. Bodies over ``max_body_bytes`` are refused
    (413) before they are read. A POST is shed at once with 429 and ``Retry-After: 1``, rather than queued behind the
    others (whose wait it would lengthen), when the requests in flight would take over ``max_queue_wait`` seconds at
    the rate the server has been finishing them (32 are always admitted), or number ``max_pending``
    (:mod:`densepr.serve.admission`). Raises
    :class:`DenseprError` for unusable folders.

    >>> app = create_app(index="flat/", bm25_index="bm25/")    # doctest: +SKIP
    >>> uvicorn.run(app, host="127.0.0.1", port=8000)           # doctest: +SKIP
    """
    if max_pending < 1 or not max_queue_wait >= 0:
        raise DenseprError(f"--max-pending must be >= 1 and --max-queue-wait >= 0 (got {max_pending}, {max_queue_wait})")
    asked = spec = dataclasses.replace(spec or SearchSpec(), **spec_options)
    backend, precision = serving_backend(spec.backend, spec.precision, gpu=gpu_available())
    if (backend, precision) != (spec.backend, spec.precision):
        log.info("serving questions on %s %s: steady memory on this CPU (--backend torch for torch bf16)", backend, precision)
        spec = dataclasses.replace(spec, backend=backend, precision=precision)
    service = SearchService.load(spec, max_batch=max_batch, max_wait=max_wait)
    answerer, confidence = None, None
    if reader is not None:
        from densepr.read.confidence import ConfidenceModel

        confidence = ConfidenceModel.load(reader)
        from densepr.qa import place_reader, reader_backend
        from densepr.read.graph_reader import load_reader

        answerer = load_reader(reader, graph=reader_backend(asked).name != "torch")
        place_reader(answerer, asked, service.searcher.store)  # the reader as asked: auto reads in torch bf16 here

    opened = service.searcher.spec  # resolved: its kind says which folders it holds
    verify = BackgroundVerify.of([opened.dense_dir, opened.bm25_dir]) if spec.verify is None else \
        BackgroundVerify([], "ok" if spec.verify else "not checked (--no-verify)")
    watcher = None
    if spec.collection:
        from densepr.serve.collection_watch import CollectionWatcher

        watcher = CollectionWatcher(service, service.searcher.spec)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        verify.start()
        if watcher is not None:
            watcher.start()
        yield
        if watcher is not None:
            watcher.stop()
        await service.close()

    app = FastAPI(title="densepr", version=densepr.__version__, lifespan=lifespan,
                  docs_url="/docs" if docs else None, redoc_url="/redoc" if docs else None,
                  description="Dense Passage Retrieval search service: dense, BM25 and hybrid retrieval.")

    gate = Admission(min(ALWAYS_ADMITTED, max_pending), max_pending, max_queue_wait)

    @app.middleware("http")
    async def _guard(request: Request, call_next: Any) -> Any:
        """The API key, the body-size limit and load shedding, checked before the body is read."""
        if request.method == "POST":
            if verify.failed:
                return JSONResponse(status_code=503, content={"detail": f"an index folder failed its checksums ({verify.state})"})
            refusal = gate.refusal(time.monotonic())
            if refusal is not None:
                return JSONResponse(status_code=429, headers={"Retry-After": "1"},
                                    content={"detail": f"busy: {refusal}; retry in a second"})
            if api_key is not None:
                given = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
                if not secrets.compare_digest(given.encode(), api_key.encode()):
                    return JSONResponse(status_code=401, content={"detail": "missing or wrong API key"})
            length = request.headers.get("content-length")
            if length is None or not length.isdigit() or int(length) > max_body_bytes:
                return JSONResponse(status_code=413 if length and length.isdigit() else 411,
                                    content={"detail": f"a request body needs a Content-Length of at most {max_body_bytes} bytes"})
            gate.start()
            try:
                return await call_next(request)
            finally:
                gate.finish(time.monotonic())
        return await call_next(request)
    app.state.service = service
    reader_name = None if answerer is None else Path(answerer.base_model).name or "reader"

    @app.exception_handler(DenseprError)
    async def _user_error(_: Request, exc: DenseprError) -> JSONResponse:
        return JSONResponse(status_code=400, content={"detail": str(exc)})

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        """422 naming what is wrong and where, never echoing the input (1 MB in is not 1 MB out; a lone surrogate in
        the input could not be encoded back)."""
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in exc.errors()]
        return JSONResponse(status_code=422, content={"detail": errors})

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

    @app.post("/ask", response_model=AnswerResponse, responses=_ERRORS)
    async def ask(body: AskRequest) -> JSONResponse:
        """Answer spans from the top passages; without a reader (``reader`` null) the passages alone."""
        found = await run(body)
        answers: list[ReaderAnswer] = []
        if answerer is not None:
            from densepr.qa import answer_threshold, read_answer

            threshold = answer_threshold(confidence, body.min_confidence, body.always_answer)
            for entry in found["results"]:
                if not entry["passages"]:
                    continue
                best = await asyncio.to_thread(read_answer, answerer, entry["question"], entry["passages"], confidence,
                                               threshold)
                answers.append(ReaderAnswer(question=entry["question"], answer=best["answer"], passage_id=best["passage"]["id"],
                                            title=best["passage"]["title"], passage_rank=best["passage_rank"],
                                            span_score=best["span_score"], answer_start=best["answer_start"],
                                            confidence=best["confidence"], abstained=best["abstained"]))
        content = AnswerResponse(answers=answers, reader=reader_name, **found).model_dump(exclude_none=True)
        return JSONResponse(content={**content, "reader": reader_name})

    @app.get("/health", response_model=Health)
    async def health() -> Health:
        """Liveness, the loaded retrievers, the passage count and micro-batching figures."""
        indexes: dict[str, IndexInfo] = {}
        for name in ("dense", "bm25"):
            if name in service.retrievers:
                part = service.searcher.part(name)
                indexes[name] = IndexInfo(path=Path(str(part.spec.dense_dir or part.spec.bm25_dir or part.spec.collection)).name, size=len(part.ids),
                                          model=part.meta.get("model"), type=part.meta.get("type", name))
        batching = service.batcher.stats.as_dict()
        dense = service.searcher.dense
        backends = {"question_encoder": dense.model.question_encoder.backend()} if dense is not None else {}
        if answerer is not None:
            backends["reader"] = answerer.backend()
        collection = None
        if watcher is not None:
            collection = CollectionInfo(path=watcher.folder.name, version=service.searcher.version, load_error=watcher.failed)
        return Health(status="ok", reader=reader_name, retrievers=service.retrievers,  # type: ignore[arg-type]
                      passages=service.passage_count, indexes=indexes, batching=batching, backends=backends,
                      collection=collection, verified=verify.state)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE)

    return app

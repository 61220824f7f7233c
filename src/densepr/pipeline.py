"""The pipeline steps as functions over paths: what each CLI command calls, usable from Python too.

Every function takes keyword-only arguments named as the command's options (:mod:`densepr.cli.options`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from densepr.corpus.documents import documents_to_passages, read_documents
from densepr.corpus.passages import PassageStore, write_passages
from densepr.errors import DenseprError
from densepr.hits import ResultEntry
from densepr.questions import read_questions
from densepr.retrieve.results import read_results, write_results
from densepr.retrieve.spec import SearchSpec

if TYPE_CHECKING:
    import numpy as np

    from densepr.index.faiss_index import DenseIndex
    from densepr.index.planner import Plan

log = logging.getLogger("densepr")


def make_passages(*, inputs: Sequence[str], out: str | Path, words: int = 100, format: str | None = None) -> int:
    """Split every input into passages and write one DPR TSV; returns the passage count."""
    if not inputs:
        raise DenseprError("give at least one input (a file, or wiki-vital)")

    def documents():
        for source in inputs:
            yield from read_documents(source, format)

    count = write_passages(out, documents_to_passages(documents(), words))
    if count == 0:
        raise DenseprError("the inputs hold no text: no passages written")
    log.info("wrote %d passages to %s", count, out)
    return count


def build_bm25(*, passages: str | Path, out: str | Path, k1: float = 0.9, b: float = 0.4, progress: bool = True) -> None:
    """Build and save a BM25 index over a passages TSV."""
    from densepr.sparse.bm25 import BM25Retriever

    start = time.perf_counter()
    retriever = BM25Retriever.build(PassageStore(passages), k1=k1, b=b, progress=progress)
    retriever.save(out)
    log.info("BM25 index of %d passages in %.1fs -> %s", len(retriever.ids), time.perf_counter() - start, out)


def encode(*, passages: str | Path, out: str | Path, model: str | None = None, shard_id: int | None = None,
           num_shards: int | None = None, batch_size: int | None = None, bf16: bool | None = None,
           chunk_size: int = 4096, chunk_seconds: float = 60.0, backend: str = "auto", precision: str | None = None,
           progress: bool = True) -> Path:
    """Embed one shard of a passages TSV with the passage tower (resumable), on ``backend`` (see
    :mod:`densepr.backends.choice`; a resumed run must use the same).

    Without ``shard_id``/``num_shards``, a process started by torchrun encodes shard ``RANK`` of ``WORLD_SIZE``
    (``torchrun --nproc-per-node 2 -m densepr encode ...``); otherwise the whole file is one shard.
    """
    from densepr.backends.choice import choose
    from densepr.backends.gate import sample_passages
    from densepr.dense.biencoder import BiEncoder, attach_tower
    from densepr.dense.passage_encoding import encode_passages
    from densepr.hardware import gpu_available

    if shard_id is None and num_shards is None:
        shard_id, num_shards = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    elif shard_id is None or num_shards is None:
        raise DenseprError("give both --shard-id and --num-shards, or neither (torchrun's RANK/WORLD_SIZE, else one shard)")
    store = PassageStore(passages)
    asked = choose(backend, precision, gpu=gpu_available(), bulk=bf16 is not False)  # --no-bf16: no bf16 engine
    encoder = BiEncoder.load(model, lite=True, graph=asked.name != "torch")
    tower = encoder.passage_encoder
    attach_tower(tower, asked, sample_passages(store))
    log.info("passage encoder: %s%s", tower.backend(bf16), " (auto)" if backend == "auto" else "")
    start = time.perf_counter()
    path = encode_passages(store, encoder, out, shard_id, num_shards, batch_size=batch_size, chunk_size=chunk_size,
                           chunk_seconds=chunk_seconds, bf16=bf16, progress=progress)
    log.info("encoded shard %d/%d in %.1fs -> %s", shard_id, num_shards, time.perf_counter() - start, path)
    return path


def plan_index(*, embeddings: str | Path | None = None, ram_budget: str | None = None, latency_target: float | None = None,
               size: int | None = None, dim: int | None = None) -> Plan:
    """The index :func:`build_index` would choose for ``ram_budget``: for an embeddings folder (its meta gives the count
    and dimension, nothing is loaded) or for ``size`` vectors of ``dim``."""
    from densepr.fileio import read_json
    from densepr.index.planner import parse_bytes, plan

    if ram_budget is None:
        raise DenseprError("--explain plans for a --ram-budget: give one (e.g. --ram-budget 8GB)")
    if embeddings is not None:
        meta = read_json(Path(embeddings) / "meta.json")
        size, dim = size or int(meta["num_passages"]), dim or int(meta["dim"])
    if not size or not dim:
        raise DenseprError("give --embeddings DIR, or --size N and --dim D, to plan for")
    return plan(size, dim, parse_bytes(ram_budget), latency_target)


def _question_vectors(questions: list, model: str, dim: int, source: str | Path) -> np.ndarray:
    """The vectors of ``questions`` from the embeddings' model: a recall card's queries."""
    from densepr.dense.biencoder import BiEncoder

    vectors = BiEncoder.load(model, lite=True).encode_questions([q.text for q in questions])
    if vectors.shape[1] != dim:
        raise DenseprError(f"{source}: the model {model} gives {vectors.shape[1]}-d question vectors; the index has {dim}")
    return vectors


def build_index(*, embeddings: str | Path | None = None, out: str | Path | None = None, type: str = "flat", hnsw_m: int = 32,
                nlist: int | None = None, pq_m: int | None = None, shards: int = 1, ram_budget: str | None = None,
                recall_target: float = 0.95, card_questions: str | Path | None = None,
                latency_target: float | None = None, explain: bool = False, size: int | None = None,
                dim: int | None = None, verify: bool = False, progress: bool = True) -> DenseIndex | Plan:
    """Merge embedding shards into one FAISS index folder. With ``ram_budget``, the planner chooses the type and its
    parameters, and a recall card (``recall_card.json``: recall@10/100 and queries/s at each probe setting tried, and
    the one kept) is measured and written into the folder, on the vectors of ``card_questions`` (a questions file,
    encoded with the embeddings' model; up to 1,000) where given. ``shards``: that many FAISS files over contiguous
    rows, one trained quantiser, searched in parallel and merged exactly. ``explain``: return the plan and build nothing (for
    ``embeddings``, or for ``size`` vectors of ``dim``). ``verify``: check the shards' checksums, not only sizes."""
    from densepr.dense.embedding_rows import EmbeddingRows, IdLookup
    from densepr.index.planner import parse_bytes, plan, recall_card
    from densepr.index.streaming import build_streaming
    from densepr.vector_checks import check_vectors

    if explain:
        return plan_index(embeddings=embeddings, ram_budget=ram_budget, latency_target=latency_target, size=size, dim=dim)
    if size is not None or dim is not None:
        raise DenseprError("--size and --dim plan without embeddings: use them with --explain")
    if embeddings is None or out is None:
        raise DenseprError("give --embeddings DIR and --out DIR (or --explain to plan only)")
    rows = EmbeddingRows(embeddings, verify)
    check_vectors(rows, IdLookup(rows), str(embeddings))
    provenance = {k: rows.meta[k] for k in ("model", "passages", "passages_fingerprint")}
    params: dict[str, int] = {k: v for k, v in {"hnsw_m": hnsw_m, "nlist": nlist, "pq_m": pq_m}.items() if v is not None}
    chosen = None
    if ram_budget is not None:
        chosen = plan(len(rows), rows.dim, parse_bytes(ram_budget), latency_target)
        type, params = chosen.kind, chosen.params
        log.info("planned %s %s: ~%.2f GB (%s)", type, params, chosen.bytes / 1e9, chosen.reason)
    if not 1 <= shards <= len(rows):
        raise DenseprError(f"--shards must be between 1 and the number of vectors ({len(rows)}), not {shards}")
    if card_questions and chosen is None:
        raise DenseprError("--card-questions goes with --ram-budget (the recall card is measured for a planned index)")
    asked = read_questions(card_questions)[:1000] if card_questions else []  # read (and checked) before the build
    if card_questions and not asked:
        raise DenseprError(f"{card_questions}: no questions")
    index = build_streaming(rows, out, type, provenance, shards=shards, progress=progress, **params)
    info = index.meta
    if chosen is not None:  # questions are encoded after the build, so that the model is not in its peak memory
        probes = _question_vectors(asked, rows.meta["model"], rows.dim, str(card_questions)) if asked else 1000
        card = recall_card(index, rows, recall_target, probes, query_kind=f"questions of {card_questions}")
        card.update(plan=chosen.to_dict(), build_seconds=info["build_seconds"], build_peak_rss_mb=info["build_peak_rss_mb"])
        index.save_card(out, card)
        log.info("recall card (%s): %s", type, card["chosen"])
    log.info("%s index of %d vectors built in %.1fs (peak RSS %.0f MB) -> %s", type, len(rows), info["build_seconds"],
             info["build_peak_rss_mb"], out)
    return index


def retrieve(*, spec: SearchSpec, questions: str | Path, out: str | Path, top_k: int = 100,
             match: str = "string") -> list[ResultEntry]:
    """Top-k retrieval for a question file by the retriever ``spec`` describes, written as a DPR result file."""
    from densepr.retrieve.searcher import open_searcher  # here, so training runs without faiss or bm25s

    qs = read_questions(questions)
    searcher = open_searcher(spec)
    start = time.perf_counter()
    results = searcher.results(qs, top_k, match)
    seconds = time.perf_counter() - start
    log.info("retrieved top-%d for %d questions in %.2fs (%.1f questions/s)", top_k, len(qs), seconds,
             len(qs) / max(seconds, 1e-9))
    write_results(out, results)
    return results


def tune_hybrid(*, spec: SearchSpec, questions: str | Path, lams: Sequence[float], ks: Sequence[int] = (20, 100),
                match: str = "string", save_spec: str | Path | None = None) -> dict[str, Any]:
    """Top-k accuracy of linear hybrid fusion for each λ on a question file; returns the table and the best λ.

    ``save_spec``: write ``spec`` with the best λ there, for ``retrieve --spec`` and ``serve --spec``.
    """
    from densepr.retrieve.hybrid import HybridRetriever, tune_lambda
    from densepr.retrieve.searcher import open_searcher

    searcher = open_searcher(dataclasses.replace(spec, kind="hybrid", fusion="linear"))
    assert isinstance(searcher.retriever, HybridRetriever)
    report = tune_lambda(searcher.retriever, read_questions(questions), searcher.store, lams, ks, match)
    if save_spec:
        tuned = dataclasses.replace(searcher.spec, lam=report["best"])
        tuned.save(save_spec)
        log.info("saved the hybrid spec with λ = %g to %s (as options: %s)", report["best"], save_spec,
                 " ".join(tuned.to_cli()))
    return report


def answer(*, results: str | Path, reader: str | Path, out: str | Path, ks: Sequence[int] = (1, 5, 10, 20, 50, 100),
           batch_size: int = 32, match: str = "string", bf16: bool | None = None, backend: str = "auto",
           precision: str | None = None, progress: bool = False) -> dict[str, Any]:
    """Read each question's top-k retrieved passages, write predictions; returns exact match at each k (and the
    ``backend`` that read them, see :mod:`densepr.backends.choice`)."""
    import numpy as np

    from densepr.backends.choice import choose
    from densepr.backends.gate import ctx_sample
    from densepr.fileio import write_json
    from densepr.hardware import gpu_available
    from densepr.read import answer_results
    from densepr.read.confidence import ConfidenceModel, features, selective
    from densepr.read.graph_reader import attach_any_reader, load_reader

    entries = read_results(results)
    asked = choose(backend, precision, gpu=gpu_available(), int8=False, bulk=bf16 is not False)
    model = load_reader(reader, graph=asked.name != "torch")
    placed = attach_any_reader(model, asked, ctx_sample(entries))
    calibrated = ConfidenceModel.load(reader)
    judge = None
    if calibrated is not None:
        def judge(readings, best, scores):
            return float(calibrated.probability(features(readings, best, scores))[0])
    start = time.perf_counter()
    predictions, summary = answer_results(model, entries, ks, batch_size, match, bf16, progress, judge)
    summary["seconds_per_question"] = (time.perf_counter() - start) / len(entries)
    summary["backend"] = str(placed)
    if calibrated is not None:  # selective QA: abstaining below the reader's threshold
        summary["threshold"] = calibrated.threshold
        summary["selective"] = {str(k): selective(np.array([p["predictions"][i]["confidence"] for p in predictions]),
                                                  np.array([p["predictions"][i]["exact_match"] for p in predictions], float),
                                                  calibrated.threshold) for i, k in enumerate(sorted(set(ks)))}
    write_json(out, predictions, indent=1)
    return summary

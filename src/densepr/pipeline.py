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
from densepr.hits import PassageRecord, ResultEntry
from densepr.questions import read_questions
from densepr.retrieve.results import read_results, write_results
from densepr.retrieve.spec import SearchSpec

if TYPE_CHECKING:
    import numpy as np

    from densepr.index.faiss_index import DenseIndex
    from densepr.index.planner import Plan
    from densepr.read.config import ReaderConfig
    from densepr.train.config import TrainConfig
    from densepr.train.data import TrainingExample

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


def build_train(*, questions: str | Path | Sequence[str | Path], passages: str | Path, bm25: str | Path, out: str | Path,
                match: str | Sequence[str] = "string", hard_negatives: int = 30, random_negatives: int = 10, depth: int = 100,
                words: int = 100, dense_index: str | Path | None = None) -> dict[str, dict[str, int]]:
    """Write DPR training JSON for one or several question files (SQuAD files get gold positives); ``match``: one
    mode for all, or one per file. With several files each example's ``dataset`` is its file's name. With
    ``dense_index`` (over the same passages), a question without an answer in BM25's top ``depth`` takes its
    positive from the dense top ``depth``. Returns the gold / distant / dropped counts per file."""
    from densepr.retrieve.searcher import open_searcher
    from densepr.train import build_training_data, squad_gold_rows, write_training_data

    files = _paths(questions)
    modes = [match] if isinstance(match, str) else list(match)
    if len(modes) == 1:
        modes *= len(files)
    if len(modes) != len(files):
        raise DenseprError(f"--match takes one mode, or one per question file ({len(files)}), not {len(modes)}")
    names = _set_names(files)
    searcher = open_searcher(SearchSpec(kind="bm25", index=str(bm25), passages=str(passages)))
    dense = open_searcher(SearchSpec(kind="dense", index=str(dense_index), passages=str(passages))) if dense_index else None
    examples, report = [], {}
    for file, mode, name in zip(files, modes, names):
        assert isinstance(searcher.store, PassageStore)  # a BM25 folder's passages file
        gold = squad_gold_rows(file, searcher.store, words) if str(file).endswith(".json") else None
        built, report[name] = build_training_data(read_questions(file), searcher, gold, hard_negatives, random_negatives,
                                                  depth, mode, dense=dense)
        examples += [dataclasses.replace(ex, dataset=name) for ex in built] if len(files) > 1 else built
    if len(files) > 1:
        for name, counts in report.items():
            log.info("%s: kept %d (%d gold, %d distant, %d of them via the dense index), dropped %d", name,
                     counts["gold"] + counts["distant"], counts["gold"], counts["distant"], counts["via_dense"], counts["dropped"])
    write_training_data(out, examples)
    return report


def read_training_sets(paths: str | Path | Sequence[str | Path]) -> list[TrainingExample]:
    """The examples of one or several DPR training JSON files; with several, an example without a ``dataset``
    field is named after its file (two files of the same name: an error)."""
    from densepr.train import read_training_data

    paths = _paths(paths)
    names = _set_names(paths) if len(paths) > 1 else [""]
    return [dataclasses.replace(ex, dataset=ex.dataset or name) for path, name in zip(paths, names)
            for ex in read_training_data(path)]


def _paths(value: str | Path | Sequence[str | Path]) -> list[str | Path]:
    """One path or several, as a list."""
    return [value] if isinstance(value, (str, Path)) else list(value)


def _set_names(paths: Sequence[str | Path]) -> list[str]:
    """The training-set name each file gives its examples (its stem); the names must differ."""
    names = [Path(p).stem for p in paths]
    if len(set(names)) < len(names):
        raise DenseprError(f"files of several training sets need distinct names, which name the sets: "
                           f"{', '.join(map(str, paths))}")
    return names


def train(*, train: str | Path | Sequence[str | Path], config: TrainConfig, model: str | None = None,
          dev: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    """Train the dual encoder from one or several DPR training JSON files (multi-process under torchrun)."""
    from collections import Counter

    from densepr.dense.biencoder import BiEncoder
    from densepr.loop.loop import TrainingLoop
    from densepr.train import DualEncoderModel, DualEncoderTask, read_training_data

    examples = read_training_sets(train)
    sizes = Counter(ex.dataset for ex in examples)
    if len(sizes) > 1:
        log.info("training sets: %s (sampling %s, batching %s)", ", ".join(f"{d} {n}" for d, n in sorted(sizes.items())),
                 config.sampling, config.batching)
    bi = BiEncoder.load(model)
    dual = DualEncoderModel(bi, shared=config.shared, similarity=config.similarity, temperature=config.temperature)
    dev_examples = read_training_data(dev) if dev else None
    task = DualEncoderTask(dual, examples, config, dev_examples, model_name=bi.name)
    stats = TrainingLoop(task, progress=progress).train()
    log.info("trained %d steps in %.0fs (%.1f questions/s, peak RSS %.0f MB) -> %s/final",
             stats["steps"], stats["seconds"], stats["questions_per_second"], stats["peak_rss_mb"], config.out)
    return stats


def mine(*, train: str | Path | Sequence[str | Path], spec: SearchSpec, out: str | Path, depth: int = 100, keep: int = 30,
         match: str = "string", margin: float = 0.0, keep_old: bool = False, progress: bool = True) -> dict[str, int]:
    """Re-mine hard negatives of training files (see :func:`read_training_sets`) with a retriever (a dense index built
    with the model to mine with) into one file; returns the false-negative audit (see
    :func:`densepr.train.mine_hard_negatives`)."""
    from densepr.retrieve.searcher import open_searcher
    from densepr.train import mine_hard_negatives, write_training_data

    examples, audit = mine_hard_negatives(read_training_sets(train), open_searcher(spec), depth, keep, match, margin,
                                          progress, keep_old)
    write_training_data(out, examples)
    log.info("mined %d hard negatives for %d examples; skipped as likely false negatives: %d holding an answer, %d "
             "scoring above the positive by more than %g; %d examples kept their old negatives", audit["kept"],
             audit["examples"], audit["skipped_answer"], audit["skipped_margin"], margin, audit["examples_unchanged"])
    return audit


def gold_passages(path: str | Path) -> dict[str, list[PassageRecord]]:
    """Question text → gold passages (``positive_ctxs``) of a DPR training JSON, e.g. ``build-train``'s output."""
    from densepr.train import read_training_data

    return {ex.question: [p.ctx() for p in ex.positives] for ex in read_training_data(path)}


def train_reader(*, results: str | Path, config: ReaderConfig, model: str | None = None, max_length: int = 256,
                 max_answer_len: int = 10, depth: int = 100, match: str = "string", gold: str | Path | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Train the extractive reader on a DPR result file (positives: retrieved passages holding an answer, or, with
    ``gold`` (a DPR training JSON), the questions' gold passages and the retrieved answer passages of their pages)."""
    import torch

    from densepr.loop.loop import TrainingLoop
    from densepr.read import Reader, ReaderTask, reader_examples

    entries = read_results(results)
    gold_ctxs = gold_passages(gold) if gold else None
    torch.manual_seed(config.seed)
    reader = Reader.from_pretrained(model, max_length=max_length, max_answer_len=max_answer_len)
    examples, stats = reader_examples(entries, reader.tokenizer, reader.max_length, depth, match, gold_ctxs)
    if not examples:
        raise DenseprError(f"{results}: no question has a passage with has_answer true (whose tokens hold an answer) "
                           f"in its top {depth} ({stats['questions']} questions, {stats['no_positive']} without any "
                           f"has_answer passage, {stats['no_answer_span']} without an answer span); nothing to train on")
    log.info("reader training on %d of %d questions (%d with gold passages; %d skipped: no has_answer passage; "
             "%d: answer not found in tokens)", len(examples), stats["questions"], stats["gold"], stats["no_positive"],
             stats["no_answer_span"])
    report = TrainingLoop(ReaderTask(reader, examples, config), progress=progress).train()
    report.update(data=stats)
    log.info("trained the reader %d steps in %.0fs (%.2f questions/s, loss %.3f -> %.3f) -> %s/final", report["steps"],
             report["seconds"], report["questions_per_second"], report["loss_first"] or 0, report["loss_last"] or 0,
             config.out)
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
    calibrated = ConfidenceModel.load(Path(reader)) if Path(reader).is_dir() else None
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


def export(*, model: str, out: str | Path, reader: bool = False) -> Path:
    """Write ``model`` (an encoder: one tower, or ``question_encoder/`` and ``passage_encoder/``; with ``reader``, a
    reader) as an ONNX folder that a lean install (no torch) loads; needs torch. Written atomically, with a manifest."""
    from densepr.fileio import atomic_folder, write_json, write_manifest
    from densepr.hardware import torch_installed

    if not torch_installed():
        raise DenseprError("'densepr export' runs the model in torch: pip install 'densepr[train]'")
    with atomic_folder(Path(out)) as tmp:
        if reader:
            from densepr.read.backend import export_reader
            from densepr.read.model import Reader

            export_reader(Reader.load(model), tmp, source=model)
        else:
            from densepr.dense.backend import export_tower
            from densepr.dense.biencoder import PASSAGE_DIR, QUESTION_DIR, BiEncoder
            from densepr.dense.encoder import Encoder

            towers = BiEncoder.load(model)
            question, passage = towers.question_encoder, towers.passage_encoder
            assert isinstance(question, Encoder) and isinstance(passage, Encoder)  # loaded with torch
            if towers.shared:
                export_tower(question, tmp, source=model)
            else:
                for tower, sub in ((question, QUESTION_DIR), (passage, PASSAGE_DIR)):
                    (tmp / sub).mkdir()
                    export_tower(tower, tmp / sub, source=model)
                write_json(tmp / "densepr.json", {"shared": False, "dim": towers.dim, "exported": True})
        write_manifest(tmp)
    log.info("exported %s -> %s", model, out)
    return Path(out)

"""The pipeline steps as functions over paths: what each CLI command calls, usable from Python too."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from densepr.corpus.documents import documents_to_passages, read_documents
from densepr.corpus.passages import PassageStore, write_passages
from densepr.dense.biencoder import BiEncoder
from densepr.dense.passage_encoding import encode_passages, load_embeddings
from densepr.errors import DenseprError
from densepr.index.faiss_index import DenseIndex
from densepr.questions import read_questions
from densepr.retrieve.open import load_retriever
from densepr.retrieve.results import build_results, open_passages, read_results, write_results

if TYPE_CHECKING:
    from densepr.retrieve.hybrid import HybridRetriever

log = logging.getLogger("densepr")


def make_passages(inputs: Sequence[str], out: str | Path, words: int = 100, fmt: str | None = None) -> int:
    """Split every input into passages and write one DPR TSV; returns the passage count."""
    if not inputs:
        raise DenseprError("give at least one input (a file, or wiki-vital)")

    def documents():
        for source in inputs:
            yield from read_documents(source, fmt)

    count = write_passages(out, documents_to_passages(documents(), words))
    if count == 0:
        raise DenseprError("the inputs hold no text: no passages written")
    log.info("wrote %d passages to %s", count, out)
    return count


def build_bm25(passages: str | Path, out: str | Path, k1: float = 0.9, b: float = 0.4, progress: bool = True) -> None:
    """Build and save a BM25 index over a passages TSV."""
    from densepr.sparse.bm25 import BM25Retriever

    start = time.perf_counter()
    retriever = BM25Retriever.build(PassageStore(passages), k1=k1, b=b, progress=progress)
    retriever.save(out)
    log.info("BM25 index of %d passages in %.1fs -> %s", len(retriever.ids), time.perf_counter() - start, out)


def encode(passages: str | Path, out: str | Path, model: str | None = None, shard_id: int | None = None,
           num_shards: int | None = None, batch_size: int | None = None, bf16: bool | None = None, progress: bool = True) -> Path:
    """Embed one shard of a passages TSV with the passage tower (resumable).

    Without ``shard_id``/``num_shards``, a process started by torchrun encodes shard ``RANK`` of ``WORLD_SIZE``
    (``torchrun --nproc-per-node 2 -m densepr encode ...``); otherwise the whole file is one shard.
    """
    if shard_id is None and num_shards is None:
        shard_id, num_shards = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    elif shard_id is None or num_shards is None:
        raise DenseprError("give both --shard-id and --num-shards, or neither (torchrun's RANK/WORLD_SIZE, else one shard)")
    store = PassageStore(passages)
    encoder = BiEncoder.load(model)
    start = time.perf_counter()
    path = encode_passages(store, encoder, out, shard_id, num_shards, batch_size=batch_size, bf16=bf16, progress=progress)
    log.info("encoded shard %d/%d in %.1fs -> %s", shard_id, num_shards, time.perf_counter() - start, path)
    return path


def build_index(embeddings: str | Path, out: str | Path, kind: str = "flat", **params) -> DenseIndex:
    """Merge embedding shards into one FAISS index folder."""
    vectors, ids, meta = load_embeddings(embeddings)
    provenance = {k: meta[k] for k in ("model", "passages", "passages_fingerprint")}
    index = DenseIndex.build(vectors, ids, kind, meta=provenance, **{k: v for k, v in params.items() if v is not None})
    index.save(out)
    log.info("%s index of %d vectors built in %.1fs -> %s", kind, len(ids), index.meta["build_seconds"], out)
    return index


def retrieve(index: str | Path, questions: str | Path, out: str | Path, kind: str | None = None, top_k: int = 100,
             passages: str | Path | None = None, match: str = "string", nprobe: int | None = None,
             ef_search: int | None = None, bm25_index: str | Path | None = None, hybrid: dict | None = None,
             **dense_options) -> list[dict]:
    """Top-k retrieval for a question file, written as a DPR result file.

    ``kind="hybrid"``: ``index`` is the dense index, ``bm25_index`` the BM25 one; ``hybrid`` holds
    :class:`~densepr.retrieve.hybrid.HybridRetriever` options (``lam``, ``depth``, ``fusion``, ``normalize``).
    """
    qs = read_questions(questions)
    if kind == "hybrid":
        retriever = _hybrid(index, bm25_index, hybrid, dense_options)
    else:
        retriever = load_retriever(index, kind, **dense_options)
    searcher = getattr(retriever, "dense", retriever)  # a hybrid's FAISS knobs are its dense part's
    if hasattr(searcher, "index"):
        searcher.index.configure(nprobe=nprobe, ef_search=ef_search)
    store = open_passages(retriever.meta, passages)
    start = time.perf_counter()
    hits = retriever.search([q.text for q in qs], k=top_k)
    seconds = time.perf_counter() - start
    log.info("retrieved top-%d for %d questions in %.2fs (%.1f questions/s)", top_k, len(qs), seconds, len(qs) / max(seconds, 1e-9))
    results = build_results(qs, hits, store, retriever.ids, match)
    write_results(out, results)
    return results


def build_train(questions: str | Path, passages: str | Path, bm25: str | Path, out: str | Path, match: str = "string",
                hard_negatives: int = 30, random_negatives: int = 10, depth: int = 100, words: int = 100) -> dict[str, int]:
    """Write DPR training JSON for a question file (SQuAD files get gold positives); returns the counts."""
    from densepr.sparse.bm25 import BM25Retriever
    from densepr.train import build_training_data, squad_gold_rows, write_training_data

    store, qs = PassageStore(passages), read_questions(questions)
    retriever = BM25Retriever.load(bm25)
    open_passages(retriever.meta, passages)  # the BM25 index must be over these passages
    gold = squad_gold_rows(questions, store, words) if str(questions).endswith(".json") else None
    examples, stats = build_training_data(qs, store, retriever, gold, hard_negatives, random_negatives, depth, match)
    write_training_data(out, examples)
    return stats


def train(train_file: str | Path, out: str | Path, model: str | None = None, dev_file: str | Path | None = None,
          **options) -> dict:
    """Train the dual encoder from DPR training JSON (multi-process under torchrun)."""
    from densepr.train import DualEncoderModel, TrainConfig, Trainer, read_training_data

    config = TrainConfig(out=str(out), **{k: v for k, v in options.items() if v is not None})
    bi = BiEncoder.load(model)
    dual = DualEncoderModel(bi, shared=config.shared, similarity=config.similarity, temperature=config.temperature)
    dev = read_training_data(dev_file) if dev_file else None
    stats = Trainer(dual, read_training_data(train_file), config, dev, name=bi.name).train()
    log.info("trained %d steps in %.0fs (%.1f questions/s, peak RSS %.0f MB) -> %s/final",
             stats["steps"], stats["seconds"], stats["questions_per_second"], stats["peak_rss_mb"], out)
    return stats


def mine(train_file: str | Path, index: str | Path, out: str | Path, model: str | None = None, depth: int = 100,
         keep: int = 30, match: str = "string") -> None:
    """Re-mine hard negatives of a training file with a dense index (built with the model to mine with)."""
    from densepr.retrieve.dense import DenseRetriever
    from densepr.train import mine_hard_negatives, read_training_data, write_training_data

    retriever = DenseRetriever.load(index, model=model)
    store = open_passages(retriever.meta)
    write_training_data(out, mine_hard_negatives(read_training_data(train_file), retriever, store, depth, keep, match))


def _hybrid(index: str | Path, bm25_index: str | Path | None, options: dict | None, dense_options: dict) -> HybridRetriever:
    from densepr.retrieve.hybrid import HybridRetriever

    if not bm25_index:
        raise DenseprError("the hybrid retriever needs a BM25 index (--bm25-index DIR) besides the dense one (--index DIR)")
    return HybridRetriever.load(index, bm25_index, **dense_options, **{k: v for k, v in (options or {}).items() if v is not None})


def tune_hybrid(index: str | Path, bm25_index: str | Path, questions: str | Path, lams: Sequence[float],
                ks: Sequence[int] = (20, 100), passages: str | Path | None = None, match: str = "string",
                hybrid: dict | None = None, **dense_options) -> dict:
    """Top-k accuracy of linear hybrid fusion for each λ on a question file; returns the table and the best λ."""
    from densepr.retrieve.hybrid import tune_lambda

    retriever = _hybrid(index, bm25_index, dict(hybrid or {}, fusion="linear"), dense_options)
    store = open_passages(retriever.meta, passages)
    return tune_lambda(retriever, read_questions(questions), store, lams, ks, match)


def gold_passages(path: str | Path) -> dict[str, list[dict]]:
    """Question text → gold passages (``positive_ctxs``) of a DPR training JSON, e.g. ``build-train``'s output."""
    from densepr.train import read_training_data

    return {ex.question: [p.ctx() for p in ex.positives]
            for ex in read_training_data(path)}


def train_reader(results: str | Path, out: str | Path, model: str | None = None, max_length: int = 256,
                 max_answer_len: int = 10, depth: int = 100, match: str = "string", gold: str | Path | None = None,
                 **options) -> dict:
    """Train the extractive reader on a DPR result file (positives: retrieved passages holding an answer, or, with
    ``gold`` (a DPR training JSON), the questions' gold passages and the retrieved answer passages of their pages)."""
    import torch

    from densepr.read import Reader, ReaderConfig, ReaderTrainer, reader_examples

    config = ReaderConfig(out=str(out), **{k: v for k, v in options.items() if v is not None})
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
    report = ReaderTrainer(reader, examples, config).train()
    report.update(data=stats)
    log.info("trained the reader %d steps in %.0fs (%.2f questions/s, loss %.3f -> %.3f) -> %s/final", report["steps"],
             report["seconds"], report["questions_per_second"], report["loss_first"] or 0, report["loss_last"] or 0, out)
    return report


def answer(results: str | Path, reader: str | Path, out: str | Path, ks: Sequence[int] = (1, 5, 10, 20, 50, 100),
           batch_size: int = 32, match: str = "string", bf16: bool | None = None, progress: bool = False) -> dict:
    """Read each question's top-k retrieved passages, write predictions; returns exact match at each k."""
    from densepr.fileio import write_json
    from densepr.read import Reader, answer_results

    entries = read_results(results)
    model = Reader.load(reader)
    start = time.perf_counter()
    predictions, summary = answer_results(model, entries, ks, batch_size, match, bf16, progress)
    summary["seconds_per_question"] = (time.perf_counter() - start) / len(entries)
    write_json(out, predictions, indent=1)
    return summary

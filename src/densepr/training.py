"""The training steps as functions over paths: what ``build-train``, ``train``, ``mine``, ``train-reader`` and
``export`` call, usable from Python too (keyword-only arguments named as the commands' options)."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from densepr.corpus.passages import PassageStore
from densepr.errors import DenseprError
from densepr.hits import PassageRecord
from densepr.questions import read_questions
from densepr.retrieve.results import read_results
from densepr.retrieve.spec import SearchSpec

if TYPE_CHECKING:
    from densepr.read.config import ReaderConfig
    from densepr.train.config import TrainConfig
    from densepr.train.data import TrainingExample

log = logging.getLogger("densepr")


def build_train(*, questions: str | Path | Sequence[str | Path], passages: str | Path, bm25: str | Path, out: str | Path,
                match: str | Sequence[str] = "string", hard_negatives: int = 30, random_negatives: int = 10, depth: int = 100,
                words: int = 100, dense_index: str | Path | None = None, progress: bool = True) -> dict[str, dict[str, int]]:
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
                                                  depth, mode, progress=progress, dense=dense)
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

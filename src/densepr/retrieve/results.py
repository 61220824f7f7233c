"""DPR's retrieval result file: ``[{"question", "answers", "ctxs": [{"id", "title", "text", "score", "has_answer"}]}]``."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from densepr.corpus.passages import Passages, PassageStore
from densepr.errors import DenseprError
from densepr.evaluate.answers import has_answer
from densepr.fileio import atomic_open, read_json, same_file
from densepr.hits import Ctx, Hit, ResultEntry
from densepr.questions import Question


def moved_passages(recorded: str, index_dir: str | os.PathLike, fingerprint: str | None) -> Path | None:
    """The recorded passages file found beside a moved index (in its folder or the folder above), when the
    fingerprint proves it is the same corpus: a corpus folder copied to another machine keeps working."""
    if not fingerprint:
        return None
    name = Path(recorded).name
    for folder in (Path(index_dir), Path(index_dir).parent):
        if (folder / name).is_file() and same_file(folder / name, fingerprint):
            return folder / name
    return None


def open_passages(meta: dict, passages: str | os.PathLike | None = None,
                  index_dir: str | os.PathLike | None = None) -> PassageStore:
    """The passage file an index was built from (or ``passages``), checked to be the same corpus. A recorded
    file that is gone is looked for beside ``index_dir`` (``moved_passages``)."""
    path = passages or meta.get("passages")
    if not path:
        raise DenseprError("the index does not record its passages file; pass --passages")
    if not passages and not Path(path).is_file() and index_dir is not None:
        path = moved_passages(str(path), index_dir, meta.get("passages_fingerprint")) or path
    if not Path(path).is_file():
        raise DenseprError(f"{path}: passages file of the index not found; pass --passages")
    store = PassageStore(path)
    expected = meta.get("passages_fingerprint")
    if expected and not same_file(path, expected):
        raise DenseprError(f"{path} is not the corpus the index was built from (fingerprint differs); rebuild the index")
    if len(store) != meta.get("size", len(store)):
        raise DenseprError(f"{path} has {len(store)} passages, the index {meta['size']}")
    return store


def build_results(questions: Sequence[Question], hits: Sequence[Sequence[Hit]], passages: Passages,
                  ids: Sequence[str], match: str = "string") -> list[ResultEntry]:
    """DPR result entries for ``questions`` from their hits (rows of ``passages``)."""
    results: list[ResultEntry] = []
    for question, question_hits in zip(questions, hits):
        ctxs: list[Ctx] = []
        for hit in question_hits:
            passage = passages[hit.row]
            if passage.id != ids[hit.row]:
                raise DenseprError(f"index row {hit.row} is passage {ids[hit.row]!r} but {passages.path} has {passage.id!r} there")
            ctxs.append({**passage.ctx(), "score": hit.score,
                         "has_answer": has_answer(question.answers, passage.text, match)})
        entry: ResultEntry = {"question": question.text, "answers": list(question.answers), "ctxs": ctxs}
        if question.id is not None:
            entry["qid"] = question.id
        results.append(entry)
    return results


def write_results(path: str | os.PathLike, results: Sequence[ResultEntry]) -> None:
    """Write a DPR result file atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(results, fh, ensure_ascii=False, indent=1)


def read_results(path: str | os.PathLike) -> list[ResultEntry]:
    """Read a DPR result file, checking its shape."""
    data = read_json(path)
    if not isinstance(data, list) or not all(isinstance(e, dict) and "ctxs" in e for e in data):
        raise DenseprError(f"{path}: expected a JSON list of DPR results with 'question', 'answers', 'ctxs'")
    return data

"""DPR's retrieval result file: ``[{"question", "answers", "ctxs": [{"id", "title", "text", "score", "has_answer"}]}]``."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from densepr.corpus.passages import PassageStore
from densepr.errors import DenseprError
from densepr.evaluate.answers import has_answer
from densepr.fileio import atomic_open, read_json, same_file
from densepr.hits import Ctx, Hit, ResultEntry
from densepr.questions import Question


def open_passages(meta: dict, passages: str | os.PathLike | None = None) -> PassageStore:
    """The passage file an index was built from (or ``passages``), checked to be the same corpus."""
    path = passages or meta.get("passages")
    if not path:
        raise DenseprError("the index does not record its passages file; pass --passages")
    if not Path(path).is_file():
        raise DenseprError(f"{path}: passages file of the index not found; pass --passages")
    store = PassageStore(path)
    expected = meta.get("passages_fingerprint")
    if expected and not same_file(path, expected):
        raise DenseprError(f"{path} is not the corpus the index was built from (fingerprint differs); rebuild the index")
    if len(store) != meta.get("size", len(store)):
        raise DenseprError(f"{path} has {len(store)} passages, the index {meta['size']}")
    return store


def build_results(questions: Sequence[Question], hits: Sequence[Sequence[Hit]], passages: PassageStore,
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

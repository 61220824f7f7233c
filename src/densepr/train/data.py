"""DPR's retriever training JSON: ``question``, ``answers``, ``positive_ctxs``, ``negative_ctxs``, ``hard_negative_ctxs``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from densepr.corpus.passages import Passage
from densepr.errors import DenseprError
from densepr.fileio import atomic_open, read_json

CTX_FIELDS = ("positive_ctxs", "negative_ctxs", "hard_negative_ctxs")


@dataclass
class TrainingExample:
    """One question with its positive passages and negatives."""

    question: str
    answers: list[str]
    positives: list[Passage]
    negatives: list[Passage] = field(default_factory=list)
    hard_negatives: list[Passage] = field(default_factory=list)

    def to_dpr(self) -> dict:
        def ctx(p: Passage) -> dict:
            return {"title": p.title, "text": p.text, "passage_id": p.id}

        return {"question": self.question, "answers": self.answers, "positive_ctxs": [ctx(p) for p in self.positives],
                "negative_ctxs": [ctx(p) for p in self.negatives], "hard_negative_ctxs": [ctx(p) for p in self.hard_negatives]}


def _ctxs(entry: dict, key: str, where: str) -> list[Passage]:
    out = []
    for i, c in enumerate(entry.get(key) or []):
        if not isinstance(c, dict) or not isinstance(c.get("text"), str):
            raise DenseprError(f"{where}: {key}[{i}] needs a string 'text'")
        pid = c.get("passage_id", c.get("psg_id", c.get("id", "")))
        out.append(Passage(str(pid), c["text"], c.get("title") or ""))
    return out


def read_training_data(path: str | os.PathLike) -> list[TrainingExample]:
    """Read DPR training JSON (as DPR ships it); examples without a positive are dropped, as in DPR."""
    data = read_json(path)
    if not isinstance(data, list):
        raise DenseprError(f"{path}: expected a JSON list of DPR training examples")
    examples = []
    for i, entry in enumerate(data):
        where = f"{path}: example {i}"
        if not isinstance(entry, dict) or not isinstance(entry.get("question"), str):
            raise DenseprError(f"{where}: needs a string 'question'")
        ex = TrainingExample(entry["question"], list(entry.get("answers") or []),
                             *(_ctxs(entry, key, where) for key in CTX_FIELDS))
        if ex.positives:
            examples.append(ex)
    if not examples:
        raise DenseprError(f"{path}: no example has a positive passage")
    return examples


def write_training_data(path: str | os.PathLike, examples: list[TrainingExample]) -> None:
    """Write DPR training JSON atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump([ex.to_dpr() for ex in examples], fh, ensure_ascii=False, indent=1)

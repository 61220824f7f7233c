"""DPR's retriever training JSON: ``question``, ``answers``, ``positive_ctxs``, ``negative_ctxs``, ``hard_negative_ctxs``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from densepr.corpus.passages import Passage
from densepr.errors import DenseprError
from densepr.evaluate.answers import MATCH_MODES
from densepr.fileio import atomic_open, iter_json_list

CTX_FIELDS = ("positive_ctxs", "negative_ctxs", "hard_negative_ctxs")


@dataclass
class TrainingExample:
    """One question with its positive passages and negatives."""

    question: str
    answers: list[str]
    positives: list[Passage]
    negatives: list[Passage] = field(default_factory=list)
    hard_negatives: list[Passage] = field(default_factory=list)
    dataset: str = ""  # the training set it comes from (DPR's "dataset" field)
    match: str = ""  # how its answers match passages ("regex" for CuratedTREC); "" leaves it to the caller

    def to_dpr(self) -> dict:
        def ctx(p: Passage) -> dict:
            return {"title": p.title, "text": p.text, "passage_id": p.id}

        entry = {"dataset": self.dataset} if self.dataset else {}
        if self.match:
            entry["answer_match"] = self.match
        return {**entry, "question": self.question, "answers": self.answers, "positive_ctxs": [ctx(p) for p in self.positives],
                "negative_ctxs": [ctx(p) for p in self.negatives], "hard_negative_ctxs": [ctx(p) for p in self.hard_negatives]}


def _ctxs(entry: dict, key: str, where: str, interned: dict[tuple[str, str, str], Passage]) -> list[Passage]:
    out = []
    for i, c in enumerate(entry.get(key) or []):
        if not isinstance(c, dict) or not isinstance(c.get("text"), str):
            raise DenseprError(f"{where}: {key}[{i}] needs a string 'text'")
        pid = str(c.get("passage_id", c.get("psg_id", c.get("id", ""))))
        title = c.get("title") or ""
        out.append(interned.setdefault((pid, title, c["text"]), Passage(pid, c["text"], title)))
    return out


def read_training_data(path: str | os.PathLike) -> list[TrainingExample]:
    """Read DPR training JSON (as DPR ships it); examples without a positive are dropped, as in DPR.

    Examples are decoded one at a time and a passage met again (the same hard negative of many questions) is
    one object, so memory follows the distinct passages rather than the file's size.
    """
    examples: list[TrainingExample] = []
    interned: dict[tuple[str, str, str], Passage] = {}
    for i, entry in enumerate(iter_json_list(path)):
        where = f"{path}: example {i}"
        if not isinstance(entry, dict) or not isinstance(entry.get("question"), str):
            raise DenseprError(f"{where}: needs a string 'question'")
        positives, negatives, hard = (_ctxs(entry, key, where, interned) for key in CTX_FIELDS)
        match = str(entry.get("answer_match") or "")
        if match and match not in MATCH_MODES:
            raise DenseprError(f"{where}: answer_match must be one of {', '.join(MATCH_MODES)}, not {match!r}")
        ex = TrainingExample(entry["question"], list(entry.get("answers") or []), positives, negatives, hard,
                             dataset=str(entry.get("dataset") or ""), match=match)
        if ex.positives:
            examples.append(ex)
    if not examples:
        raise DenseprError(f"{path}: no example has a positive passage")
    return examples


def write_training_data(path: str | os.PathLike, examples: list[TrainingExample]) -> None:
    """Write DPR training JSON atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump([ex.to_dpr() for ex in examples], fh, ensure_ascii=False, indent=1)

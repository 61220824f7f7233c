"""Typed retrieval records: a hit (passage row + score), a ranked list as arrays, and DPR's result-file entries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, TypedDict

import numpy as np
from typing_extensions import NotRequired


class Hit(NamedTuple):
    """One retrieved passage: its row in the passage file and the retriever's score."""

    row: int
    score: float


@dataclass(frozen=True)
class Ranked:
    """One question's ranked list as arrays (passage rows, scores; best first): what fusion works on, without a
    :class:`Hit` object per candidate (a hybrid's lists are 2,000 deep)."""

    rows: np.ndarray
    scores: np.ndarray

    @classmethod
    def of(cls, hits: Sequence[Hit] | Ranked) -> Ranked:
        """``hits`` as arrays (a :class:`Ranked` as it is)."""
        if isinstance(hits, Ranked):
            return hits
        return cls(np.fromiter((h.row for h in hits), dtype=np.int64, count=len(hits)),
                   np.fromiter((h.score for h in hits), dtype=np.float64, count=len(hits)))

    def __len__(self) -> int:
        return len(self.rows)

    def hits(self, limit: int | None = None) -> list[Hit]:
        """The first ``limit`` (default: all) as :class:`Hit` records."""
        return [Hit(r, s) for r, s in zip(self.rows[:limit].tolist(), self.scores[:limit].tolist())]


class PassageRecord(TypedDict):
    """A passage as results, the service and the reader see it."""

    id: str
    title: str
    text: str


class ScoredPassage(PassageRecord):
    """A retrieved passage with its score; a hybrid's also carry each retriever's rank of it (``ranks``).

    The service adds the passage's ``rank`` in its list and, when answers are given, ``has_answer``.
    """

    score: float
    ranks: NotRequired[dict[str, int]]
    rank: NotRequired[int]
    has_answer: NotRequired[bool]


class Ctx(PassageRecord):
    """One entry of a DPR result's ``ctxs``."""

    score: float
    has_answer: bool


class ResultEntry(TypedDict):
    """One question of a DPR result file."""

    question: str
    answers: list[str]
    ctxs: list[Ctx]
    qid: NotRequired[str]

"""Typed retrieval records: a hit (passage row + score) and DPR's result-file entries."""

from __future__ import annotations

from typing import NamedTuple, TypedDict

from typing_extensions import NotRequired


class Hit(NamedTuple):
    """One retrieved passage: its row in the passage file and the retriever's score."""

    row: int
    score: float


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

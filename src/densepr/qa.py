"""Question in, answer out: a searcher and a reader kept loaded together (what ``ask`` and ``serve`` run)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TypedDict

from densepr.backends.choice import Backend, BackendOptions, choose
from densepr.corpus.passages import Passages
from densepr.errors import DenseprError
from densepr.hits import ScoredPassage
from densepr.questions import check_question
from densepr.read.confidence import ConfidenceModel, features
from densepr.read.graph_reader import AnyReader, attach_any_reader
from densepr.read.inference import choose as choose_reading
from densepr.read.inference import read_passages
from densepr.retrieve.searcher import Searcher

log = logging.getLogger(__name__)


def reader_backend(spec: BackendOptions, bulk: bool = False) -> Backend:
    """The backend ``spec`` asks for the reader on this machine (``auto`` never picks int8 for it)."""
    from densepr.hardware import gpu_available

    return choose(spec.backend, spec.precision, gpu=gpu_available(), int8=False, bulk=bulk)


def place_reader(reader: AnyReader, spec: BackendOptions, store: Passages) -> Backend:
    """Put ``reader`` on the backend ``spec`` asks for, checked on ``store``'s passages; logs what runs."""
    from densepr.backends.gate import sample_passages

    asked = reader_backend(spec)
    placed = attach_any_reader(reader, asked, sample_passages(store))
    log.info("reader: %s%s", reader.backend(), f" (auto: {asked.why})" if asked.why else "")
    return placed


class Answer(TypedDict):
    """The reader's answer to one question and the passages it read (best retrieved first)."""

    question: str
    answer: str  # "" when no passage holds a span
    span_score: float
    confidence: float | None  # P(the answer is right), from the reader's confidence model (None: it has none)
    abstained: bool  # the confidence is below the threshold: "no confident answer" (``answer`` is the best guess)
    passage: ScoredPassage  # the passage the answer comes from
    passage_rank: int  # its rank in ``passages`` (from 1)
    answer_start: int  # where the answer begins in the passage's text (-1: no span)
    passages: list[ScoredPassage]


def answer_threshold(confidence: ConfidenceModel | None, min_confidence: float | None = None,
                     always_answer: bool = False) -> float | None:
    """The confidence below which answers abstain: ``min_confidence``, else the model's threshold; ``None`` (always
    answer) with ``always_answer`` or without a model. ``min_confidence`` without a model is refused in one line."""
    if min_confidence is not None and not 0 <= min_confidence <= 1:
        raise DenseprError(f"--min-confidence is a probability in [0, 1], not {min_confidence}")
    if min_confidence is not None and confidence is None:
        raise DenseprError("--min-confidence needs a reader with a confidence model (confidence.json beside it)")
    if always_answer or confidence is None:
        return None
    return min_confidence if min_confidence is not None else confidence.threshold


def read_answer(reader: AnyReader, question: str, passages: list[ScoredPassage], confidence: ConfidenceModel | None = None,
                threshold: float | None = None) -> Answer:
    """Read ``passages`` and answer from the best-selected one, with the answer's confidence; ``abstained`` when it is
    below ``threshold`` (``None``: always answer)."""
    if not passages:
        return Answer(question=question, answer="", span_score=0.0, confidence=None if confidence is None else 0.0,
                      abstained=threshold is not None and confidence is not None,
                      passage=ScoredPassage(id="", title="", text="", score=0.0), passage_rank=0, answer_start=-1, passages=[])
    readings = read_passages(reader, question, passages)
    best = choose_reading(readings)
    sure = None
    if confidence is not None:
        sure = float(confidence.probability(features(readings, best, [p["score"] for p in passages]))[0])
    return Answer(question=question, answer=best.answer, span_score=float(best.span_score), confidence=sure,
                  abstained=sure is not None and threshold is not None and sure < threshold,
                  passage=passages[best.index], passage_rank=best.index + 1, answer_start=best.answer_start,
                  passages=passages)


class Answerer:
    """Retrieve the top ``k`` passages for a question, read them, answer; both models stay loaded between questions.

    With a ``confidence`` model (the reader's ``confidence.json``), each answer carries the probability that it is
    right, and ``abstained`` below ``threshold`` (default: the model's; ``None`` with ``always_answer``).

    >>> qa = Answerer(open_searcher(index="flat/", bm25_index="bm25/"), Reader.load("reader/"))   # doctest: +SKIP
    >>> qa.answer("who wrote hamlet")["answer"]                                                    # doctest: +SKIP
    'William Shakespeare'
    """

    def __init__(self, searcher: Searcher, reader: AnyReader, k: int = 5, confidence: ConfidenceModel | None = None,
                 min_confidence: float | None = None, always_answer: bool = False):
        if k < 1:
            raise DenseprError(f"--top-k must be >= 1, got {k}")
        self.searcher, self.reader, self.k, self.confidence = searcher, reader, k, confidence
        self.threshold = answer_threshold(confidence, min_confidence, always_answer)

    def answer(self, question: str, k: int | None = None) -> Answer:
        """The answer from the top ``k`` passages (default: the answerer's ``k``)."""
        return self.answer_many([question], k)[0]

    def answer_many(self, questions: Sequence[str], k: int | None = None) -> list[Answer]:
        """Answers for several questions (their retrieval batched, each question's passages read together)."""
        for q in questions:
            check_question(q)
        found = self.searcher.passages(list(questions), k or self.k)
        return [read_answer(self.reader, q, passages, self.confidence, self.threshold) for q, passages in zip(questions, found)]

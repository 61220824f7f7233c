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
from densepr.read.graph_reader import AnyReader, attach_any_reader
from densepr.read.inference import predict
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
    passage: ScoredPassage  # the passage the answer comes from
    passage_rank: int  # its rank in ``passages`` (from 1)
    answer_start: int  # where the answer begins in the passage's text (-1: no span)
    passages: list[ScoredPassage]


class Answerer:
    """Retrieve the top ``k`` passages for a question, read them, answer; both models stay loaded between questions.

    >>> qa = Answerer(open_searcher(index="flat/", bm25_index="bm25/"), Reader.load("reader/"))   # doctest: +SKIP
    >>> qa.answer("who wrote hamlet")["answer"]                                                    # doctest: +SKIP
    'William Shakespeare'
    """

    def __init__(self, searcher: Searcher, reader: AnyReader, k: int = 5):
        if k < 1:
            raise DenseprError(f"--top-k must be >= 1, got {k}")
        self.searcher, self.reader, self.k = searcher, reader, k

    def answer(self, question: str, k: int | None = None) -> Answer:
        """The answer from the top ``k`` passages (default: the answerer's ``k``)."""
        return self.answer_many([question], k)[0]

    def answer_many(self, questions: Sequence[str], k: int | None = None) -> list[Answer]:
        """Answers for several questions (their retrieval batched, each question's passages read together)."""
        for q in questions:
            check_question(q)
        found = self.searcher.passages(list(questions), k or self.k)
        return [self._read(q, passages) for q, passages in zip(questions, found)]

    def _read(self, question: str, passages: list[ScoredPassage]) -> Answer:
        if not passages:
            return Answer(question=question, answer="", span_score=0.0, passage=ScoredPassage(id="", title="", text="", score=0.0),
                          passage_rank=0, answer_start=-1, passages=[])
        best = predict(self.reader, question, passages)
        return Answer(question=question, answer=best["answer"], span_score=float(best["span_score"]),
                      passage=passages[best["passage_index"]], passage_rank=best["passage_index"] + 1,
                      answer_start=best["answer_start"], passages=passages)


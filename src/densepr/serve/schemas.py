"""Request and response bodies of the HTTP service, with the limits that keep user input a 4xx."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, model_validator

from densepr.questions import MAX_QUESTION_CHARS, is_blank, not_blank_pattern

MAX_QUESTIONS = 64
MAX_K = 1000
MAX_ASK_QUESTIONS, MAX_ASK_K = 8, 50  # /ask reads every passage it returns: at most 400 a request (seconds on a CPU)
MAX_ANSWERS = 32
RETRIEVERS = ("dense", "bm25", "hybrid")
RetrieverName = Literal["dense", "bm25", "hybrid"]


def _integral(value: object) -> object:
    """A number without a fraction (``5.0``) is an integer in JSON Schema; strings and booleans stay refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _not_blank(text: str) -> str:
    if is_blank(text):
        raise ValueError("the question is empty: it needs a letter, digit, mark or symbol")
    return text


Question = Annotated[str, StringConstraints(min_length=1, max_length=MAX_QUESTION_CHARS), AfterValidator(_not_blank),
                     Field(json_schema_extra={"pattern": not_blank_pattern()})]  # the schema states the blank rule too
Answer = Annotated[str, StringConstraints(min_length=1, max_length=MAX_QUESTION_CHARS)]


class SearchRequest(BaseModel):
    """One question (``question``) or a batch (``questions``), how many passages each, and which retriever."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"question": "where was einstein born", "k": 5, "retriever": "hybrid"}],
        "oneOf": [  # exactly one of the two given (not null)
            {"required": ["question"], "properties": {"question": {"type": "string"}, "questions": {"type": "null"}}},
            {"required": ["questions"], "properties": {"questions": {"type": "array"}, "question": {"type": "null"}}}]})

    question: Question | None = Field(None, description=f"one question (1 to {MAX_QUESTION_CHARS} characters)")
    questions: list[Question] | None = Field(None, min_length=1, max_length=MAX_QUESTIONS,
                                             description=f"1 to {MAX_QUESTIONS} questions")
    k: Annotated[int, BeforeValidator(_integral)] = Field(10, ge=1, le=MAX_K, strict=True, description="passages per question")
    retriever: RetrieverName | None = Field(None, description="dense, bm25 or hybrid (default: dense if loaded, else bm25)")
    answers: list[Answer] | None = Field(None, max_length=MAX_ANSWERS,
                                         description="answer strings: each passage gets has_answer (DPR's matching)")

    @model_validator(mode="after")
    def _one_of_question_questions(self) -> SearchRequest:
        if (self.question is None) == (self.questions is None):
            most = type(self).model_fields["questions"].metadata[-1].max_length
            raise ValueError(f"give either 'question' (a string) or 'questions' (a list of 1 to {most} strings)")
        return self

    def texts(self) -> list[str]:
        """The questions of the request, as a list."""
        return [self.question] if self.question is not None else list(self.questions or [])


class AskRequest(SearchRequest):
    """``/ask``: as :class:`SearchRequest`, with fewer questions and passages, since the reader reads every one."""

    questions: list[Question] | None = Field(None, min_length=1, max_length=MAX_ASK_QUESTIONS,
                                             description=f"1 to {MAX_ASK_QUESTIONS} questions")
    k: Annotated[int, BeforeValidator(_integral)] = Field(10, ge=1, le=MAX_ASK_K, strict=True,
                                                          description="passages per question, all read")
    min_confidence: float | None = Field(None, ge=0, le=1, description="abstain below this confidence (default: the "
                                                                       "reader's threshold)")
    always_answer: bool = Field(False, description="never abstain")


class PassageHit(BaseModel):
    """One retrieved passage; ``score`` is the retriever's (fused for hybrid, with each retriever's rank in ``ranks``)."""

    rank: int
    id: str
    title: str
    text: str
    score: float
    has_answer: bool | None = None
    ranks: dict[str, int] | None = None


class QuestionResult(BaseModel):
    question: str
    passages: list[PassageHit]


class SearchResponse(BaseModel):
    retriever: RetrieverName
    k: int
    took_ms: float
    results: list[QuestionResult]


class ReaderAnswer(BaseModel):
    """The reader's span for one question, and the passage it came from."""

    question: str
    answer: str
    passage_id: str
    title: str
    passage_rank: int
    span_score: float
    answer_start: int = Field(-1, description="where the answer begins in its passage's text (characters; -1: no span)")
    confidence: float | None = Field(None, description="the probability that the answer is right (null: the reader "
                                                       "has no confidence model)")
    abstained: bool = Field(False, description="the confidence is below the threshold: no confident answer (``answer`` "
                                               "is the best guess)")


class AnswerResponse(SearchResponse):
    """``/ask``: one answer per question (none without a reader) plus the passages read."""

    answers: list[ReaderAnswer]
    reader: str | None = None  # the loaded reader's name; null: no reader, the passages alone


class IndexInfo(BaseModel):
    path: str  # the index folder's name (no server paths)
    size: int
    model: str | None = None
    type: str | None = None


class CollectionInfo(BaseModel):
    path: str
    version: int | None = Field(None, description="the collection version being served")
    load_error: str | None = Field(None, description="why the newest published version is not served yet, if it is not")


class Health(BaseModel):
    status: Literal["ok"]
    reader: str | None = Field(None, description="the reader /ask uses (null: none loaded)")
    retrievers: list[RetrieverName]
    passages: int
    indexes: dict[str, IndexInfo]
    batching: dict[str, int | float]
    backends: dict[str, str] = Field(default_factory=dict, description="what computes each model: torch fp32, torch bf16, "
                                     "onnx int8... (question_encoder, reader)")
    collection: CollectionInfo | None = Field(None, description="a served collection: its folder and the version served")
    verified: str = Field("ok", description="checksums of index folders too large to check on load: ok, verifying, or "
                                            "failed: <why> (the server then answers 503)")


class ErrorBody(BaseModel):
    detail: str

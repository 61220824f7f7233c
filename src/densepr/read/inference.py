"""Reader inference: score a question's passages, pick the top-selected one, extract its best span."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from tqdm.auto import tqdm

from densepr.errors import DenseprError
from densepr.evaluate.exact_match import exact_match
from densepr.read.spans import best_spans, masked, span_certainty

if TYPE_CHECKING:
    from densepr.read.graph_reader import GraphReader
    from densepr.read.model import Reader

AnyReader = Union["Reader", "GraphReader"]  # torch's, or an ONNX graph's (no torch)

DEFAULT_KS = (1, 5, 10, 20, 50, 100)


@dataclass
class PassageReading:
    """What the reader makes of one passage: its selection logit and its best answer span."""

    index: int  # the passage's position among the question's passages
    selection: float
    span_score: float
    start: int  # token positions of the span (inclusive)
    end: int
    answer: str
    answer_start: int = -1  # where the answer begins in the passage text (characters; -1: no span)
    span_logprob: float = 0.0  # log P(start) + log P(end) of the span within its passage
    span_margin: float = 0.0  # its score over the best span not overlapping it (at most 15)


def read_passages(reader: AnyReader, question: str, ctxs: Sequence[Mapping[str, Any]], batch_size: int = 32,
                  bf16: bool | None = None) -> list[PassageReading]:
    """Read each passage (``{"title", "text"}``) for ``question``, ``batch_size`` passages per forward pass (one
    for an int8 graph, whose activation scales span the batch: :attr:`OnnxRunner.per_row
    <densepr.backends.onnx.OnnxRunner.per_row>`; so a passage reads the same whichever others are read with it)."""
    batch_size = 1 if getattr(reader.runner, "per_row", False) else batch_size
    out: list[PassageReading] = []
    for first in range(0, len(ctxs), batch_size):
        chunk = ctxs[first : first + batch_size]
        batch = reader.encode([question] * len(chunk), chunk)
        start, end, select = reader.logits(batch, bf16)
        start, end = masked(start, batch.text_mask), masked(end, batch.text_mask)
        starts, ends, scores = best_spans(start, end, reader.max_answer_len)
        logprobs, margins = span_certainty(start, end, starts, ends, reader.max_answer_len)
        for i in range(len(chunk)):
            s, e = int(starts[i]), int(ends[i])
            inside = batch.text_start[i] <= s <= e <= batch.text_end[i]
            left, right = batch.span_chars(i, s, e) if inside else (0, 0)
            text_offset = len(batch.seconds[i]) - len(chunk[i]["text"])  # the text ends "title [SEP] text"
            out.append(PassageReading(first + i, float(select[i]), float(scores[i]), s, e,
                                      batch.seconds[i][left:right], left - text_offset if inside else -1,
                                      float(logprobs[i]), float(margins[i])))
    return out


def choose(readings: Sequence[PassageReading], k: int | None = None) -> PassageReading:
    """The reading of the passage with the highest selection logit among the first ``k`` (ties: earliest)."""
    pool = readings[:k] if k else readings
    if not pool:
        raise DenseprError("no passages to read")
    return max(pool, key=lambda r: (r.selection, -r.index))


def predict(reader: AnyReader, question: str, ctxs: Sequence[Mapping[str, Any]], k: int | None = None, batch_size: int = 32,
            bf16: bool | None = None) -> dict:
    """The answer from the top ``k`` passages: ``{"answer", "passage": ctx, "passage_index", "span_score", "selection"}``."""
    ctxs = list(ctxs[:k] if k else ctxs)
    best = choose(read_passages(reader, question, ctxs, batch_size, bf16))
    return {"answer": best.answer, "passage": ctxs[best.index], "passage_index": best.index,
            "span_score": best.span_score, "selection": best.selection, "answer_start": best.answer_start}


Judge = Callable[[Sequence[PassageReading], PassageReading, Sequence[float]], float]  # readings, chosen, scores -> P(right)


def answers_at_k(readings: Sequence[PassageReading], ctxs: Sequence[Mapping[str, Any]], answers: Sequence[str], ks: Sequence[int],
                 match: str = "string", judge: Judge | None = None) -> list[dict]:
    """The answer chosen from the top k passages for each k in ``ks``, with its passage, exact match and (with a
    ``judge``) confidence."""
    out = []
    for k in ks:
        best = choose(readings, k) if readings else None
        answer = best.answer if best else ""
        ctx = ctxs[best.index] if best else {}
        item = {"k": k, "answer": answer, "passage_id": ctx.get("id"), "title": ctx.get("title"),
                "span_score": best.span_score if best else None, "exact_match": exact_match(answer, answers, match)}
        if judge is not None:
            item["confidence"] = judge(readings[:k], best, [float(c.get("score", 0.0)) for c in ctxs[:k]]) if best else 0.0
        out.append(item)
    return out


def answer_results(reader: AnyReader, results: Sequence[Mapping[str, Any]], ks: Sequence[int] = DEFAULT_KS, batch_size: int = 32,
                   match: str = "string", bf16: bool | None = None, progress: bool = False,
                   judge: Judge | None = None) -> tuple[list[dict], dict]:
    """Read the top ``max(ks)`` ctxs of every DPR result entry once; answer at each k from its top k only.

    Returns per-question predictions and ``{"questions", "exact_match": {k: percent}}``.
    """
    ks = sorted(set(ks))
    if not ks or ks[0] < 1:
        raise DenseprError("the numbers of passages to read (--ks) must be >= 1")
    if not results:
        raise DenseprError("no questions to answer")
    predictions, hits = [], {k: 0 for k in ks}
    for n, entry in enumerate(tqdm(results, disable=not progress, unit="question", desc="read", leave=False)):
        try:
            question, answers, ctxs = entry["question"], list(entry["answers"]), entry["ctxs"][: ks[-1]]
        except (KeyError, TypeError) as exc:
            raise DenseprError(f"result {n}: missing field {exc} (expected DPR result format)") from None
        readings = read_passages(reader, question, ctxs, batch_size, bf16) if ctxs else []
        per_k = answers_at_k(readings, ctxs, answers, ks, match, judge)
        for k, a in zip(ks, per_k):
            hits[k] += a["exact_match"]
        item = {"question": question, "answers": answers, "prediction": per_k[-1]["answer"], "predictions": per_k}
        if "qid" in entry:
            item["qid"] = entry["qid"]
        predictions.append(item)
    summary = {"questions": len(results), "exact_match": {str(k): 100.0 * hits[k] / len(results) for k in ks}}
    return predictions, summary

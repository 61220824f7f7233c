"""Question sets: NQ-open / DrQA JSONL, DPR qas TSV/CSV, SQuAD JSON, BEIR queries."""

from __future__ import annotations

import ast
import csv
import functools
import os
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

from densepr.errors import DenseprError, at_line
from densepr.fileio import iter_jsonl, read_json

MAX_QUESTION_CHARS = 1000  # what ask and the service read of one question


@dataclass(frozen=True)
class Question:
    """A question with its gold answers (strings, or regexes for CuratedTREC) and an optional id."""

    text: str
    answers: list[str] = field(default_factory=list)
    id: str | None = None


def _answers(value: object, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(a, str) for a in value):
        return list(value)
    raise DenseprError(f"{where}: answers must be a string or a list of strings")


def read_jsonl_questions(path: str | os.PathLike) -> list[Question]:
    """``{"question", "answer": [..]}`` (NQ-open, DrQA) or BEIR ``{"_id", "text"}`` per line."""
    out = []
    for lineno, obj in iter_jsonl(path):
        text = obj.get("question", obj.get("text"))
        if not isinstance(text, str) or not text.strip():
            raise at_line(path, lineno, "missing non-empty string field 'question' (or BEIR 'text')")
        raw = obj.get("answer", obj.get("answers", []))
        answers = _answers(raw, f"{path}:{lineno}")
        qid = obj.get("id", obj.get("_id"))
        out.append(Question(text, answers, None if qid is None else str(qid)))
    return out


def read_qas_tsv(path: str | os.PathLike) -> list[Question]:
    """DPR qas files: ``question<TAB>["answer", ...]`` per line (``.csv`` in DPR is tab-separated too)."""
    out = []
    with open(path, encoding="utf-8", newline="") as fh:
        try:
            for lineno, row in enumerate(csv.reader(fh, delimiter="\t"), 1):
                if not row or not row[0].strip():
                    continue
                if len(row) < 2:
                    raise at_line(path, lineno, "expected 'question<TAB>[answers]'")
                try:
                    answers = ast.literal_eval(row[1])
                except (ValueError, SyntaxError):
                    answers = row[1]
                out.append(Question(row[0], _answers(answers, f"{path}:{lineno}"), row[2] if len(row) > 2 else None))
        except UnicodeDecodeError as exc:
            raise DenseprError(f"{path}: not UTF-8 text ({exc.reason})") from None
    return out


def read_squad_questions(path: str | os.PathLike) -> list[Question]:
    """All questions of a SQuAD JSON file, with their answer texts (deduplicated, in order)."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DenseprError(f"{path}: expected SQuAD JSON with a top-level 'data' list")
    out = []
    try:
        for article in data["data"]:
            for par in article["paragraphs"]:
                for qa in par.get("qas", []):
                    answers = list(dict.fromkeys(a["text"] for a in qa["answers"]))
                    out.append(Question(qa["question"], answers, str(qa.get("id")) if "id" in qa else None))
    except (KeyError, TypeError) as exc:
        raise DenseprError(f"{path}: malformed SQuAD entry (missing {exc})") from None
    return out


def read_questions(path: str | os.PathLike) -> list[Question]:
    """Questions from any supported file, chosen by extension."""
    path = Path(path)
    if not path.is_file():
        raise DenseprError(f"{path}: no such questions file")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".txt", ".ndjson"):
        questions = read_jsonl_questions(path)
    elif suffix in (".tsv", ".csv"):
        questions = read_qas_tsv(path)
    elif suffix == ".json":
        questions = read_squad_questions(path)
    else:
        raise DenseprError(f"{path}: unknown questions format (use .jsonl/.txt, .tsv/.csv or SQuAD .json)")
    if not questions:
        raise DenseprError(f"{path}: no questions found")
    return questions


BLANK_CATEGORIES = frozenset({"Zs", "Zl", "Zp", "Cc", "Cf"})  # spaces, line breaks, control and format (zero-width)


def is_blank(text: str) -> bool:
    """True if ``text`` holds only spaces, line breaks, control or format (zero-width) characters of the Basic
    Multilingual Plane."""
    return all(ord(ch) <= 0xFFFF and unicodedata.category(ch) in BLANK_CATEGORIES for ch in text)


@functools.cache
def not_blank_pattern() -> str:
    """A regular expression (``\\uXXXX`` escapes: JSON Schema's and Python's alike) that finds a character
    :func:`is_blank` does not count as blank: the JSON Schema form of the rule."""
    ranges: list[list[int]] = []
    for code in range(0x10000):
        if unicodedata.category(chr(code)) in BLANK_CATEGORIES:
            if ranges and ranges[-1][1] == code - 1:
                ranges[-1][1] = code
            else:
                ranges.append([code, code])
    return "[^" + "".join(f"\\u{a:04x}" if a == b else f"\\u{a:04x}-\\u{b:04x}" for a, b in ranges) + "]"


def check_question(question: str) -> None:
    """A one-line error for a question that is not text (bytes that were not UTF-8, read as lone surrogates), blank, or
    too long to be one."""
    try:
        question.encode("utf-8")
    except UnicodeEncodeError:
        raise DenseprError("the question is not text (bytes that are not UTF-8)") from None
    if is_blank(question):
        raise DenseprError("the question is empty (no letter, digit, mark or symbol)")
    if len(question) > MAX_QUESTION_CHARS:
        raise DenseprError(f"the question has {len(question):,} characters; at most {MAX_QUESTION_CHARS:,} are read")

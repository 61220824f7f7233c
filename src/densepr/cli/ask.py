"""``densepr ask``: one question from the command line, or one a line from stdin with the models kept loaded."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from densepr.cli.options import AskOptions
from densepr.errors import DenseprError
from densepr.hits import ScoredPassage
from densepr.retrieve.spec import SearchSpec

if TYPE_CHECKING:
    from densepr.qa import Answer


def run(a: AskOptions, spec: SearchSpec, quiet: bool) -> None:
    from densepr.qa import Answerer, answer_threshold, place_reader, reader_backend
    from densepr.questions import check_question
    from densepr.quickstart import default_reader, default_spec
    from densepr.read.confidence import ConfidenceModel
    from densepr.read.graph_reader import load_reader
    from densepr.retrieve.searcher import open_searcher

    if a.question is not None:
        check_question(a.question)  # before anything loads
    reader_path = None if a.passages_only else (a.reader or default_reader())
    graph = reader_backend(spec).name != "torch"
    reader = load_reader(reader_path, graph) if reader_path else None  # a bad reader folder fails before retrieval
    model = ConfidenceModel.load(reader_path)
    answer_threshold(model, a.min_confidence, a.always_answer)  # bad options fail before the indexes load
    searcher = open_searcher(default_spec(spec, progress=not quiet))
    answerer = None
    if reader is not None:
        place_reader(reader, spec, searcher.store)
        answerer = Answerer(searcher, reader, a.top_k, model, a.min_confidence, a.always_answer)
    one = a.question is not None
    questions: Iterable[str] = [a.question] if a.question is not None else _questions()
    for question in questions:
        try:
            if answerer is None:
                check_question(question)
                passages = searcher.passages([question], a.top_k)[0]
                print(json.dumps({"question": question, "passages": passages}, ensure_ascii=False) if a.json
                      else _passages_text(passages, note=not a.passages_only))
            else:
                found = answerer.answer(question)
                print(json.dumps(found, ensure_ascii=False) if a.json else _answer_text(found))
        except DenseprError as exc:
            if one:
                raise
            print(f"densepr: error: {exc}", file=sys.stderr)
        sys.stdout.flush()


def _questions() -> Iterator[str]:
    """Questions from stdin, one a line (with a prompt on a terminal); blank lines are skipped."""
    interactive = sys.stdin.isatty()
    while True:
        try:
            line = input("question> ") if interactive else sys.stdin.readline()
        except EOFError:
            return
        if not interactive and not line:
            return
        if line.strip():
            yield line.strip()


def _answer_text(found: Answer) -> str:
    passage = found["passage"]
    if not found["answer"]:
        return "No answer span found in the top passages.\n" + _passages_text(found["passages"], note=False)
    sure = "" if found["confidence"] is None else f"confidence {found['confidence']:.2f}, "
    if found["abstained"]:
        return (f"No confident answer ({sure.rstrip(', ')}; best guess: {found['answer']!r} from {passage['title']}, "
                f"passage {passage['id']}). The passages read:\n" + _passages_text(found["passages"], note=False))
    text, start = passage["text"], found["answer_start"]
    marked = text[:start] + "**" + found["answer"] + "**" + text[start + len(found["answer"]):] if start >= 0 else text
    lines = [f"Answer: {found['answer']}   ({sure}span score {found['span_score']:.2f})",
             f"  from: {passage['title']} (passage {passage['id']}, rank {found['passage_rank']} of {len(found['passages'])})",
             textwrap.indent(textwrap.fill(marked, 100), "    ")]
    others = [f"  {rank}. {p['title']} (passage {p['id']}, score {p['score']:.3f})"
              for rank, p in enumerate(found["passages"], 1) if rank != found["passage_rank"]]
    return "\n".join(lines + (["  other passages read:", *others] if others else [])) + "\n"


def _passages_text(passages: list[ScoredPassage], note: bool) -> str:
    lines = []
    for rank, hit in enumerate(passages, 1):
        lines.append(f"{rank}. [{hit['score']:.3f}] {hit['title']} (passage {hit['id']})")
        lines.append(textwrap.indent(textwrap.fill(hit["text"], 100), "   "))
    if note:
        lines.append("(no reader: these are the retrieved passages; pass --reader DIR, trained with 'densepr train-reader', "
                     "to extract an answer)")
    return "\n".join(lines)

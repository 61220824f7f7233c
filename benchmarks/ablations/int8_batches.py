"""Why an int8 encoder graph runs one text at a time: ONNX Runtime's dynamic quantisation scales each layer's
activations by their range over the whole batch, so a question's vector depended on the questions batched with it.

    python -m benchmarks.ablations.int8_batches [--questions 900] [--rounds 5] [--page]

Over the default index (the default hybrid; the int8 question graph ``auto`` runs on CPUs without bf16 units), for
NQ-open dev's odd lines: how many questions get another top 5 batched (as the tower ran before: length-sorted batches
up to the token budget) than encoded alone (as ``ask`` encodes one), the hybrid's top-5 and top-20 answer recall
each way and with the fp32 graph, and the milliseconds per question each way (medians of ``--rounds`` interleaved
rounds). The reader's int8 graph (``--precision int8``) likewise: over the first ``--reader-questions`` questions'
top 5, how many answers differ when the 5 passages are read in one batch rather than one at a time, and the
milliseconds per question each way.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.ablations._report import ablation_parser, publish
from benchmarks.harness import DATA, cpu_line, table


class Batched:
    """An int8 runner as the towers ran it before: whole batches (``per_row`` off)."""

    per_row = False

    def __init__(self, runner: Any):
        self.runner = runner

    def __call__(self, feeds: dict) -> list:
        return self.runner(feeds)


def interleaved(runners: dict[str, Any], attach: Callable[[Any], None], work: Callable[[], Any], rounds: int,
                items: int) -> tuple[dict[str, Any], dict[str, float]]:
    """Run ``work`` with each runner attached in turn, ``rounds`` interleaved rounds after one warm-up round: each
    runner's last output, and its median milliseconds per item (``items`` a run)."""
    times: dict[str, list[float]] = {name: [] for name in runners}
    outputs: dict[str, Any] = {}
    for _ in range(rounds + 1):
        for name, runner in runners.items():
            attach(runner)
            start = time.perf_counter()
            outputs[name] = work()
            times[name].append(time.perf_counter() - start)
    return outputs, {name: 1000 * statistics.median(t[1:]) / items for name, t in times.items()}


def reader_rows(questions: list[str], passages: list[list[dict]], rounds: int) -> dict[str, Any]:
    """The default reader's int8 graph reading each question's passages in one batch and one at a time: answers that
    differ, and milliseconds per question (medians of ``rounds`` interleaved rounds after one warm-up)."""
    from densepr.backends.choice import Backend
    from densepr.quickstart import default_reader
    from densepr.read.graph_reader import load_reader
    from densepr.read.inference import choose, read_passages

    reader = load_reader(default_reader(), graph=True)
    int8 = reader._runner(Backend("onnx", "int8"))  # the graph itself, whatever the gate says on this sample
    answers, ms = interleaved({"batched": Batched(int8), "one at a time": int8},
                              lambda runner: setattr(reader, "runner", runner),
                              lambda: [choose(read_passages(reader, q, ps)).answer for q, ps in zip(questions, passages)],
                              rounds, len(questions))
    return {"questions": len(questions), "answers_differ": sum(a != b for a, b in zip(*answers.values())),
            "ms_per_question": ms}


def main() -> None:
    p = ablation_parser(__doc__, "int8-batches")
    p.add_argument("--questions", type=int, default=900)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--reader-questions", type=int, default=120)
    a = p.parse_args()
    logging.disable(logging.WARNING)
    from densepr.backends.choice import Backend
    from densepr.evaluate.answers import has_answer
    from densepr.questions import read_questions
    from densepr.quickstart import ensure_default_index
    from densepr.retrieve.searcher import open_searcher

    searcher = open_searcher(ensure_default_index(progress=False))
    tower = searcher.dense.model.question_encoder
    int8 = tower.runner
    if not int8.per_row:
        raise SystemExit(f"the question encoder runs {tower.backend()}, not int8: nothing to compare on this CPU")
    questions = read_questions(DATA / "nq-open" / "NQ-open.dev.jsonl")[1::2][: a.questions]
    texts = [q.text for q in questions]
    vectors, ms = interleaved({"batched": Batched(int8), "one at a time": int8},
                              lambda runner: setattr(tower, "runner", runner), lambda: tower.embed(texts), a.rounds,
                              len(texts))
    tower.runner = tower._runner(Backend("onnx", "fp32"))
    vectors["fp32 graph"] = tower.embed(texts)
    tower.runner = int8
    alone = np.concatenate([tower.embed([t]) for t in texts[:100]])
    assert np.array_equal(alone, vectors["one at a time"][:100]), "one at a time must equal alone"

    found = {name: searcher.passages(texts, 20, v) for name, v in vectors.items()}
    differ = sum([p["id"] for p in x[:5]] != [p["id"] for p in y[:5]] for x, y in zip(found["batched"], found["one at a time"]))
    recall = {name: {k: 100 * float(np.mean([any(has_answer(q.answers, p["text"]) for p in ps[:k]) for ps, q in zip(hits, questions)]))
                     for k in (5, 20)} for name, hits in found.items()}
    n = a.reader_questions
    reader = reader_rows(texts[:n], [ps[:5] for ps in found["one at a time"][:n]], a.rounds)
    results = {"cpu": cpu_line(), "questions": len(texts), "top5_differ": differ, "ms_per_question": ms, "recall": recall,
               "reader": reader}
    read_ms = reader["ms_per_question"]
    rows = [[name, f"{ms[name]:.2f}" if name in ms else "", f"{recall[name][5]:.1f}", f"{recall[name][20]:.1f}"] for name in found]
    text = "\n".join([
        f"## int8 question vectors one text at a time, {date.today()}", "",
        f"{cpu_line()}. Command: `python -m benchmarks.ablations.int8_batches --questions {a.questions} --rounds {a.rounds} "
        f"--reader-questions {a.reader_questions}`. "
        f"{len(texts)} NQ-open dev questions (odd lines) over the default index, hybrid retrieval.", "",
        f"Batched, {differ} of {len(texts)} questions got another top 5 than one at a time (which is what `ask` gets: "
        f"a question alone). Time per question: {ms['one at a time'] / ms['batched']:.2f}x.", "",
        *table(["question vectors", "ms / question (median)", "top-5 recall", "top-20 recall"], rows), "",
        (f"The reader's int8 graph, reading the top 5 of the first {reader['questions']} questions: "
         f"{reader['answers_differ']} answers differed between one batch and one passage at a time; "
         f"{read_ms['batched']:.1f} against {read_ms['one at a time']:.1f} ms per question "
         f"({read_ms['one at a time'] / read_ms['batched']:.3f}x). It now reads one passage at a time.")])
    publish(Path(a.out), results, text, "int8-batches" if a.page else None)


if __name__ == "__main__":
    main()

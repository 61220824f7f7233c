"""What one reader training step costs on this CPU, and so how long the shipped reader's recipe would take here.

    python -m benchmarks.ablations.reader_train_speed [--questions 8] [--steps 4] [--page]

The shipped reader (torch, fp32) takes ``--questions`` NQ-open dev questions, each with its top ``m`` passages from
the default index, tokenised at a maximum length, as one batch: forward, a loss over the start, end and selection logits,
backward and an Adam step. These are the costs of a ``ReaderTask`` step; span sampling is left out, since it costs
next to nothing. Medians of ``--steps`` steps after one warm-up. For each (m, length): seconds a step, questions a second,
and the hours the shipped reader's second stage would take at that speed (1,000 steps of 16 questions, m = 8,
256 tokens: 188 s on an H200, by its card).
"""

from __future__ import annotations

import logging
import statistics
import time
from datetime import date
from pathlib import Path

from benchmarks.ablations._report import ablation_parser, publish
from benchmarks.harness import DATA, cpu_line, table

SETTINGS = ((8, 256), (8, 192), (4, 256))  # (passages per question, maximum tokens)
STAGE2_QUESTIONS = 16_000  # 1,000 steps of 16 questions


def main() -> None:
    p = ablation_parser(__doc__, "reader-train-speed")
    p.add_argument("--questions", type=int, default=8)
    p.add_argument("--steps", type=int, default=4)
    a = p.parse_args()
    logging.disable(logging.WARNING)
    import torch

    from densepr.questions import read_questions
    from densepr.quickstart import default_reader, ensure_default_index
    from densepr.read.model import Reader
    from densepr.retrieve.searcher import open_searcher

    questions = [q.text for q in read_questions(DATA / "nq-open" / "NQ-open.dev.jsonl")[: a.questions]]
    found = open_searcher(ensure_default_index(progress=False)).passages(questions, max(m for m, _ in SETTINGS))
    reader = Reader.load(default_reader())
    reader.train()
    optimizer = torch.optim.Adam(reader.parameters(), lr=1e-5)
    results: dict = {"date": str(date.today()), "cpu": cpu_line(), "threads": torch.get_num_threads(),
                     "questions_per_step": a.questions, "settings": []}
    rows = []
    for m, length in SETTINGS:
        reader.max_length = length
        batch = reader.encode([q for q in questions for _ in range(m)], [c for cs in found for c in cs[:m]])
        seconds = []
        for _ in range(a.steps):
            start = time.perf_counter()
            begin, end, select = reader(**batch.tensors)
            loss = begin.logsumexp(-1).mean() + end.logsumexp(-1).mean() + select.view(a.questions, m).logsumexp(-1).mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            seconds.append(time.perf_counter() - start)
        step = statistics.median(seconds[1:])
        tokens = int(batch.tensors["attention_mask"].shape[1])
        setting = {"passages_per_question": m, "max_length": length, "padded_length": tokens, "seconds_per_step": step,
                   "questions_per_second": a.questions / step, "stage2_hours": STAGE2_QUESTIONS / (a.questions / step) / 3600}
        results["settings"].append(setting)
        rows.append([m, length, tokens, f"{step:.2f}", f"{setting['questions_per_second']:.2f}",
                     f"{setting['stage2_hours']:.1f}"])
    text = "\n".join([
        f"## Reader training speed on a CPU, {results['date']}", "",
        (f"{results['cpu']}, {results['threads']} torch threads, fp32. Command: `python -m "
         f"benchmarks.ablations.reader_train_speed --questions {a.questions} --steps {a.steps}`. The shipped reader, "
         f"{a.questions} NQ-open questions a step with their top m passages (default index); medians of "
         f"{a.steps - 1} steps after a warm-up."), "",
        *table(["m", "max tokens", "padded to", "s / step", "questions / s", "hours for stage 2 (16,000 questions)"],
               rows), "",
        ("Stage 2 of the shipped reader's recipe (m = 8, 256 tokens) took 188 s on an H200; the first row is what it "
         "would take here.")])
    publish(Path(a.out), results, text, "reader-train-speed" if a.page else None)


if __name__ == "__main__":
    main()

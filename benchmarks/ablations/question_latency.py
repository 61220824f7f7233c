"""End-to-end single-question latency: encode one question and search the top 100 on the mini-Wikipedia index.

    python -m benchmarks.ablations.question_latency [--index benchmarks/out/retrieval/flat] [--questions 200] [--runs 3]

One question at a time through :meth:`densepr.DenseRetriever.search` (the library call ``densepr retrieve``
and ``serve`` use), on NQ-open dev questions; also the two parts alone (question encoding, FAISS search of
one vector). Each run reports p50/p95 over the questions; the summary is the median over runs.
Writes ``results.json`` and ``report.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import densepr
from densepr.fileio import write_json

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
TARGET_MS = 15.0


def percentiles(times_ms: list[float]) -> dict:
    return {"p50_ms": float(np.percentile(times_ms, 50)), "p95_ms": float(np.percentile(times_ms, 95))}


def one_run(retriever: densepr.DenseRetriever, questions: list[str], k: int) -> dict:
    """p50/p95 of end to end, encode only and search only, one question at a time."""
    parts: dict[str, list[float]] = {"end_to_end": [], "encode": [], "search": []}
    for q in questions:
        t0 = time.perf_counter()
        retriever.search([q], k=k)
        t1 = time.perf_counter()
        vector = retriever.model.encode_questions([q])
        t2 = time.perf_counter()
        retriever.index.search(vector, k)
        t3 = time.perf_counter()
        for name, seconds in (("end_to_end", t1 - t0), ("encode", t2 - t1), ("search", t3 - t2)):
            parts[name].append(1000 * seconds)
    return {name: percentiles(times) for name, times in parts.items()}


def measure(index: str | Path, n_questions: int = 200, runs: int = 3, k: int = 100) -> dict:
    """Median over ``runs`` of each run's p50/p95 (end to end, encode, search)."""
    retriever = densepr.DenseRetriever.load(index)
    questions = [q.text for q in densepr.read_questions(DATA / "nq-open/NQ-open.dev.jsonl")][:n_questions]
    retriever.search(questions[:8], k=k)  # warm-up
    per_run = [one_run(retriever, questions, k) for _ in range(runs)]
    summary = {name: {stat: statistics.median(r[name][stat] for r in per_run) for stat in ("p50_ms", "p95_ms")}
               for name in per_run[0]}
    return {"index": str(index), "index_type": retriever.index.meta["type"], "passages": len(retriever.ids),
            "questions": len(questions), "runs": runs, "k": k, "threads": torch.get_num_threads(),
            "median_of_runs": summary, "per_run": per_run, "target_ms": TARGET_MS,
            "meets_target": summary["end_to_end"]["p50_ms"] < TARGET_MS}


def report_lines(r: dict) -> list[str]:
    lines = [f"End-to-end single-question latency on the mini-Wikipedia {r['index_type']} index ({r['passages']:,} passages, "
             f"top {r['k']}, {r['questions']} NQ-open questions one at a time, {r['threads']} threads; median of {r['runs']} runs):", "",
             "| part | p50 ms | p95 ms |", "|---|---|---|"]
    lines += [f"| {name} | {v['p50_ms']:.2f} | {v['p95_ms']:.2f} |" for name, v in r["median_of_runs"].items()]
    verdict = "meets" if r["meets_target"] else "misses"
    lines += ["", f"Target: median end to end under {r['target_ms']:g} ms: {verdict} it "
              f"({r['median_of_runs']['end_to_end']['p50_ms']:.2f} ms)."]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", default="benchmarks/out/retrieval/flat")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", default="benchmarks/out/question_latency")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = measure(args.index, args.questions, args.runs)
    write_json(out / "results.json", result)
    text = "\n".join(["# Single-question latency", "", *report_lines(result)]) + "\n"
    (out / "report.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""The backends suite's ``ask`` part: ``densepr ask`` on the lean path (ONNX graphs, no torch) against the torch path.

Alternating processes on the default corpus: warm single-shot ``ask`` (wall and peak RSS), the import split
(``-X importtime``), the first ``ask`` on cold caches (the corpus cut, BM25 built, the graphs written and quantised),
60 NQ-open dev questions from stdin (wall, and how many answers each path gives alike). ``--lean-python`` adds a
virtual environment without torch (``pip install densepr``) as a third column.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from benchmarks.harness import NQ, cpu_line, table

QUESTION = "Who developed the theory of relativity?"
DEFAULT = Path(__file__).resolve().parents[1] / "src" / "densepr" / "default"


def run(python: str, args: list[str], stdin: str | None = None, env: dict | None = None) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) and stdout of ``python -m densepr -q ARGS``."""
    start = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-f", "%M", python, "-m", "densepr", "-q", *args], input=stdin,
                         capture_output=True, text=True, env=env or os.environ.copy(), cwd="/tmp")
    wall = time.perf_counter() - start
    if out.returncode:
        raise SystemExit(f"{args}: {out.stderr[-800:]}")
    return wall, int(out.stderr.strip().splitlines()[-1]) / 1024, out.stdout


def imports(python: str, args: list[str]) -> dict[str, float]:
    """Cumulative import seconds of the heavy modules in one ``ask``."""
    out = subprocess.run([python, "-X", "importtime", "-m", "densepr", "-q", *args], capture_output=True, text=True, cwd="/tmp")
    seen: dict[str, float] = {}
    for line in out.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = (part.strip() for part in line.split("|"))
            if name in ("torch", "transformers", "onnxruntime", "faiss", "bm25s", "scipy.sparse", "densepr.cli.main",
                        "densepr.qa", "densepr.read.graph_reader", "densepr.read.model"):
                seen[name] = seen.get(name, 0.0) + int(cumulative) / 1e6
    return seen


def cold_first_ask(python: str, extra: list[str]) -> float:
    """Seconds of a first ``ask``: an empty user cache, no graphs beside the shipped models."""
    for model in ("encoder", "reader"):
        shutil.rmtree(DEFAULT / model / ".densepr-onnx", ignore_errors=True)
    with tempfile.TemporaryDirectory() as cache:
        return run(python, ["ask", QUESTION, *extra], env=dict(os.environ, XDG_CACHE_HOME=cache))[0]


def measure(python: str, runs: int, n_questions: int, lean_python: str | None, cold: bool = True) -> tuple[dict, str]:
    """The lean and torch paths (and ``lean_python``'s venv) side by side: results and a report section."""
    paths = {"lean (auto: ONNX graphs)": (python, []), "torch (--backend torch)": (python, ["--backend", "torch"])}
    if lean_python:
        paths["lean venv (no torch installed)"] = (lean_python, [])
    results: dict = {"paths": {}}
    first = {name: cold_first_ask(py, extra) if cold else float("nan") for name, (py, extra) in paths.items()}
    walls: dict[str, list[float]] = {name: [] for name in paths}
    rss: dict[str, list[float]] = {name: [] for name in paths}
    for _ in range(runs):  # alternating, after one warm-up each
        for name, (py, extra) in paths.items():
            wall, peak, _ = run(py, ["ask", QUESTION, *extra])
            walls[name].append(wall)
            rss[name].append(peak)
    questions = [json.loads(line)["question"] for line in NQ.read_text().splitlines()[:n_questions]]
    answers = {}
    for name, (py, extra) in paths.items():
        wall, _, out = run(py, ["ask", "--json", *extra], stdin="\n".join(questions) + "\n")
        answers[name] = [json.loads(line)["answer"] for line in out.splitlines()]
        results["paths"][name] = {"warm_ask_s": walls[name], "warm_ask_median_s": statistics.median(walls[name]),
                                  "peak_rss_mb": statistics.median(rss[name]), "first_ask_cold_s": first[name],
                                  "stdin_questions": len(questions), "stdin_s": wall, "imports_s": imports(py, ["ask", QUESTION, *extra])}
    reference = answers["torch (--backend torch)"]
    for name in paths:
        results["paths"][name]["answers_as_torch"] = sum(x == y for x, y in zip(answers[name], reference))
    base = results["paths"]["torch (--backend torch)"]["warm_ask_median_s"]
    rows = [[name, f"{r['warm_ask_median_s']:.2f} s ({base / r['warm_ask_median_s']:.2f}x)", f"{r['peak_rss_mb']:.0f} MB",
             f"{r['first_ask_cold_s']:.1f} s", f"{r['stdin_s']:.1f} s", f"{r['answers_as_torch']}/{len(questions)}",
             ", ".join(f"{k} {v:.2f}" for k, v in sorted(r["imports_s"].items(), key=lambda kv: -kv[1])[:4])]
            for name, r in results["paths"].items()]
    text = "\n".join(["## `densepr ask` without torch", "",
                      f"{cpu_line()}. Warm: median of {runs} alternating runs; first: empty caches; stdin: "
                      f"{len(questions)} NQ-open dev questions.", "",
                      *table(["path", "warm ask (vs torch)", "peak RSS", "first ask", "stdin", "answers as torch",
                              "imports (cumulative s)"], rows)])
    return results, text

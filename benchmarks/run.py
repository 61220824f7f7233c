"""The whole speed and scale suite in one command: JSON, a Markdown report and PNG plots.

    python -m benchmarks.run [--sections peers,latency,bf16,index,scale] [--runs 3] [--quick]

Runs each benchmark in its own process (``benchmarks.peers``, ``question_latency``, ``bf16_agreement``,
``index_scale``, ``scale``), each writing ``results.json`` under ``--out/SECTION``, then writes
``--out/results.json`` (all of them plus the machine) and ``--out/report.md`` with plots beside it
(see :mod:`benchmarks.report`). Makes the mini-Wikipedia corpus and indexes (``benchmarks.retrieval_mini_wiki``)
and the training file (``build-train`` on SQuAD train articles) first if they are missing.
Peers (sentence-transformers, bm25s, rank_bm25, pyserini) come from ``pip install -e ".[bench]"``.
``--quick`` shrinks every section (100k vectors at most, fewer passages and questions) to check the suite runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

SECTIONS = ("peers", "latency", "bf16", "index", "scale")


def section_commands(out: Path, corpus: Path, train_file: Path, runs: int, quick: bool,
                     encode_passages: int = 0) -> dict[str, list[str]]:
    """The command line of each section (``python -m benchmarks.NAME ...``)."""
    size = ["--sizes", "100000"] if quick else ["--sizes", "100000,1000000"]
    return {
        "peers": ["peers", "--corpus", str(corpus), "--train-file", str(train_file), "--runs", str(runs),
                  "--passages", "300" if quick else "1000", "--train-steps", "5" if quick else "10"],
        "latency": ["question_latency", "--index", str(corpus / "flat"), "--runs", str(runs),
                    "--questions", "50" if quick else "200"],
        "bf16": ["bf16_agreement", "--passages", str(corpus / "psgs_w100.tsv"), "--n", "300" if quick else "2000"],
        "index": ["index_scale", "--embeddings", str(corpus / "emb"), "--runs", str(runs), *size,
                  "--queries", "200" if quick else "1000"],
        "scale": ["scale", "--corpus", str(corpus), "--total", "100000" if quick else "1000000",
                  "--queries", "200" if quick else "1000", "--encode-passages", "1000" if quick else str(encode_passages)],
    }


def ensure_inputs(corpus: Path, train_file: Path) -> None:
    """The corpus, BM25/flat indexes and the training file the sections read (made once, then reused)."""
    if not (corpus / "flat" / "meta.json").is_file():
        subprocess.run([sys.executable, "-m", "benchmarks.retrieval_mini_wiki", "--out", str(corpus)], check=True)
    if not train_file.is_file():
        from benchmarks.train_mini_wiki import DATA, split_squad
        from densepr import training

        train_file.parent.mkdir(parents=True, exist_ok=True)
        squad_train, _, _ = split_squad(DATA / "squad/squad-dev-v1.1.open.json", train_file.parent)
        training.build_train(questions=squad_train, passages=corpus / "psgs_w100.tsv", bm25=corpus / "bm25", out=train_file)


def machine() -> dict:
    import torch

    def version(name: str) -> str | None:
        try:
            from importlib.metadata import version as v

            return v(name)
        except Exception:  # noqa: BLE001 - a peer that is not installed
            return None

    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next((line.split(":", 1)[1].strip() for line in flags.splitlines() if line.startswith("model name")), platform.machine())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {"cpu": model, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "amx_bf16": "amx_bf16" in flags, "avx512_bf16": "avx512_bf16" in flags, "python": platform.python_version(), "commit": commit,
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "versions": {n: version(n) for n in ("densepr", "torch", "transformers", "faiss-cpu", "sentence-transformers",
                                                 "bm25s", "rank-bm25", "pyserini")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated, of {', '.join(SECTIONS)}")
    parser.add_argument("--runs", type=int, default=3, help="repetitions behind every median")
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the suite, not the targets")
    parser.add_argument("--corpus", default="benchmarks/out/retrieval", help="benchmarks.retrieval_mini_wiki's output")
    parser.add_argument("--train-file", default="benchmarks/out/train/train.json")
    parser.add_argument("--out", default="benchmarks/out/report")
    parser.add_argument("--encode-passages", type=int, default=0,
                        help="scale section: passages encoded one- and two-process (0: the whole corpus)")
    args = parser.parse_args()
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    out, corpus, train_file = Path(args.out), Path(args.corpus), Path(args.train_file)
    out.mkdir(parents=True, exist_ok=True)
    ensure_inputs(corpus, train_file)
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="true")
    commands = section_commands(out, corpus, train_file, args.runs, args.quick, args.encode_passages)
    previous = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}
    results = {"machine": machine(), "quick": args.quick, "runs": args.runs, "sections": previous.get("sections", {}),
               "commands": previous.get("commands", {}), "seconds": previous.get("seconds", {})}
    from densepr.hardware import cpu_supports_bf16

    if "bf16" in sections and not cpu_supports_bf16():
        # bf16 autocast without bf16 units is emulated (~6x slower than fp32, seen on an AVX2-only EPYC) and
        # densepr does not use it there: there is nothing to compare.
        sections.remove("bf16")
        results["sections"].pop("bf16", None)
        results["skipped"] = {"bf16": "this CPU has no bf16 units (no AVX512-BF16 or AMX): densepr encodes in fp32 here"}
    for name in sections:
        argv = [*commands[name], "--out", str(out / name)]
        print(f"== {name}: python -m benchmarks.{' '.join(argv)}", flush=True)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", f"benchmarks.{argv[0]}", *argv[1:]], check=True, env=env)
        results["seconds"][name] = round(time.perf_counter() - start)
        results["commands"][name] = f"python -m benchmarks.{' '.join(argv)}"
        results["sections"][name] = json.loads((out / name / "results.json").read_text())
    from benchmarks.report import write_report
    from densepr.fileio import write_json

    write_json(out / "results.json", results)
    write_report(results, out)
    print((out / "report.md").read_text())


if __name__ == "__main__":
    main()

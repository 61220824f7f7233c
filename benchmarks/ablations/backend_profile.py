"""Where passage-encoding time goes, per backend: operator shares from torch's profiler and ONNX Runtime's.

    python -m benchmarks.ablations.backend_profile [--corpus benchmarks/out/retrieval] [--n 300]

Encodes ``--n`` mini-Wikipedia passages once per backend (torch fp32, torch bf16, onnx fp32, onnx int8) under a profiler
and prints the operators that take the most time, as shares of the total. Writes ``results.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch

import densepr
from densepr.backends.choice import Backend
from densepr.dense.backend import attach_encoder
from densepr.fileio import write_json


def torch_split(tower, titles, texts) -> dict[str, float]:
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        tower.embed(titles, texts, warn_truncation=False)
    times = Counter({e.key: e.self_cpu_time_total for e in prof.key_averages()})
    total = sum(times.values())
    return {k: v / total for k, v in times.most_common(8)}


def onnx_split(tower, titles, texts, prefix: Path) -> dict[str, float]:
    import onnxruntime as ort

    runner = tower.runner
    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(prefix)
    options.intra_op_num_threads = torch.get_num_threads()
    runner.session = ort.InferenceSession(str(runner.path), options, providers=["CPUExecutionProvider"])
    tower.embed(titles, texts, warn_truncation=False)
    trace = json.loads(Path(runner.session.end_profiling()).read_text())
    times: Counter = Counter()
    for event in trace:
        if event.get("cat") == "Node":
            times[event["args"].get("op_name", "?")] += event["dur"]
    total = sum(times.values())
    return {k: v / total for k, v in times.most_common(8)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="benchmarks/out/retrieval")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--out", default="benchmarks/out/backend_profile")
    args = parser.parse_args()
    store = densepr.PassageStore(Path(args.corpus) / "psgs_w100.tsv")
    rows = sorted(np.random.default_rng(1).choice(len(store), size=min(args.n, len(store)), replace=False))
    passages = [store[int(r)] for r in rows]
    titles, texts = [p.title for p in passages], [p.text for p in passages]
    report = {}
    Path(args.out).mkdir(parents=True, exist_ok=True)
    for name, precision in (("torch", "fp32"), ("torch", "bf16"), ("onnx", "fp32"), ("onnx", "int8")):
        tower = densepr.Encoder.from_pretrained("default")
        attach_encoder(tower, Backend(name, precision), passages[:64])
        tower.embed(titles[:32], texts[:32], warn_truncation=False)
        split = torch_split(tower, titles, texts) if name == "torch" else onnx_split(tower, titles, texts, Path(args.out) / f"ort-{precision}")
        report[f"{name}-{precision}"] = split
        print(f"{name} {precision}: " + ", ".join(f"{k} {100 * v:.0f}%" for k, v in split.items()), flush=True)
    write_json(Path(args.out) / "results.json", report)


if __name__ == "__main__":
    main()

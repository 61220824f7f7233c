"""bf16 autocast vs fp32 on the default model: vector agreement, speed, and top-20 retrieval change.

    python -m benchmarks.bf16_agreement [--passages benchmarks/out/retrieval/psgs_w100.tsv] [--n 2000]

Encodes the same passages and questions both ways in one process and reports cosine agreement,
the speed ratio (median of 3 runs each), and how often the top-20 passages of SQuAD questions change.
Writes ``bf16.json`` and ``bf16.md`` beside the passages file.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

import densepr
from densepr.fileio import write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", default="benchmarks/out/retrieval/psgs_w100.tsv")
    parser.add_argument("--questions", default=str(Path(__file__).resolve().parents[2] / "shared/data/squad/squad-dev-v1.1.open.json"))
    parser.add_argument("--n", type=int, default=2000, help="passages to encode")
    args = parser.parse_args()
    store = densepr.PassageStore(args.passages)
    rng = np.random.default_rng(0)
    rows = sorted(rng.choice(len(store), size=min(args.n, len(store)), replace=False))
    passages = [store[int(r)] for r in rows]
    questions = [q.text for q in densepr.read_questions(args.questions)[:500]]
    model = densepr.BiEncoder.load("default")

    times: dict[bool, list[float]] = {False: [], True: []}
    vecs = {}
    for _ in range(3):
        for bf16 in (False, True):
            start = time.perf_counter()
            vecs[bf16] = model.encode_passages(passages, bf16=bf16)
            times[bf16].append(time.perf_counter() - start)
    cos = (vecs[False] * vecs[True]).sum(1) / np.linalg.norm(vecs[False], axis=1) / np.linalg.norm(vecs[True], axis=1)
    q32, q16 = model.encode_questions(questions, bf16=False), model.encode_questions(questions, bf16=True)
    top32 = np.argsort(-(q32 @ vecs[False].T), axis=1)[:, :20]
    top16 = np.argsort(-(q16 @ vecs[True].T), axis=1)[:, :20]
    overlap = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(top32, top16)])
    report = {
        "passages": len(passages), "questions": len(questions),
        "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
        "fp32_median_s": statistics.median(times[False]), "bf16_median_s": statistics.median(times[True]),
        "speedup_bf16_vs_fp32": statistics.median(times[False]) / statistics.median(times[True]),
        "top20_overlap_mean": float(overlap),
    }
    out = Path(args.passages).parent
    write_json(out / "bf16.json", report)
    text = "\n".join(f"- {k}: {v:.4f}" if isinstance(v, float) else f"- {k}: {v}" for k, v in report.items())
    (out / "bf16.md").write_text("# bf16 autocast vs fp32 (default model)\n\n" + text + "\n")
    print(text)


if __name__ == "__main__":
    main()

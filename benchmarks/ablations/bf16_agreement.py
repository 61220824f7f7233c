"""bf16 autocast vs fp32 on the default model: vector agreement, speed, and top-k accuracy change.

    python -m benchmarks.ablations.bf16_agreement [--passages benchmarks/out/retrieval/psgs_w100.tsv] [--n 2000]

Encodes the same passages and questions both ways in one process and reports cosine agreement,
the speed ratio (median of 3 runs each), and how often the top-20 passages of SQuAD questions change.
Then top-20/100 accuracy on the whole corpus (exact search) with bf16 vs fp32 passage and question vectors,
for SQuAD dev, NQ-open dev and CuratedTREC (the fp32 embeddings are made once, under ``emb-fp32/``; the
bf16 ones are ``benchmarks.retrieval``'s ``emb/``).
Writes ``results.json`` and ``report.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

import densepr
from benchmarks.retrieval import QUESTION_SETS
from densepr import pipeline
from densepr.fileio import write_json
from densepr.index.faiss_index import DenseIndex

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def accuracy_change(model: densepr.BiEncoder, corpus: Path) -> dict:
    """Top-20/100 accuracy (exact search over the whole corpus) with bf16 vs fp32 vectors, per question set."""
    store = densepr.PassageStore(corpus / "psgs_w100.tsv")
    if not (corpus / "emb-fp32" / "shard-000-of-001.npy").is_file():
        pipeline.encode(passages=corpus / "psgs_w100.tsv", out=corpus / "emb-fp32", model=model.name, bf16=False, progress=False)
    out = {}
    for name, (rel, match) in QUESTION_SETS.items():
        questions = densepr.read_questions(DATA / rel)
        texts = [q.text for q in questions]
        row = {}
        for label, emb, bf16 in (("fp32", "emb-fp32", False), ("bf16", "emb", True)):
            vectors, ids, _ = densepr.load_embeddings(corpus / emb)
            _, rows = DenseIndex.build(np.asarray(vectors), ids).search(model.encode_questions(texts, bf16=bf16), 100)
            hits = [[densepr.Hit(int(r), 0.0) for r in rr] for rr in rows]
            acc = densepr.top_k_accuracy(densepr.build_results(questions, hits, store, ids, match), ks=(20, 100))
            row[label] = {str(k): v for k, v in acc.items()}
        row["change_top20"] = row["bf16"]["20"] - row["fp32"]["20"]
        out[name] = row
        print(name, row, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passages", default="benchmarks/out/retrieval/psgs_w100.tsv")
    parser.add_argument("--questions", default=str(Path(__file__).resolve().parents[2] / "shared/data/squad/squad-dev-v1.1.open.json"))
    parser.add_argument("--n", type=int, default=2000, help="passages to encode")
    parser.add_argument("--out", default="benchmarks/out/bf16")
    parser.add_argument("--no-accuracy", action="store_true", help="skip the whole-corpus top-k accuracy part")
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
    if not args.no_accuracy:
        report["top_k_accuracy"] = accuracy_change(model, Path(args.passages).parent)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", report)
    text = "\n".join(f"- {k}: {v:.4f}" if isinstance(v, float) else f"- {k}: {v}" for k, v in report.items() if k != "top_k_accuracy")
    if "top_k_accuracy" in report:
        text += "\n\n| questions | top-20 fp32 | top-20 bf16 | change (points) | top-100 fp32 | top-100 bf16 |\n|---|---|---|---|---|---|\n"
        text += "\n".join(f"| {name} | {r['fp32']['20']:.2f} | {r['bf16']['20']:.2f} | {r['change_top20']:+.2f} | "
                          f"{r['fp32']['100']:.2f} | {r['bf16']['100']:.2f} |" for name, r in report["top_k_accuracy"].items())
    (out / "report.md").write_text("# bf16 autocast vs fp32 (default model)\n\n" + text + "\n")
    print(text)


if __name__ == "__main__":
    main()

"""The index planner at RAM budgets: its choice, predicted and measured bytes, build time, peak RSS and recall card.

    python -m benchmarks.planner_budget [--corpus benchmarks/out/retrieval] [--size 1000000] [--budgets 2GB,4GB,8GB]

Two parts:

- the arithmetic for DPR's Wikipedia (21,015,324 passages x 768 dims): the planner's choice and predicted bytes at each
  budget (nothing built: a flat index alone is 64.5 GB);
- measured: ``--size`` vectors of the default model (384 dims; ``benchmarks.index_scale``'s synthesis from the real
  mini-Wikipedia vectors) planned at the same budgets scaled to keep the bytes a vector's code may take per dimension
  (``(budget/21M − 24) × 384/768 + 24`` bytes a vector, 24 being its id and list entry), so each budget meets the same
  index and compression (dimensions per byte) it meets at 21M; built, its recall card measured (recall@10/100 against
  exact search, queries/s at each probe setting), its peak RSS read from ``/proc/self/status``.
Writes ``results.json`` and ``report.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from datetime import date
from pathlib import Path

import numpy as np

from benchmarks.backends import cpu
from benchmarks.index_scale import synthesize
from benchmarks.peers import peak_mb
from densepr.fileio import write_json
from densepr.index.faiss_index import DenseIndex
from densepr.index.planner import parse_bytes, plan, recall_card

DPR = (21_015_324, 768)
OVERHEAD = 24  # bytes a vector besides its code: its id (16) and its IVF list entry (8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="benchmarks/out/retrieval", help="benchmarks.retrieval_mini_wiki's output")
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--budgets", default="2GB,4GB,8GB")
    parser.add_argument("--recall-target", type=float, default=0.95)
    parser.add_argument("--out", default="benchmarks/out/planner")
    parser.add_argument("--page", action="store_true", help="also write the report into benchmarks/RESULTS.md")
    args = parser.parse_args()
    import densepr

    budgets = args.budgets.split(",")
    r: dict = {"dpr": {b: plan(*DPR, parse_bytes(b)).to_dict() for b in budgets}, "measured": {}}
    real, _, _ = densepr.load_embeddings(Path(args.corpus) / "emb")
    vectors = synthesize(np.asarray(real, dtype=np.float32), args.size)
    dim = vectors.shape[1]
    ids = [str(i) for i in range(len(vectors))]
    for b in budgets:
        per_vector = (parse_bytes(b) / DPR[0] - OVERHEAD) * dim / DPR[1] + OVERHEAD
        budget = int(per_vector * len(vectors) + 4000 * dim * 4)  # + the coarse centroids
        chosen = plan(len(vectors), dim, budget)
        start = time.perf_counter()
        index = DenseIndex.build(vectors, ids, chosen.kind, **chosen.params)
        seconds = time.perf_counter() - start
        card = recall_card(index, vectors, args.recall_target)
        import faiss

        r["measured"][b] = {"budget_bytes": budget, "plan": chosen.to_dict(), "build_seconds": seconds,
                            "index_bytes": int(faiss.serialize_index(index.index).nbytes), "peak_rss_mb": peak_mb(), "card": card}
        print(b, chosen.kind, chosen.params, card["chosen"], flush=True)
        del index
        gc.collect()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", r)
    lines = [f"# Index planner at RAM budgets, {date.today().isoformat()}", "",
             f"CPU: {cpu()['model']}, flags {' '.join(cpu()['flags'])}. Command: `python -m benchmarks.planner_budget "
             + " ".join(sys.argv[1:]) + "`. Peak RSS is the process's (the vectors are held in RAM).", "", f"DPR's Wikipedia ({DPR[0]:,} x {DPR[1]}), planned only:", "",
             "| budget | type | parameters | predicted GB | predicted ms/query |", "|---|---|---|---|---|"]
    lines += [f"| {b} | {p['kind']} | {p['params']} | {p['bytes'] / 1e9:.2f} | {p['search_ms']:.0f} |" for b, p in r["dpr"].items()]
    lines += ["", f"Measured on {args.size:,} x {dim} vectors, budgets scaled to the same bytes per dimension:", "",
              "| budget (21M-equivalent) | scaled budget MB | type | parameters | predicted MB | index MB | build s | "
              "peak RSS MB | chosen probe | recall@10 | recall@100 | queries/s |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for b, m in r["measured"].items():
        c, p = m["card"]["chosen"], m["plan"]
        probe = next((f"{k} {v}" for k, v in c.items() if k in ("nprobe", "ef_search")), "-")
        lines.append(f"| {b} | {m['budget_bytes'] / 1e6:.0f} | {p['kind']} | {p['params']} | {p['bytes'] / 1e6:.0f} | "
                     f"{m['index_bytes'] / 1e6:.0f} | {m['build_seconds']:.0f} | {m['peak_rss_mb']:.0f} | {probe} | "
                     f"{c['recall@10']:.3f} | {c['recall@100']:.3f} | {c['queries_per_s']:.0f} |")
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    if args.page:
        from benchmarks.report import write_page_section

        write_page_section("planner", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Dense index types at 100k and 1M passages: build time, memory, search throughput, recall@100 vs exact. (The planner
suite measures the index the planner picks at each RAM budget; this sweeps every type.)

    python -m benchmarks.ablations.index_scale [--corpus benchmarks/out/retrieval] [--sizes 100000,1000000]

The real part: the default model's embeddings of the mini-Wikipedia corpus (the retrieval suite's, 14,885 passages) and NQ-open dev question vectors as queries. The rest is synthesised: each extra vector mixes
two random real passage vectors (weights 0.6-1.0 and 0-0.4) plus Gaussian noise of 0.15 x the per-dimension
spread, then is scaled to a real passage norm, so it keeps the real vectors' anisotropy and norm distribution
(random but realistic, not real text). Recall@100 is measured against exact (flat) search of the same vectors.
"""

from __future__ import annotations

import gc
import statistics
import time

import faiss
import numpy as np

import densepr
from benchmarks.harness import NQ, cpu_line, table
from benchmarks.planner import synthesize
from densepr.index.faiss_index import build_faiss


def index_bytes(index: faiss.Index) -> int:
    return int(faiss.serialize_index(index).nbytes)


def main() -> None:
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--corpus", default="benchmarks/out/retrieval", help="the retrieval suite's --out (its vectors)")
    p.add_argument("--sizes", default="100000,1000000", help="vectors synthesised, one run each")
    p.add_argument("--types", default="flat,hnsw,ivfpq,ivfsq8,sq8")
    p.add_argument("--queries", type=int, default=1000, help="NQ-open dev questions as queries")
    p.add_argument("--nprobes", default="16,32,64,128")
    p.add_argument("--runs", type=int, default=3, help="searches behind each median")
    args = p.parse_args()
    args.embeddings = f"{args.corpus}/emb"
    real, _, meta = densepr.load_embeddings(args.embeddings)
    real = np.ascontiguousarray(real, dtype=np.float32)
    model = densepr.BiEncoder.load(meta["model"])
    questions = [q.text for q in densepr.read_questions(NQ)][: args.queries]
    queries = model.encode_questions(questions)
    rows = []
    for n in map(int, args.sizes.split(",")):
        vectors = synthesize(real, n)
        exact = None
        for kind in args.types.split(","):
            start = time.perf_counter()
            index = build_faiss(vectors, kind, hnsw_m=32, ef_construction=80)
            build_s = time.perf_counter() - start
            settings = [None]
            if kind.startswith("ivf"):
                settings = [int(p) for p in args.nprobes.split(",")]
            elif kind == "hnsw":
                settings = [64, 128, 256]
            for setting in settings:
                if kind.startswith("ivf"):
                    faiss.extract_index_ivf(index).nprobe = setting
                elif kind == "hnsw":
                    index.hnsw.efSearch = setting
                times = []
                for _ in range(args.runs):
                    t = time.perf_counter()
                    _, found = index.search(queries, 100)
                    times.append(time.perf_counter() - t)
                if kind == "flat":
                    exact = found
                recall = float(np.mean([len(set(f) & set(e)) / 100 for f, e in zip(found, exact)])) if exact is not None else None
                row = {"n": n, "type": kind, "param": setting, "build_s": round(build_s, 1), "index_mb": round(index_bytes(index) / 2**20, 1),
                       "queries_per_s_median": round(len(queries) / statistics.median(times), 1), "recall@100": recall}
                rows.append(row)
                print(row, flush=True)
            del index
            gc.collect()
        del vectors
        gc.collect()
    cells = [[f"{r['n']:,}", r["type"], r["param"] or "", r["build_s"], r["index_mb"], r["queries_per_s_median"],
              f"{r['recall@100']:.3f}"] for r in rows]
    text = "\n".join(["## Dense index types at scale (inner product, k = 100)", "", f"{cpu_line()}. Queries: {len(queries)} "
                      f"NQ-open dev questions; {len(real):,} real passage vectors, the rest synthesised.", "",
                      *table(["passages", "type", "nprobe/efSearch", "build s", "index MB", "queries/s (median)",
                              "recall@100 vs exact"], cells)])
    print(text)


if __name__ == "__main__":
    main()

"""Sharded encoding across processes, merged into one index; a million-passage compressed index and its RAM.

    python -m benchmarks.ablations.scale [--corpus benchmarks/out/retrieval] [--total 1000000] [--type ivfsq8]

1. The real mini-Wikipedia corpus is encoded by ``torchrun --nproc-per-node 2 -m densepr encode`` (one shard per
   process, one thread each) and, in the same run, by one process using both cores; the two-shard folder is merged
   by ``densepr index`` and must give the single-process vectors and top-100 lists.
2. A 1,000,000-passage embeddings folder in the same shard layout: the real shard vectors plus synthesised ones
   (``benchmarks.planner.synthesize``: mixtures of two real vectors plus noise, scaled to real norms), ids
   ``synth-N``. ``densepr index --type ivfsq8`` merges its shards (timed, peak RSS of that process); a fresh process
   then loads the index folder and searches NQ-open question vectors (peak RSS of that process: the RAM the index
   needs), with recall@100 against exact search of the same vectors.
Writes ``results.json`` and ``report.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.harness import DATA, free_port
from benchmarks.peers import measured_alone as isolated
from densepr.hardware import peak_rss_mb


def densepr_cli(*argv: str, processes: int = 1) -> float:
    """Run ``densepr ARGV`` (under torchrun with ``processes`` > 1); returns wall seconds."""
    runner = [sys.executable, "-m", "densepr"] if processes == 1 else [
        "torchrun", "--nproc-per-node", str(processes), "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "densepr"]
    start = time.perf_counter()
    subprocess.run([*runner, "-q", *argv], check=True, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    return time.perf_counter() - start


def sharded_encoding(corpus: Path, work: Path, questions: np.ndarray, limit: int = 0) -> dict:
    """Two torchrun shards vs one process over the real corpus (its first ``limit`` passages if > 0);
    merged vectors and top-100 must agree."""
    import densepr

    psgs = corpus / "psgs_w100.tsv"
    if limit > 0:
        store = densepr.PassageStore(psgs)
        if limit < len(store):
            psgs = work / "psgs-subset.tsv"
            densepr.write_passages(psgs, (store[i] for i in range(limit)))
    for name in ("emb-1proc", "emb-2proc", "flat-2proc"):
        shutil.rmtree(work / name, ignore_errors=True)
    one_s = densepr_cli("encode", "--passages", str(psgs), "--out", str(work / "emb-1proc"))
    two_s = densepr_cli("encode", "--passages", str(psgs), "--out", str(work / "emb-2proc"), processes=2)
    densepr_cli("index", "--embeddings", str(work / "emb-2proc"), "--out", str(work / "flat-2proc"))
    one, ids_one, _ = densepr.load_embeddings(work / "emb-1proc")
    two, ids_two, meta = densepr.load_embeddings(work / "emb-2proc")
    cos = (one * two).sum(1) / np.linalg.norm(one, axis=1) / np.linalg.norm(two, axis=1)
    merged = densepr.DenseIndex.load(work / "flat-2proc")
    _, rows_two = merged.search(questions, 100)
    _, rows_one = densepr.DenseIndex.build(np.asarray(one), ids_one).search(questions, 100)
    same = float(np.mean([len(set(a) & set(b)) / 100 for a, b in zip(rows_one, rows_two)]))
    n = len(ids_one)
    return {"passages": n, "one_process_s": one_s, "two_processes_s": two_s, "speedup": one_s / two_s,
            "one_process_passages_per_s": n / one_s, "two_processes_passages_per_s": n / two_s,
            "shards": meta["num_shards"], "ids_equal": ids_one == ids_two, "cosine_min": float(cos.min()),
            "top100_overlap": same}


def write_million(real: np.ndarray, real_ids: list[str], out: Path, total: int, shards: int) -> None:
    """An embeddings folder of ``total`` vectors in ``shards`` shards, laid out as ``densepr encode`` writes it."""
    from benchmarks.planner import synthesize
    from densepr.dense.passage_encoding import shard_name, shard_range
    from densepr.fileio import save_npy, write_json

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    vectors = synthesize(real, total)
    ids = real_ids + [f"synth-{i}" for i in range(len(real_ids), total)]
    for shard in range(shards):
        start, stop = shard_range(total, shard, shards)
        save_npy(out / f"{shard_name(shard, shards)}.npy", vectors[start:stop])
        (out / f"{shard_name(shard, shards)}.ids.txt").write_text("".join(i + "\n" for i in ids[start:stop]))
    write_json(out / "meta.json", {"passages": "synthetic (see benchmarks/scale.py)", "passages_fingerprint": "synthetic",
                                   "num_passages": total, "model": "sentence-transformers/all-MiniLM-L6-v2",
                                   "dim": int(real.shape[1]), "num_shards": shards})


def build_in_process(emb: str, out: str, kind: str) -> dict:
    from densepr.pipeline import build_index

    start = time.perf_counter()
    index = build_index(emb, out, kind)
    return {"build_s": time.perf_counter() - start, "peak_mb": peak_rss_mb(), "vectors": len(index.ids)}


def search_in_process(index_dir: str, queries: np.ndarray, nprobe: int) -> dict:
    """Load an index folder and search; peak RSS of this process is the RAM the index needs."""
    import densepr

    base = peak_rss_mb()
    index = densepr.DenseIndex.load(index_dir)
    index.configure(nprobe=nprobe)
    start = time.perf_counter()
    _, rows = index.search(queries, 100)
    seconds = time.perf_counter() - start
    return {"rows": rows, "queries_per_s": len(queries) / seconds, "peak_mb": peak_rss_mb(), "python_baseline_mb": base,
            "index_file_mb": sum(f.stat().st_size for f in Path(index_dir).iterdir()) / 2**20}


def main() -> None:
    import densepr
    from densepr.fileio import write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="benchmarks/out/retrieval")
    parser.add_argument("--total", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--type", default="ivfsq8")
    parser.add_argument("--nprobes", default="64,128")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--encode-passages", type=int, default=0,
                        help="encode only the first N corpus passages in the sharded-encoding comparison (0: all)")
    parser.add_argument("--out", default="benchmarks/out/scale")
    args = parser.parse_args()
    corpus, out = Path(args.corpus), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = densepr.BiEncoder.load("default")
    questions = model.encode_questions([q.text for q in densepr.read_questions(DATA / "nq-open/NQ-open.dev.jsonl")][: args.queries])
    del model
    r: dict = {"sharded_encoding": sharded_encoding(corpus, out, questions, args.encode_passages)}
    print(r["sharded_encoding"], flush=True)

    # the million starts from every real vector: the corpus's own embeddings, else the two-shard ones
    real_dir = corpus / "emb" if (corpus / "emb" / "meta.json").is_file() else out / "emb-2proc"
    real, real_ids, _ = densepr.load_embeddings(real_dir)
    write_million(np.asarray(real, dtype=np.float32), real_ids, out / "emb-1m", args.total, args.shards)
    built = isolated(build_in_process, str(out / "emb-1m"), str(out / f"{args.type}-1m"), args.type)
    vectors, _, _ = densepr.load_embeddings(out / "emb-1m")
    _, exact = densepr.DenseIndex.build(np.asarray(vectors), [str(i) for i in range(len(vectors))]).search(questions, 100)
    del vectors
    searches = []
    for nprobe in map(int, args.nprobes.split(",")):
        found = isolated(search_in_process, str(out / f"{args.type}-1m"), questions, nprobe)
        recall = float(np.mean([len(set(f) & set(e)) / 100 for f, e in zip(found.pop("rows"), exact)]))
        searches.append({"nprobe": nprobe, "recall@100": recall, **found})
        print(searches[-1], flush=True)
    r["million"] = {"vectors": args.total, "real_vectors": len(real_ids), "shards": args.shards, "type": args.type,
                    "build": built, "search": searches, "queries": len(questions)}
    shutil.rmtree(out / "emb-1m")  # 1.5 GB of synthetic vectors: not worth keeping
    write_json(out / "results.json", r)
    text = "\n".join(["# Sharded encoding and a million-passage index", "", *report_lines(r)]) + "\n"
    (out / "report.md").write_text(text)
    print(text)


def report_lines(r: dict) -> list[str]:
    s, m = r["sharded_encoding"], r["million"]
    lines = [f"Sharded encoding of {s['passages']:,} real passages: one process (2 threads) {s['one_process_s']:.0f} s "
             f"({s['one_process_passages_per_s']:.0f} passages/s); `torchrun --nproc-per-node 2 -m densepr encode` "
             f"(2 shards, 1 thread each) {s['two_processes_s']:.0f} s ({s['two_processes_passages_per_s']:.0f} passages/s, "
             f"{s['speedup']:.2f}x). Merged by `densepr index`: ids equal: {s['ids_equal']}, min cosine to the one-process "
             f"vectors {s['cosine_min']:.5f}, top-100 overlap {100 * s['top100_overlap']:.2f}%.", "",
             f"{m['vectors']:,} vectors ({m['real_vectors']:,} real, the rest synthesised) in {m['shards']} shards, merged into "
             f"one {m['type']} index by `densepr index` in {m['build']['build_s']:.0f} s (peak RSS of that process "
             f"{m['build']['peak_mb']:,.0f} MB: it holds every shard in RAM while training and adding).", "",
             "| nprobe | recall@100 vs exact | queries/s | index files MB | peak RSS of the search process MB |", "|---|---|---|---|---|"]
    lines += [f"| {x['nprobe']} | {x['recall@100']:.3f} | {x['queries_per_s']:.0f} | {x['index_file_mb']:.0f} | {x['peak_mb']:.0f} |"
              for x in m["search"]]
    return lines


if __name__ == "__main__":
    main()

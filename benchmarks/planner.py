"""The index planner at RAM budgets: its choice, predicted and measured bytes, build time, peak RSS and recall card.

    python -m benchmarks planner [--corpus benchmarks/out/retrieval] [--size 1000000] [--budgets 2GB,4GB,8GB]

Two parts:

- the arithmetic for DPR's Wikipedia (21,015,324 passages x 768 dims): the planner's choice and predicted bytes at each
  budget (nothing built: a flat index alone is 64.5 GB);
- measured: ``--size`` vectors synthesised from a real model's passage vectors (the retrieval suite's 384-d MiniLM
  vectors of the mini-Wikipedia, ``--corpus``) by :func:`synthesize` (the real vectors, then
  mixtures of two of them plus noise, rescaled to real norms), written to disk as float16 embedding shards (never all
  in memory), then ``densepr index --ram-budget`` at each budget scaled to keep the bytes a vector's code may take per
  dimension (``(budget/21M − 24) × dim/768 + 24`` bytes a vector, 24 being its id and list entry), so each budget meets
  the index and compression (dimensions per byte) it meets at 21M x 768. The build is out of core: the table shows
  the build's own peak RSS (recorded by the build before its recall card) against the rule "index + 1 GB", and the
  whole command's (recall card included, which holds the ids and the probe queries).

Every index type swept at 100k and 1M vectors: :mod:`benchmarks.ablations.index_scale`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from benchmarks.harness import cpu_line, mini_wiki, parser, publish
from densepr.dense.passage_encoding import load_embeddings, shard_name
from densepr.fileio import read_json, write_json
from densepr.hardware import peak_rss_mb
from densepr.index.planner import ivf_lists, parse_bytes, plan

DPR = (21_015_324, 768)
OVERHEAD = 24  # bytes a vector besides its code: its id (16) and its IVF list entry (8)
SHARD_ROWS = 2_000_000
SMOKE = ["--size", "20000", "--budgets", "8GB", "--articles", "3"]


def synthesize(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` vectors: the real ones first, then mixtures of two real vectors plus noise (see module doc)."""
    return np.concatenate(list(synthesized_chunks(real, n, seed)))


def synthesized_chunks(real: np.ndarray, n: int, seed: int = 0, chunk: int = 100_000) -> Iterator[np.ndarray]:
    """:func:`synthesize`'s ``n`` vectors, ``chunk`` rows at a time (never all in memory)."""
    rng = np.random.default_rng(seed)
    yield real[:n].astype(np.float32)
    spread, norms = real.std(0), np.linalg.norm(real, axis=1)
    for start in range(len(real), n, chunk):
        m = min(chunk, n - start)
        a, b = real[rng.integers(len(real), size=m)], real[rng.integers(len(real), size=m)]
        v = rng.uniform(0.6, 1.0, (m, 1)) * a + rng.uniform(0.0, 0.4, (m, 1)) * b
        v += 0.15 * spread * rng.standard_normal(v.shape).astype(np.float32)
        v *= (norms[rng.integers(len(real), size=m)] / np.linalg.norm(v, axis=1))[:, None]
        yield v.astype(np.float32)




def write_vectors(real: np.ndarray, n: int, folder: Path) -> None:
    """``n`` synthesised vectors as an embeddings folder of float16 shards (``SHARD_ROWS`` each), chunk by chunk."""
    meta_path = folder / "meta.json"
    if meta_path.is_file() and read_json(meta_path).get("num_passages") == n:
        return
    folder.mkdir(parents=True, exist_ok=True)
    shards = -(-n // SHARD_ROWS)
    chunks, pending = synthesized_chunks(real, n), np.empty((0, real.shape[1]), np.float32)
    for i in range(shards):
        rows = min(SHARD_ROWS, n - i * SHARD_ROWS)
        name = shard_name(i, shards)
        with open(folder / f"{name}.npy", "wb") as fh, open(folder / f"{name}.ids.txt", "w") as ids:
            np.lib.format.write_array_header_1_0(fh, {"descr": "<f2", "fortran_order": False, "shape": (rows, real.shape[1])})
            left = rows
            while left:
                if not len(pending):
                    pending = next(chunks)
                take, pending = pending[:left], pending[left:]
                fh.write(take.astype(np.float16).tobytes())
                first = i * SHARD_ROWS + rows - left
                ids.writelines(f"{r}\n" for r in range(first, first + len(take)))
                left -= len(take)
        print(f"wrote {name} ({rows:,} rows)", flush=True)
    write_json(meta_path, {"num_shards": shards, "num_passages": n, "dim": real.shape[1], "model": "synthetic",
                           "passages": "synthetic", "passages_fingerprint": f"synthetic:{n}"})


def build(vectors: Path, out: Path, budget: int) -> dict:
    """``densepr index --ram-budget`` as a child process: its wall time and peak RSS, the card and meta it wrote."""
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "densepr", "index", "--embeddings", str(vectors), "--out", str(out),
                              "--ram-budget", str(budget)])
    peak = 0.0
    while child.poll() is None:  # VmHWM: the child's own peak (ru_maxrss would start from this process's memory)
        peak = max(peak, peak_rss_mb(child.pid))
        time.sleep(0.1)
    if child.returncode:
        raise SystemExit(f"densepr index failed ({child.returncode})")
    card, meta = read_json(out / "recall_card.json"), read_json(out / "meta.json")
    return {"seconds": time.perf_counter() - start, "process_peak_rss_mb": peak, "card": card,
            "build_seconds": meta["build_seconds"], "build_peak_rss_mb": meta["build_peak_rss_mb"],
            "index_bytes": card["index_bytes"]}


def main() -> None:
    ap = parser(__doc__, "planner")
    ap.add_argument("--corpus", default="benchmarks/out/retrieval", help="the retrieval suite's --out (its vectors)")
    ap.add_argument("--articles", type=int, help="when the corpus is made here: the first N articles of each source")
    ap.add_argument("--size", type=int, default=1_000_000, help="vectors synthesised")
    ap.add_argument("--budgets", default="2GB,4GB,8GB")
    ap.add_argument("--work", help="where the synthesised vectors go (default: OUT/vectors-SIZE)")
    ap.add_argument("--keep", action="store_true", help="keep the budgets OUT/results.json measured already (at this "
                                                       "size) instead of building them again")
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    args.embeddings = str(mini_wiki(Path(args.corpus), args.articles) / "emb")
    budgets = args.budgets.split(",")
    r: dict = {"dpr": {b: plan(*DPR, parse_bytes(b)).to_dict() for b in budgets}, "measured": {}}
    earlier = read_json(out / "results.json") if args.keep and (out / "results.json").is_file() else {}
    real = np.asarray(load_embeddings(args.embeddings)[0], dtype=np.float32)
    dim = real.shape[1]
    vectors = Path(args.work or out / f"vectors-{args.size}")
    started = time.perf_counter()
    write_vectors(real, args.size, vectors)
    r["synthesis_seconds"], r["size"] = time.perf_counter() - started, args.size
    for b in budgets:
        if earlier.get("size") == args.size and b in earlier.get("measured", {}):
            r["measured"][b] = earlier["measured"][b]
            continue
        per_vector = (parse_bytes(b) / DPR[0] - OVERHEAD) * dim / DPR[1] + OVERHEAD
        budget = int(per_vector * args.size + ivf_lists(args.size, dim) * dim * 4)  # + the coarse centroids
        m = build(vectors, out / f"index-{args.size}-{b}", budget)
        r["measured"][b] = dict(m, budget_bytes=budget, plan=m["card"]["plan"])
        print(b, json.dumps({k: v for k, v in m.items() if k != "card"}), m["card"]["chosen"], flush=True)
        write_json(out / "results.json", r)
    lines = [f"## Index planner at RAM budgets ({args.size:,} vectors measured)", "", f"{cpu_line()}.", "", f"DPR's Wikipedia ({DPR[0]:,} x {DPR[1]}), planned only:", "",
             "| budget | type | parameters | predicted GB | predicted ms/query |", "|---|---|---|---|---|"]
    lines += [f"| {b} | {p['kind']} | {p['params']} | {p['bytes'] / 1e9:.2f} | {p['search_ms']:.0f} |" for b, p in r["dpr"].items()]
    lines += ["", f"Measured on {args.size:,} x {dim} synthesised vectors (float16 shards on disk, written in "
              f"{r['synthesis_seconds']:.0f} s), budgets scaled to the same bytes per dimension. Build peak RSS is the "
              "streaming build's own; the rule is index + 1 GB. Command peak RSS includes the recall card.", "",
              "| budget (21M x 768-equivalent) | scaled budget MB | type | parameters | predicted MB | index MB | build s | "
              "build peak RSS MB | index + 1 GB | command peak RSS MB | chosen probe | recall@10 | recall@100 | queries/s |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for b, m in r["measured"].items():
        c, p = m["card"]["chosen"], m["plan"]
        probe = next((f"{k} {v}" for k, v in c.items() if k in ("nprobe", "ef_search")), "-")
        rule = m["index_bytes"] / 2**20 + 1024
        lines.append(f"| {b} | {m['budget_bytes'] / 1e6:.0f} | {p['kind']} | {p['params']} | {p['bytes'] / 1e6:.0f} | "
                     f"{m['index_bytes'] / 1e6:.0f} | {m['build_seconds']:.0f} | {m['build_peak_rss_mb']:.0f} | "
                     f"{'within' if m['build_peak_rss_mb'] <= rule else 'OVER'} ({rule:.0f}) | "
                     f"{m['process_peak_rss_mb']:.0f} | {probe} | {c['recall@10']:.3f} | {c['recall@100']:.3f} | "
                     f"{c['queries_per_s']:.0f} |")
    publish("planner", args, r, "\n".join(lines), f"planner-{args.size}")


if __name__ == "__main__":
    main()

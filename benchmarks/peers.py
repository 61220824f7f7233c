"""densepr side by side with the tools users would otherwise pick, in one run, as ratios.

    python -m benchmarks.peers [--corpus benchmarks/out/retrieval] [--runs 3]

- passage encoding (passages/s, same model, passages, max length 256): densepr vs sentence-transformers ``encode()``;
- single-question encoding latency p50/p95: densepr vs sentence-transformers;
- BM25 index build and search (questions/s): densepr (bm25s + stemmer + stopwords) vs plain ``bm25s`` vs ``rank_bm25``;
- training throughput (questions/s, batch 32, 1 hard negative): densepr vs sentence-transformers
  MultipleNegativesRankingLoss on the same model and (question, positive, hard negative) triples.
Each measurement runs in its own process (so peak RSS is its own); medians of ``--runs``.
Writes ``results.json`` and ``report.md`` under ``--out``. Peers are benchmark-only dependencies.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import multiprocessing as mp
import resource
import statistics
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _passages(corpus: str, n: int):
    import numpy as np

    import densepr

    store = densepr.PassageStore(Path(corpus) / "psgs_w100.tsv")
    rows = np.random.default_rng(0).choice(len(store), size=min(n, len(store)), replace=False)
    return [store[int(r)] for r in rows]


def _questions(n: int) -> list[str]:
    import densepr

    return [q.text for q in densepr.read_questions(DATA / "nq-open/NQ-open.dev.jsonl")][:n]


def encode_densepr(corpus: str, n: int, runs: int, bf16: bool) -> dict:
    import densepr

    passages, model = _passages(corpus, n), densepr.BiEncoder.load("default")
    model.encode_passages(passages[:64], bf16=bf16)  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        model.encode_passages(passages, bf16=bf16)
        times.append(time.perf_counter() - t)
    return {"passages_per_s": n / statistics.median(times), "peak_mb": _peak_mb()}


def encode_st(corpus: str, n: int, runs: int) -> dict:
    from sentence_transformers import SentenceTransformer

    from densepr.dense.loading import packaged_default_model

    passages = _passages(corpus, n)
    model = SentenceTransformer(str(packaged_default_model()), device="cpu")
    model.max_seq_length = 256
    pairs = [[p.title, p.text] for p in passages]
    model.encode(pairs[:64])
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        model.encode(pairs)
        times.append(time.perf_counter() - t)
    return {"passages_per_s": n / statistics.median(times), "peak_mb": _peak_mb()}


def question_latency(tool: str, n: int) -> dict:
    import numpy as np

    questions = _questions(n)
    if tool == "densepr":
        import densepr

        model = densepr.BiEncoder.load("default")
        encode = lambda q: model.encode_questions([q])  # noqa: E731
    else:
        from sentence_transformers import SentenceTransformer

        from densepr.dense.loading import packaged_default_model

        st = SentenceTransformer(str(packaged_default_model()), device="cpu")
        encode = lambda q: st.encode([q])  # noqa: E731
    encode(questions[0])
    times = []
    for q in questions:
        t = time.perf_counter()
        encode(q)
        times.append(1000 * (time.perf_counter() - t))
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)), "peak_mb": _peak_mb()}


def bm25_tool(tool: str, corpus: str, n_queries: int) -> dict:
    import densepr

    store = densepr.PassageStore(Path(corpus) / "psgs_w100.tsv")
    texts = [f"{p.title} {p.text}" for p in store]
    questions = _questions(n_queries)
    t = time.perf_counter()
    if tool == "densepr":
        bm25 = densepr.BM25Retriever.build(store, progress=False)
        build = time.perf_counter() - t
        t = time.perf_counter()
        bm25.search(questions, k=100)
    elif tool == "bm25s":
        import bm25s

        retriever = bm25s.BM25()
        retriever.index(bm25s.tokenize(texts, show_progress=False), show_progress=False)
        build = time.perf_counter() - t
        t = time.perf_counter()
        retriever.retrieve(bm25s.tokenize(questions, show_progress=False), k=100, show_progress=False)
    else:
        import numpy as np
        from rank_bm25 import BM25Okapi

        retriever = BM25Okapi([x.lower().split() for x in texts])
        build = time.perf_counter() - t
        t = time.perf_counter()
        for q in questions:
            np.argsort(-retriever.get_scores(q.lower().split()))[:100]
    return {"build_s": build, "questions_per_s": len(questions) / (time.perf_counter() - t), "peak_mb": _peak_mb()}


def train_tool(tool: str, train_file: str, steps: int, batch: int) -> dict:
    import tempfile

    from densepr.train import read_training_data

    examples = read_training_data(train_file)[: steps * batch]
    out = tempfile.mkdtemp()
    t = time.perf_counter()
    if tool == "densepr":
        from densepr.pipeline import train

        train(train_file, out, "default", batch_size=batch, max_steps=steps, save_every=0, warmup_steps=2)
    else:
        from datasets import Dataset
        from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer, SentenceTransformerTrainingArguments
        from sentence_transformers.losses import MultipleNegativesRankingLoss

        from densepr.dense.loading import packaged_default_model

        model = SentenceTransformer(str(packaged_default_model()), device="cpu")
        data = Dataset.from_dict({"anchor": [e.question for e in examples],
                                  "positive": [f"{e.positives[0].title} {e.positives[0].text}" for e in examples],
                                  "negative": [f"{e.hard_negatives[0].title} {e.hard_negatives[0].text}" for e in examples]})
        args = SentenceTransformerTrainingArguments(output_dir=out, per_device_train_batch_size=batch, max_steps=steps,
                                                    save_strategy="no", report_to=[], bf16=True, use_cpu=True)
        SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=MultipleNegativesRankingLoss(model)).train()
    return {"questions_per_s": steps * batch / (time.perf_counter() - t), "peak_mb": _peak_mb()}


def isolated(fn, *args) -> dict:
    with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def main() -> None:
    from densepr.fileio import write_json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="benchmarks/out/retrieval")
    parser.add_argument("--train-file", default="benchmarks/out/train/train.json")
    parser.add_argument("--passages", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=8)
    parser.add_argument("--skip", default="", help="comma-separated sections to skip: encode,latency,bm25,train")
    parser.add_argument("--out", default="benchmarks/out/peers")
    args = parser.parse_args()
    skip, out, r = set(args.skip.split(",")), Path(args.out), {}
    out.mkdir(parents=True, exist_ok=True)
    if "encode" not in skip:
        r["encode"] = {"densepr": isolated(encode_densepr, args.corpus, args.passages, args.runs, True),
                       "densepr_fp32": isolated(encode_densepr, args.corpus, args.passages, args.runs, False),
                       "sentence_transformers": isolated(encode_st, args.corpus, args.passages, args.runs)}
        print(r["encode"], flush=True)
    if "latency" not in skip:
        r["latency"] = {t: isolated(question_latency, t, 200) for t in ("densepr", "sentence_transformers")}
        print(r["latency"], flush=True)
    if "bm25" not in skip:
        r["bm25"] = {t: isolated(bm25_tool, t, args.corpus, 500 if t == "rank_bm25" else 3610) for t in ("densepr", "bm25s", "rank_bm25")}
        print(r["bm25"], flush=True)
    if "train" not in skip and Path(args.train_file).is_file():
        r["train"] = {t: isolated(train_tool, t, args.train_file, args.train_steps, 32) for t in ("densepr", "sentence_transformers")}
        print(r["train"], flush=True)
    write_json(out / "results.json", r)
    lines = ["# densepr vs peers (same machine, same run)", ""]
    for section, metric in (("encode", "passages_per_s"), ("bm25", "questions_per_s"), ("train", "questions_per_s")):
        if section in r:
            base = r[section]["densepr"][metric]
            lines += [f"## {section}: {metric}", "", "| tool | value | densepr / tool | peak MB |", "|---|---|---|---|"]
            lines += [f"| {t} | {v[metric]:.1f} | {base / v[metric]:.2f} | {v['peak_mb']:.0f} |" for t, v in r[section].items()]
            lines.append("")
    if "latency" in r:
        lines += ["## single-question encoding latency", "", "| tool | p50 ms | p95 ms |", "|---|---|---|"]
        lines += [f"| {t} | {v['p50_ms']:.2f} | {v['p95_ms']:.2f} |" for t, v in r["latency"].items()]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""densepr side by side with the tools users would otherwise pick, in one run, as ratios.

    python -m benchmarks peers [--corpus benchmarks/out/retrieval] [--train-file benchmarks/out/training/train.json] [--runs 3]

- passage encoding (passages/s, same model, passages, max length 256): densepr vs sentence-transformers ``encode()``;
- single-question encoding latency p50/p95: densepr vs sentence-transformers;
- BM25 index build and search (questions/s): densepr (bm25s + stemmer + stopwords) vs plain ``bm25s``, ``rank_bm25``
  and pyserini (Lucene; where it imports: needs Java 21+, found under /usr/lib/jvm when JAVA_HOME is unset);
- training throughput (questions/s, batch 32, 1 hard negative; median step time, loading and saving not timed):
  densepr vs sentence-transformers MultipleNegativesRankingLoss on the same model and triples (the training suite's
  ``train.json``; skipped when it is missing).
Each measurement runs in its own process (so peak RSS is its own); medians of ``--runs``. Peers are benchmark-only
dependencies (``pip install -e ".[bench]"``); one that is not installed is left out of its table.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.harness import NQ, cpu_line, mini_wiki, parser, publish
from densepr.hardware import peak_rss_mb

FP32 = {"torch_dtype": "float32"}  # the packaged weights are fp16, which sentence-transformers 5+ would keep on a CPU
SMOKE = ["--passages", "16", "--runs", "1", "--questions", "5", "--bm25-questions", "20", "--train-steps", "3",
         "--train-batch", "4", "--articles", "3", "--in-process"]


def _passages(corpus: str, n: int):
    import numpy as np

    import densepr

    store = densepr.PassageStore(Path(corpus) / "psgs_w100.tsv")
    rows = np.random.default_rng(0).choice(len(store), size=min(n, len(store)), replace=False)
    return [store[int(r)] for r in rows]


def _questions(n: int) -> list[str]:
    import densepr

    return [q.text for q in densepr.read_questions(NQ)][:n]


def encode_densepr(corpus: str, n: int, runs: int, bf16: bool | None) -> dict:
    """``bf16=None``: densepr's default (bf16 autocast only on CPUs with bf16 units, else fp32)."""
    import densepr
    from densepr.hardware import cpu_supports_bf16

    passages, model = _passages(corpus, n), densepr.BiEncoder.load("default")
    model.encode_passages(passages[:64], bf16=bf16)  # warm-up
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        model.encode_passages(passages, bf16=bf16)
        times.append(time.perf_counter() - t)
    precision = "bf16" if (cpu_supports_bf16() if bf16 is None else bf16) else "fp32"
    return {"passages_per_s": n / statistics.median(times), "precision": precision, "peak_mb": peak_rss_mb()}


def encode_st(corpus: str, n: int, runs: int) -> dict:
    from sentence_transformers import SentenceTransformer

    from densepr.dense.loading import packaged_default_model

    passages = _passages(corpus, n)
    model = SentenceTransformer(str(packaged_default_model()), device="cpu", model_kwargs=FP32)
    model.max_seq_length = 256
    pairs = [[p.title, p.text] for p in passages]
    model.encode(pairs[:64])
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        model.encode(pairs)
        times.append(time.perf_counter() - t)
    return {"passages_per_s": n / statistics.median(times), "peak_mb": peak_rss_mb()}


def question_latency(tool: str, n: int, runs: int) -> dict:
    import numpy as np

    questions = _questions(n)
    if tool == "densepr":
        import densepr

        model = densepr.BiEncoder.load("default")
        encode = lambda q: model.encode_questions([q])  # noqa: E731
    else:
        from sentence_transformers import SentenceTransformer

        from densepr.dense.loading import packaged_default_model

        st = SentenceTransformer(str(packaged_default_model()), device="cpu", model_kwargs=FP32)
        encode = lambda q: st.encode([q])  # noqa: E731
    encode(questions[0])
    p50, p95 = [], []
    for _ in range(runs):
        times = []
        for q in questions:
            t = time.perf_counter()
            encode(q)
            times.append(1000 * (time.perf_counter() - t))
        p50.append(float(np.percentile(times, 50)))
        p95.append(float(np.percentile(times, 95)))
    return {"p50_ms": statistics.median(p50), "p95_ms": statistics.median(p95), "peak_mb": peak_rss_mb()}


def bm25_tool(tool: str, corpus: str, n_queries: int, runs: int) -> dict:
    """Index build and top-100 search (all questions in one call where the tool has one); medians of ``runs``."""
    import tempfile

    import densepr

    store = densepr.PassageStore(Path(corpus) / "psgs_w100.tsv")
    texts = [f"{p.title} {p.text}" for p in store]
    questions = _questions(n_queries)
    builds, searches = [], []
    for _ in range(runs):
        t = time.perf_counter()
        if tool == "densepr":
            bm25 = densepr.BM25Retriever.build(store, progress=False)
            search = lambda: bm25.search(questions, k=100)  # noqa: E731
        elif tool == "bm25s":
            import bm25s

            retriever = bm25s.BM25()
            retriever.index(bm25s.tokenize(texts, show_progress=False), show_progress=False)
            search = lambda: retriever.retrieve(bm25s.tokenize(questions, show_progress=False), k=100, show_progress=False)  # noqa: E731
        elif tool == "pyserini":
            from pyserini.index.lucene import LuceneIndexer
            from pyserini.search.lucene import LuceneSearcher

            folder = tempfile.mkdtemp()
            indexer = LuceneIndexer(folder, threads=2)
            indexer.add_batch_dict([{"id": p.id, "contents": x} for p, x in zip(store, texts)])
            indexer.close()
            searcher = LuceneSearcher(folder)
            searcher.set_bm25(0.9, 0.4)
            qids = [str(i) for i in range(len(questions))]
            search = lambda: searcher.batch_search(questions, qids, k=100, threads=2)  # noqa: E731
        else:
            import numpy as np
            from rank_bm25 import BM25Okapi

            retriever = BM25Okapi([x.lower().split() for x in texts])
            search = lambda: [np.argsort(-retriever.get_scores(q.lower().split()))[:100] for q in questions]  # noqa: E731
        builds.append(time.perf_counter() - t)
        t = time.perf_counter()
        search()
        searches.append(time.perf_counter() - t)
    return {"build_s": statistics.median(builds), "questions_per_s": len(questions) / statistics.median(searches),
            "questions": len(questions), "runs": runs, "peak_mb": peak_rss_mb()}


def use_temurin_java() -> None:
    """pyserini 1.x needs Java 21+: point JAVA_HOME at the newest Temurin JDK when it is unset."""
    jdks = sorted(Path("/usr/lib/jvm").glob("temurin-*"), key=lambda p: int(p.name.split("-")[1]))
    if not os.environ.get("JAVA_HOME") and jdks:
        os.environ["JAVA_HOME"] = str(jdks[-1])
    os.environ.setdefault("OPENAI_API_KEY", "unused")  # pyserini 1.6 reads it at import


def pyserini_available() -> bool:
    """pyserini imports and its Lucene classes load (needs Java 21+ as JAVA_HOME)."""
    proc = subprocess.run([sys.executable, "-c", "from pyserini.search.lucene import LuceneSearcher"], capture_output=True)
    return proc.returncode == 0


def train_tool(tool: str, train_file: str, steps: int, batch: int, fp32: bool = False) -> dict:
    """Steady-state training throughput: median time between consecutive optimiser steps (tokenisation,
    forward, backward, clipping, AdamW), skipping the first two; model loading and saving are not timed.
    ``densepr`` trains DPR's two towers, ``densepr_shared`` one tower for both sides (as sentence-transformers)."""
    import tempfile

    from densepr.train import read_training_data

    examples = read_training_data(train_file)[: steps * batch]
    out, ends = tempfile.mkdtemp(), []
    start = time.perf_counter()
    if tool.startswith("densepr"):
        from densepr.dense.biencoder import BiEncoder
        from densepr.loop import TrainingLoop, epoch_order
        from densepr.train import DualEncoderModel, DualEncoderTask, TrainConfig

        model = DualEncoderModel(BiEncoder.load("default"), shared=tool == "densepr_shared")
        trainer = TrainingLoop(DualEncoderTask(model, examples, TrainConfig(out=out, batch_size=batch, max_steps=steps,
                                                                            save_every=0, warmup_steps=2,
                                                                            bf16=False if fp32 else None)))
        model.train()
        order = epoch_order(len(examples), trainer.config.seed, 0)
        ends.append(time.perf_counter())
        for s in range(steps):
            trainer.step(order[s * batch : (s + 1) * batch], 0)
            ends.append(time.perf_counter())
    else:
        try:
            import accelerate  # noqa: F401  (sentence-transformers' trainer needs it)
            from datasets import Dataset
        except ImportError as exc:
            raise SystemExit(f"sentence-transformers training needs {exc.name}: pip install datasets accelerate") from None
        from sentence_transformers import (
            SentenceTransformer,
            SentenceTransformerTrainer,
            SentenceTransformerTrainingArguments,
        )
        from sentence_transformers.losses import MultipleNegativesRankingLoss
        from transformers import TrainerCallback

        from densepr.dense.loading import packaged_default_model
        from densepr.hardware import cpu_supports_bf16

        class StepClock(TrainerCallback):
            def on_train_begin(self, *args, **kwargs):
                ends.append(time.perf_counter())

            def on_step_end(self, *args, **kwargs):
                ends.append(time.perf_counter())

        model = SentenceTransformer(str(packaged_default_model()), device="cpu", model_kwargs=FP32)
        data = Dataset.from_dict({"anchor": [e.question for e in examples],
                                  "positive": [f"{e.positives[0].title} {e.positives[0].text}" for e in examples],
                                  "negative": [f"{e.hard_negatives[0].title} {e.hard_negatives[0].text}" for e in examples]})
        args = SentenceTransformerTrainingArguments(output_dir=out, per_device_train_batch_size=batch, max_steps=steps,
                                                    save_strategy="no", report_to=[], bf16=cpu_supports_bf16() and not fp32, use_cpu=True,
                                                    warmup_steps=2, dataloader_drop_last=True)
        SentenceTransformerTrainer(model=model, args=args, train_dataset=data, loss=MultipleNegativesRankingLoss(model),
                                   callbacks=[StepClock()]).train()
    steps_s = [b - a for a, b in zip(ends, ends[1:])][2:]
    return {"questions_per_s": batch / statistics.median(steps_s), "step_s_median": statistics.median(steps_s),
            "wall_s": time.perf_counter() - start, "peak_mb": peak_rss_mb()}


def installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def measured_alone(fn, *args) -> dict:
    """``fn(*args)`` in a fresh spawned process (its own imports and peak RSS)."""
    with cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def main() -> None:
    ap = parser(__doc__, "peers")
    ap.add_argument("--corpus", default="benchmarks/out/retrieval", help="the retrieval suite's --out (made if missing)")
    ap.add_argument("--articles", type=int, help="when the corpus is made here: the first N articles of each source")
    ap.add_argument("--train-file", default="benchmarks/out/training/train.json", help="the training suite's")
    ap.add_argument("--passages", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--questions", type=int, default=200, help="questions encoded one at a time")
    ap.add_argument("--bm25-questions", type=int, default=3610, help="questions searched (rank_bm25: at most 500)")
    ap.add_argument("--train-steps", type=int, default=8)
    ap.add_argument("--train-batch", type=int, default=32)
    ap.add_argument("--train-fp32", action="store_true", help="train in fp32 (both tools), as on CPUs without bf16")
    ap.add_argument("--skip", default="", help="comma-separated sections to skip: encode,latency,bm25,train")
    ap.add_argument("--in-process", action="store_true", help="measure in this process, not one fresh process each "
                                                              "(quicker; peak memory is then the whole run's)")
    args = ap.parse_args()
    skip, r = set(args.skip.split(",")), {}
    isolated = (lambda fn, *a: fn(*a)) if args.in_process else measured_alone
    args.corpus = str(mini_wiki(Path(args.corpus), args.articles))
    use_temurin_java()
    if "encode" not in skip:
        from densepr.hardware import cpu_supports_bf16

        r["encode"] = {"densepr": isolated(encode_densepr, args.corpus, args.passages, args.runs, None)}
        if cpu_supports_bf16():  # the default is bf16 here: show what fp32 alone gives
            r["encode"]["densepr_fp32"] = isolated(encode_densepr, args.corpus, args.passages, args.runs, False)
        r["encode"]["sentence_transformers"] = isolated(encode_st, args.corpus, args.passages, args.runs)
        print(r["encode"], flush=True)
    if "latency" not in skip:
        r["latency"] = {t: isolated(question_latency, t, args.questions, args.runs) for t in ("densepr", "sentence_transformers")}
        print(r["latency"], flush=True)
    if "bm25" not in skip:
        tools = ["densepr", *(t for t in ("bm25s", "rank_bm25") if installed(t))] + (["pyserini"] if pyserini_available() else [])
        r["bm25"] = {t: isolated(bm25_tool, t, args.corpus, min(500, args.bm25_questions) if t == "rank_bm25" else args.bm25_questions,
                                 args.runs) for t in tools}
        print(r["bm25"], flush=True)
    if "train" not in skip and Path(args.train_file).is_file():
        r["train"] = {t: isolated(train_tool, t, args.train_file, args.train_steps, args.train_batch, args.train_fp32)
                      for t in ("densepr", "densepr_shared", *(["sentence_transformers"] if installed("accelerate")
                                                                and installed("datasets") else []))}
        print(r["train"], flush=True)
    lines = ["## densepr vs peers (same machine, same run)", "", f"{cpu_line()}.", ""]
    for section, metric in (("encode", "passages_per_s"), ("bm25", "questions_per_s"), ("train", "questions_per_s")):
        if section in r:
            base = r[section]["densepr"][metric]
            lines += [f"### {section}: {metric}", "", "| tool | value | densepr / tool | peak MB |", "|---|---|---|---|"]
            lines += [f"| {t} | {v[metric]:.1f} | {base / v[metric]:.2f} | {v['peak_mb']:.0f} |" for t, v in r[section].items()]
            lines.append("")
    if "latency" in r:
        lines += ["### single-question encoding latency", "", "| tool | p50 ms | p95 ms |", "|---|---|---|"]
        lines += [f"| {t} | {v['p50_ms']:.2f} | {v['p95_ms']:.2f} |" for t, v in r["latency"].items()]
    publish("peers", args, r, "\n".join(lines))


if __name__ == "__main__":
    main()

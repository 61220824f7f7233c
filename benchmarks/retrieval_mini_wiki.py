"""Retrieval on the mini-Wikipedia corpus (SQuAD dev articles + wiki-vital), BM25 vs the default dense model.

    python -m benchmarks.retrieval_mini_wiki [--data ../shared/data] [--out benchmarks/out/retrieval]

Writes ``results.json`` and ``report.md`` under ``--out``: corpus size, BM25 build time, encode throughput,
index build time, search throughput and top-1/5/20/100 accuracy on SQuAD dev, NQ-open dev and CuratedTREC (regex).
Intermediate files (passages, indexes) are kept under ``--out`` and reused by a later run.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch

import densepr
from densepr import pipeline
from densepr.dense.loading import DEFAULT_MODEL
from densepr.fileio import write_json

QUESTION_SETS = {  # name: (file under data, match mode)
    "squad-dev": ("squad/squad-dev-v1.1.open.json", "string"),
    "nq-open-dev": ("nq-open/NQ-open.dev.jsonl", "string"),
    "curatedtrec-train": ("curatedtrec/CuratedTrec-train.txt", "regex"),
}


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    parser.add_argument("--out", default="benchmarks/out/retrieval")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args()
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()},
                    "model": args.model}

    psgs = out / "psgs_w100.tsv"
    if not psgs.is_file():
        pipeline.make_passages(inputs=[str(data / "squad/squad-dev-v1.1.open.json"), "wiki-vital"], out=psgs)
    store = densepr.PassageStore(psgs)
    report["corpus"] = {"passages": len(store), "inputs": ["squad-dev-v1.1.open.json (48 articles)", "wiki-vital (10,033 articles)"]}

    _, seconds = timed(pipeline.build_bm25, passages=psgs, out=out / "bm25", progress=False)
    report["bm25_build_seconds"] = round(seconds, 2)
    if not (out / "emb" / "shard-000-of-001.npy").is_file():
        _, seconds = timed(pipeline.encode, passages=psgs, out=out / "emb", model=args.model, progress=False)
        report["encode"] = {"seconds": round(seconds, 1), "passages_per_second": round(len(store) / seconds, 1)}
    index, seconds = timed(pipeline.build_index, embeddings=out / "emb", out=out / "flat")
    report["index_build_seconds"] = round(seconds, 2)

    searchers = {"bm25": densepr.open_searcher(index=str(out / "bm25")), "dense": densepr.open_searcher(index=str(out / "flat"))}
    report["results"] = {}
    for name, (rel, match) in QUESTION_SETS.items():
        if not (data / rel).is_file():
            continue
        questions = densepr.read_questions(data / rel)
        texts = [q.text for q in questions]
        for kind, searcher in searchers.items():
            hits, seconds = timed(searcher.search, texts, 100)  # search alone, as the questions/s column says
            results = densepr.build_results(questions, hits, searcher.store, searcher.ids, match)
            densepr.write_results(out / f"{name}.{kind}.json", results)
            entry = {"questions": len(questions), "match": match, "top_k_accuracy": densepr.top_k_accuracy(results),
                     "questions_per_second": round(len(questions) / seconds, 1)}
            if kind == "dense":
                vectors = searcher.encode(texts[:512])
                _, search_s = timed(searcher.search, texts[:512], 100, vectors)
                entry["index_search_questions_per_second"] = round(len(vectors) / search_s, 1)
            report["results"][f"{name}/{kind}"] = entry
            print(name, kind, entry, flush=True)

    write_json(out / "results.json", report)
    lines = [f"# Retrieval on mini-Wikipedia ({len(store):,} passages)", "",
             f"Model: `{args.model}`; machine: {report['machine']}", "",
             "| questions | retriever | n | top-1 | top-5 | top-20 | top-100 | questions/s |", "|---|---|---|---|---|---|---|---|"]
    for key, e in report["results"].items():
        acc = e["top_k_accuracy"]
        lines.append(f"| {key.split('/')[0]} ({e['match']}) | {key.split('/')[1]} | {e['questions']} | "
                     + " | ".join(f"{acc[k]:.1f}" for k in ("1", "5", "20", "100")) + f" | {e['questions_per_second']} |")
    lines += ["", f"BM25 build: {report['bm25_build_seconds']} s; index build (flat): {report['index_build_seconds']} s; "
              f"encode: {report.get('encode', 'reused')}"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

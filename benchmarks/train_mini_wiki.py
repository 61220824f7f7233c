"""Train the dual encoder on SQuAD articles, evaluate on held-out articles of the mini-Wikipedia corpus.

    python -m benchmarks.train_mini_wiki [--steps 100] [--mined-steps 60] [--batch-size 32]

Needs the corpus, BM25 index and default-model embeddings of ``benchmarks.retrieval_mini_wiki`` (run it
first; ``--corpus`` points at its output). The SQuAD questions are split by article (every 4th article with
questions is held out); training data comes from ``build-train`` (gold positives, BM25 hard negatives).
Reports top-1/5/20/100 on the held-out questions for BM25, the untrained model, the trained model and the
model after one round of self-mined hard negatives, plus training throughput and peak memory.
Writes ``results.json`` and ``report.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import densepr
from densepr import pipeline, training
from densepr.dense.loading import DEFAULT_MODEL
from densepr.fileio import write_json
from densepr.train import (
    TrainConfig,
    build_training_data,
    mine_hard_negatives,
    read_training_data,
    squad_gold_rows,
    write_training_data,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def split_squad(path: Path, out: Path) -> tuple[Path, Path, list[str]]:
    """Write train/held-out SQuAD files (whole articles); returns their paths and the held-out titles."""
    data = json.loads(path.read_text(encoding="utf-8"))
    with_questions = [a for a in data["data"] if any(p["qas"] for p in a["paragraphs"])]
    held = [a for i, a in enumerate(with_questions) if i % 4 == 3]
    train = [a for a in with_questions if a not in held]
    paths = out / "squad-train.json", out / "squad-heldout.json"
    for p, articles in zip(paths, (train, held)):
        write_json(p, {"version": data.get("version"), "data": articles}, indent=None)
    return paths[0], paths[1], [a["title"] for a in held]


def evaluate(searcher: densepr.Searcher, questions, name: str, out: Path) -> dict:
    results = searcher.results(questions, k=100)
    densepr.write_results(out / f"heldout.{name}.json", results)
    acc = densepr.top_k_accuracy(results)
    print(name, acc, flush=True)
    return acc


def dense_index(model: str, corpus: Path, out: Path, name: str) -> densepr.Searcher:
    if not (out / f"{name}-index" / "meta.json").is_file():
        pipeline.encode(passages=corpus / "psgs_w100.tsv", out=out / f"{name}-emb", model=model, progress=False)
        pipeline.build_index(embeddings=out / f"{name}-emb", out=out / f"{name}-index")
    return densepr.open_searcher(index=str(out / f"{name}-index"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="benchmarks/out/retrieval", help="output folder of benchmarks.retrieval_mini_wiki")
    parser.add_argument("--out", default="benchmarks/out/train")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--mined-steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    corpus, out = Path(args.corpus), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = densepr.PassageStore(corpus / "psgs_w100.tsv")
    bm25 = densepr.open_searcher(index=str(corpus / "bm25"))
    train_squad, held_squad, held_titles = split_squad(DATA / "squad/squad-dev-v1.1.open.json", out)
    held_questions = densepr.read_questions(held_squad)
    report: dict = {"corpus_passages": len(store), "heldout_articles": held_titles, "heldout_questions": len(held_questions),
                    "config": vars(args), "top_k_accuracy": {}}

    if not (out / "train.json").is_file():
        gold = squad_gold_rows(train_squad, store)
        examples, stats = build_training_data(densepr.read_questions(train_squad), bm25, gold, progress=False)
        write_training_data(out / "train.json", examples)
        report["build_train"] = stats
    examples = read_training_data(out / "train.json")
    report["train_examples"] = len(examples)

    report["top_k_accuracy"]["bm25"] = evaluate(bm25, held_questions, "bm25", out)
    untrained = densepr.open_searcher(index=str(corpus / "flat"))
    report["top_k_accuracy"]["untrained"] = evaluate(untrained, held_questions, "untrained", out)

    common = {"batch_size": args.batch_size, "lr": args.lr, "warmup_steps": 10, "save_every": 50}
    report["train"] = training.train(train=out / "train.json", model=DEFAULT_MODEL,
                                     config=TrainConfig(out=str(out / "model-r1"), max_steps=args.steps, **common))
    trained = dense_index(str(out / "model-r1" / "final"), corpus, out, "r1")
    report["top_k_accuracy"]["trained"] = evaluate(trained, held_questions, "trained", out)

    start = time.perf_counter()
    mined_examples, report["mine_audit"] = mine_hard_negatives(examples, trained, progress=False)
    write_training_data(out / "train-mined.json", mined_examples)
    report["mine_seconds"] = round(time.perf_counter() - start, 1)
    report["train_mined"] = training.train(train=out / "train-mined.json", model=str(out / "model-r1" / "final"),
                                           config=TrainConfig(out=str(out / "model-r2"), max_steps=args.mined_steps, **common))
    mined = dense_index(str(out / "model-r2" / "final"), corpus, out, "r2")
    report["top_k_accuracy"]["trained+mined"] = evaluate(mined, held_questions, "trained+mined", out)

    write_json(out / "results.json", report)
    lines = [f"# Training on SQuAD articles, evaluated on {len(held_titles)} held-out articles ({len(held_questions)} questions)",
             "", f"Corpus: {len(store):,} passages (SQuAD dev articles + wiki-vital). Train examples: {len(examples)}.", "",
             "| retriever | top-1 | top-5 | top-20 | top-100 |", "|---|---|---|---|---|"]
    for name, acc in report["top_k_accuracy"].items():
        lines.append(f"| {name} | " + " | ".join(f"{acc[k]:.1f}" for k in ("1", "5", "20", "100")) + " |")
    for key in ("train", "train_mined"):
        t = report[key]
        lines.append(f"\n{key}: {t['steps']} steps of {args.batch_size} questions in {t['seconds']:.0f} s "
                     f"({t['questions_per_second']:.1f} questions/s), peak RSS {t['peak_rss_mb']:.0f} MB")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

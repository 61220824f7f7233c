"""Train the dual encoder on SQuAD articles, evaluate on held-out articles of the mini-Wikipedia corpus.

    python -m benchmarks training [--steps 100] [--mined-steps 60] [--batch-size 32]

Reads the corpus, BM25 index and default-model index of the retrieval suite (``--corpus``; made there if missing). The SQuAD questions are split by article (every 4th article with
questions is held out); training data comes from ``build-train`` (gold positives, BM25 hard negatives).
Reports top-1/5/20/100 on the held-out questions for BM25, the untrained model, the trained model and the
model after one round of self-mined hard negatives, plus training throughput and peak memory.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import densepr
from benchmarks.harness import SQUAD, cpu_line, mini_wiki, parser, publish, split_squad, table
from densepr import pipeline, training
from densepr.dense.loading import DEFAULT_MODEL
from densepr.train import (
    TrainConfig,
    build_training_data,
    mine_hard_negatives,
    read_training_data,
    squad_gold_rows,
    write_training_data,
)

SMOKE = ["--steps", "2", "--mined-steps", "1", "--batch-size", "4", "--articles", "3", "--questions", "40", "--backend", "torch"]


def evaluate(searcher: densepr.Searcher, questions, name: str, out: Path) -> dict:
    results = searcher.results(questions, k=100)
    densepr.write_results(out / f"heldout.{name}.json", results)
    acc = densepr.top_k_accuracy(results)
    print(name, acc, flush=True)
    return acc


def dense_index(model: str, corpus: Path, out: Path, name: str, backend: str) -> densepr.Searcher:
    if not (out / f"{name}-index" / "meta.json").is_file():
        pipeline.encode(passages=corpus / "psgs_w100.tsv", out=out / f"{name}-emb", model=model, backend=backend, progress=False)
        pipeline.build_index(embeddings=out / f"{name}-emb", out=out / f"{name}-index")
    return densepr.open_searcher(index=str(out / f"{name}-index"), backend=backend)


def main() -> None:
    p = parser(__doc__, "training")
    p.add_argument("--corpus", default="benchmarks/out/retrieval", help="the retrieval suite's --out")
    p.add_argument("--articles", type=int, help="when the corpus is made here: the first N articles of each source")
    p.add_argument("--questions", type=int, help="the first N train and held-out questions (default: all)")
    p.add_argument("--backend", default="auto", help="the trained models' encoding backend (default: auto)")
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--mined-steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-5)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    corpus, out = mini_wiki(Path(args.corpus), args.articles), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    store = densepr.PassageStore(corpus / "psgs_w100.tsv")
    bm25 = densepr.open_searcher(index=str(corpus / "bm25"))
    train_squad, held_squad, held_titles = split_squad(SQUAD, out)
    held_questions = densepr.read_questions(held_squad)[: args.questions]
    report: dict = {"corpus_passages": len(store), "heldout_articles": held_titles, "heldout_questions": len(held_questions),
                    "config": vars(args), "top_k_accuracy": {}}

    if not (out / "train.json").is_file():
        gold = squad_gold_rows(train_squad, store)
        examples, stats = build_training_data(densepr.read_questions(train_squad)[: args.questions], bm25, gold, progress=False)
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
    trained = dense_index(str(out / "model-r1" / "final"), corpus, out, "r1", args.backend)
    report["top_k_accuracy"]["trained"] = evaluate(trained, held_questions, "trained", out)

    start = time.perf_counter()
    mined_examples, report["mine_audit"] = mine_hard_negatives(examples, trained, progress=False)
    write_training_data(out / "train-mined.json", mined_examples)
    report["mine_seconds"] = round(time.perf_counter() - start, 1)
    report["train_mined"] = training.train(train=out / "train-mined.json", model=str(out / "model-r1" / "final"),
                                           config=TrainConfig(out=str(out / "model-r2"), max_steps=args.mined_steps, **common))
    mined = dense_index(str(out / "model-r2" / "final"), corpus, out, "r2", args.backend)
    report["top_k_accuracy"]["trained+mined"] = evaluate(mined, held_questions, "trained+mined", out)

    rows = [[name, *(f"{acc[k]:.1f}" for k in ("1", "5", "20", "100"))] for name, acc in report["top_k_accuracy"].items()]
    lines = [f"## Training on SQuAD articles, evaluated on {len(held_titles)} held-out articles ({len(held_questions)} questions)",
             "", f"{cpu_line()}. Corpus: {len(store):,} passages. Train examples: {len(examples)}.", "",
             *table(["retriever", "top-1", "top-5", "top-20", "top-100"], rows)]
    for key in ("train", "train_mined"):
        t = report[key]
        lines.append(f"\n{key}: {t['steps']} steps of {args.batch_size} questions in {t['seconds']:.0f} s "
                     f"({t['questions_per_second']:.1f} questions/s), peak RSS {t['peak_rss_mb']:.0f} MB")
    publish("training", args, report, "\n".join(lines))


if __name__ == "__main__":
    main()

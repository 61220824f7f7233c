"""The Multi recipe: one retriever trained on five shared QA sets at once, self-mined, evaluated per set.

    python -m recipes.multi_recipe [--corpus benchmarks/out/retrieval] [--out benchmarks/out/multi] [--rounds 1]
        [--model START_MODEL] [--data ../shared/data]

Needs the corpus and BM25 index of ``benchmarks.retrieval`` (and its zero-shot flat index for the
zero-shot row, which is left out when that index is absent). With ``--model`` (a larger start model, say
all-mpnet-base-v2 on a GPU), the start model's own zero-shot accuracy is a row too. Splits:

- SQuAD dev: by article (``benchmarks.harness.split_squad``: every 4th article held out), gold positives;
- NQ-open dev (even-numbered lines; the odd ones stay the reader card's test), EfficientQA dev, CuratedTREC train
  (regex answers) and WebQuestions train: by question, line i to test when i % 5 == 0, to dev when i % 5 == 1,
  else to training (distant supervision over the mini-Wikipedia; ``--dense-positives``: BM25's top 100, then the
  start model's).

Then the project's own commands: one ``build-train`` over the five training files (CuratedTREC's examples record
regex matching, which mining then uses), ``self-train`` (train, encode, index, mine with the false-negative audit,
train again; ``--keep-old-negatives``: the mined negatives join the BM25 ones), an index of the final model, and
``tune-hybrid``'s λ on the dev questions of all sets. Reports top-1/5/20/100 on every test set for BM25, the
zero-shot default, the model after round 0 (trained), after the last round (trained+mined) and the hybrid; writes
``results.json`` and ``report.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from benchmarks.harness import DATA, split_squad

import densepr
from densepr import pipeline, training
from densepr.fileio import write_json
from densepr.retrieve.hybrid import HybridRetriever, tune_lambda
from densepr.self_train import self_train
from densepr.train import TrainConfig

SETS = {  # name: (file under the shared data, match mode, lines used)
    "nq": ("nq-open/NQ-open.dev.jsonl", "string", slice(0, None, 2)),
    "efficientqa": ("nq-open/NQ-open.efficientqa.dev.1.1.jsonl", "string", slice(None)),
    "curatedtrec": ("curatedtrec/CuratedTrec-train.txt", "regex", slice(None)),
    "webquestions": ("webquestions/WebQuestions-train.txt", "string", slice(None)),
}
KS = ("1", "5", "20", "100")


def split_sets(out: Path, data: Path = DATA) -> dict[str, dict[str, Path]]:
    """Train / dev / test files per set (SQuAD by article; dev: the first 300 questions of its train articles)."""
    splits: dict[str, dict[str, Path]] = {}
    train_squad, held_squad, _ = split_squad(data / "squad/squad-dev-v1.1.open.json", out)
    (out / "squad").mkdir(exist_ok=True)
    squad_dev = out / "squad" / "dev.jsonl"
    squad_dev.write_text("".join(json.dumps({"question": q.text, "answer": q.answers}) + "\n"
                                 for q in densepr.read_questions(train_squad)[:300]), encoding="utf-8")
    splits["squad"] = {"train": train_squad, "dev": squad_dev, "test": held_squad}
    for name, (file, _, lines) in SETS.items():
        rows = (data / file).read_text(encoding="utf-8").splitlines()[lines]
        folder = out / name
        folder.mkdir(exist_ok=True)
        suffix = Path(file).suffix
        parts = {"test": rows[0::5], "dev": rows[1::5], "train": [r for i, r in enumerate(rows) if i % 5 > 1]}
        splits[name] = {}
        for part, chosen in parts.items():
            path = folder / f"{name}{suffix}" if part == "train" else folder / f"{part}{suffix}"
            path.write_text("\n".join(chosen) + "\n", encoding="utf-8")
            splits[name][part] = path
    return splits


def accuracy(searcher: densepr.Searcher, questions: list, match: str) -> dict[str, float]:
    return {k: round(v, 1) for k, v in densepr.top_k_accuracy(searcher.results(questions, k=100, match=match)).items() if k in KS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="benchmarks/out/retrieval", help="output folder of benchmarks.retrieval")
    parser.add_argument("--out", default="benchmarks/out/multi")
    parser.add_argument("--rounds", type=int, default=1, help="self-mining rounds after the first training")
    parser.add_argument("--max-steps", type=int, default=140, help="training steps per round (epochs as needed)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-5)
    parser.add_argument("--sampling", default="proportional")
    parser.add_argument("--batching", default="per-source")
    parser.add_argument("--lams", default="1,3,10,20,30,50,100")
    parser.add_argument("--keep-old-negatives", action="store_true", help="mined negatives join the BM25 ones")
    parser.add_argument("--dense-positives", action="store_true",
                        help="distant supervision also searches the start model's zero-shot index for positives")
    parser.add_argument("--attention-dropout", type=float, default=TrainConfig.attention_dropout)
    parser.add_argument("--save-every", type=int, default=50, help="checkpoint every N steps")
    parser.add_argument("--model", default=None, help="start model (default: the default model)")
    parser.add_argument("--data", default=str(DATA), help="the shared data folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    corpus, out = Path(args.corpus), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    psgs = corpus / "psgs_w100.tsv"
    splits = split_sets(out, Path(args.data))
    match = {"squad": "string", **{n: m for n, (_, m, _) in SETS.items()}}
    report: dict = {"config": vars(args), "seconds": {}, "device": device_name()}
    began = time.perf_counter()

    start = out / "start" / "index" if args.model else corpus / "flat"
    if args.model and not (start / "meta.json").is_file():
        pipeline.encode(passages=psgs, out=start.parent / "emb", model=args.model, progress=False)
        pipeline.build_index(embeddings=start.parent / "emb", out=start)
    train_file = out / "train.json"
    if not train_file.is_file():
        report["build_train"] = training.build_train(questions=[s["train"] for s in splits.values()],
                                                     match=[match[n] for n in splits], passages=psgs, bm25=corpus / "bm25",
                                                     out=train_file, dense_index=start if args.dense_positives else None)
    report["seconds"]["build_train"] = round(time.perf_counter() - began, 1)
    config = TrainConfig(out=str(out / "run"), max_steps=args.max_steps, epochs=1000, batch_size=args.batch_size, lr=args.lr,
                         warmup_steps=10, save_every=args.save_every, sampling=args.sampling, batching=args.batching,
                         attention_dropout=args.attention_dropout)
    report["self_train"] = self_train(train=train_file, passages=psgs, config=config, rounds=args.rounds, model=args.model,
                                      keep_old=args.keep_old_negatives, progress=False)
    report["seconds"]["self_train"] = round(time.perf_counter() - began, 1)
    final = out / "run" / f"round-{args.rounds}"
    if not (final / "index" / "meta.json").is_file():
        pipeline.encode(passages=psgs, out=final / "emb", model=str(final / "model" / "final"), progress=False)
        pipeline.build_index(embeddings=final / "emb", out=final / "index")

    searchers = {"bm25": densepr.open_searcher(index=str(corpus / "bm25"))}
    if (corpus / "flat" / "meta.json").is_file():
        searchers["zero-shot"] = densepr.open_searcher(index=str(corpus / "flat"))
    if args.model:
        searchers["start zero-shot"] = densepr.open_searcher(index=str(start))
    searchers["trained"] = densepr.open_searcher(index=str(out / "run" / "round-0" / "index"))
    searchers["trained+mined"] = densepr.open_searcher(index=str(final / "index"))
    tests = {name: densepr.read_questions(split["test"]) for name, split in splits.items()}
    report["top_k_accuracy"] = {name: {"questions": len(qs)} for name, qs in tests.items()}

    def score(retriever: str, searcher: densepr.Searcher) -> None:  # printed as it goes: a cut-off run keeps its rows
        for name, questions in tests.items():
            report["top_k_accuracy"][name][retriever] = accuracy(searcher, questions, match[name])
        print(retriever, {name: table[retriever] for name, table in report["top_k_accuracy"].items()}, flush=True)

    for retriever, searcher in searchers.items():
        score(retriever, searcher)
    hybrid = HybridRetriever(searchers["bm25"].retriever, searchers["trained+mined"].retriever, depth=1000)
    dev = [q for n, s in splits.items() for q in densepr.read_questions(s["dev"]) if match[n] == "string"]
    tuned = tune_lambda(hybrid, dev, searchers["bm25"].store, [float(x) for x in args.lams.split(",")], ks=(20, 100))
    report["lam"] = tuned["best"]
    score("hybrid", densepr.open_searcher(kind="hybrid", index=str(final / "index"), bm25_index=str(corpus / "bm25"),
                                          lam=tuned["best"], depth=1000))
    report["seconds"]["total"] = round(time.perf_counter() - began, 1)
    write_json(out / "results.json", report)
    write_report(out, report)


def device_name() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def write_report(out: Path, r: dict) -> None:
    c = r["config"]
    lines = ["# Multi: one retriever on five shared QA sets, self-mined", "",
             f"{c['max_steps']} steps of {c['batch_size']} questions per round, {c['rounds']} self-mining round(s), "
             f"sampling {c['sampling']}, batching {c['batching']}, lr {c['lr']:g}; hybrid λ = {r['lam']:g} (dev questions "
             f"of all string-matched sets). Start model {c.get('model') or 'the default'}; wall time "
             f"{r['seconds']['total']:.0f} s on {r.get('device', 'cpu')}.", ""]
    for name, table in r["top_k_accuracy"].items():
        lines += [f"## {name} ({table['questions']} test questions)", "", "| retriever | top-1 | top-5 | top-20 | top-100 |",
                  "|---|---|---|---|---|"]
        lines += [f"| {k} | " + " | ".join(f"{v[x]:.1f}" for x in KS) + " |" for k, v in table.items() if k != "questions"]
        lines.append("")
    for entry in r["self_train"]["rounds"]:
        if "mine_audit" in entry:
            a = entry["mine_audit"]
            lines.append(f"Round {entry['round']} mining audit: {a['kept']} negatives kept for {a['examples']} examples; "
                         f"skipped {a['skipped_answer']} holding an answer and {a['skipped_margin']} scoring above the "
                         f"positive; {a['examples_unchanged']} examples kept their old negatives.")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

"""Open-domain QA on mini-Wikipedia: BM25, dense and hybrid retrieval feeding a reader trained on train articles.

    python -m benchmarks qa [--max-steps 0] [--passages-per-question 4] [--heldout-questions 400]

Reads the corpus, BM25 index and flat default-model index of the retrieval suite (``--corpus``; made there if
missing). SQuAD dev is split by article (every 4th article held out). λ of the hybrid (BM25 + λ·dense over the top ``--depth`` of each) is chosen on ``--dev-questions`` questions
of the train articles with :func:`densepr.retrieve.hybrid.tune_lambda`; the reader is trained for one epoch (or
``--max-steps``) on BM25 top-100 results of the other train questions, each question's positives its SQuAD gold
passage and the answer passages of its article (DPR's gold-page positives), then reads the top k (1, 5, 20, 50) passages of
each retriever for held-out questions. Reports retrieval top-k, EM per k, reader training time and per-question
latency.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
import statistics
import time
from pathlib import Path

from tqdm.auto import tqdm

import densepr
from benchmarks.harness import SQUAD, cpu_line, mini_wiki, parser, publish, split_squad
from densepr import training
from densepr.dense.loading import DEFAULT_MODEL
from densepr.fileio import write_json
from densepr.read import Reader, ReaderConfig, answers_at_k, predict, read_passages
from densepr.retrieve.hybrid import HybridRetriever, tune_lambda
from densepr.train import TrainingExample, squad_gold_rows, write_training_data

RETRIEVERS = ("bm25", "dense", "hybrid", "hybrid-rrf")
READ_BY = ("bm25", "dense", "hybrid")
GOLD = "gold passage only"
SMOKE = ["--articles", "3", "--questions", "60", "--dev-questions", "10", "--heldout-questions", "8", "--max-steps", "1",
         "--batch-size", "2", "--passages-per-question", "2", "--ks", "1,5", "--lams", "1,10", "--latency-questions", "2",
         "--depth", "50", "--warmup-steps", "0", "--reader-depth", "20"]
log = logging.getLogger("densepr")


def parse_args():
    p = parser(__doc__, "qa")
    p.add_argument("--corpus", default="benchmarks/out/retrieval", help="the retrieval suite's --out")
    p.add_argument("--articles", type=int, help="when the corpus is made here: the first N articles of each source")
    p.add_argument("--questions", type=int, help="the first N train and held-out questions (default: all)")
    p.add_argument("--dev-questions", type=int, default=300, help="train-article questions used to choose λ")
    p.add_argument("--lams", default="0.3,1,3,5,10,20,30,50,100,300", help="λ grid (MiniLM scores are cosines in [-1, 1])")
    p.add_argument("--depth", type=int, default=2000, help="hybrid candidates taken from each retriever")
    p.add_argument("--passages-per-question", type=int, default=4, help="reader m (paper: 24; smaller for CPU)")
    p.add_argument("--batch-size", type=int, default=8, help="reader training questions per step")
    p.add_argument("--max-steps", type=int, default=0, help="reader training steps (0: one epoch)")
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--warmup-steps", type=int, default=70)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--reader-init", default=DEFAULT_MODEL, help="encoder or saved reader to start from")
    p.add_argument("--reader-depth", type=int, default=100, help="BM25 top-N the reader's negatives are sampled from")
    p.add_argument("--ks", default="1,5,20,50", help="passages read per question")
    p.add_argument("--heldout-questions", type=int, default=400, help="held-out questions read (0: all)")
    p.add_argument("--latency-questions", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def heldout_retrieval(hybrid: HybridRetriever, questions: list, store, lam: float, chunk: int = 128) -> dict[str, list[dict]]:
    """Top-100 DPR results of every retriever; the depth-``depth`` candidate lists are fetched once per chunk."""
    rrf = HybridRetriever(hybrid.bm25, hybrid.dense, hybrid.depth, fusion="rrf")
    results: dict[str, list[dict]] = {name: [] for name in RETRIEVERS}
    for start in range(0, len(questions), chunk):
        part = questions[start : start + chunk]
        candidates = hybrid.candidates([q.text for q in part])
        hits = {"bm25": [c.bm25.hits(100) for c in candidates], "dense": [c.dense.hits(100) for c in candidates],
                "hybrid": [hybrid.fuse(c, 100, lam=lam) for c in candidates],
                "hybrid-rrf": [rrf.fuse(c, 100) for c in candidates]}
        for name in RETRIEVERS:
            results[name] += densepr.build_results(part, hits[name], store, hybrid.ids)
    return results


def read_heldout(reader: Reader, results: dict[str, list[dict]], ks: list[int]) -> dict[str, list[dict]]:
    """Predictions at each k for every retriever; a passage in several retrievers' top ``max(ks)`` is read once."""
    names = list(results)
    out: dict[str, list[dict]] = {name: [] for name in names}
    for entries in tqdm(list(zip(*results.values())), unit="question", desc="read"):
        tops = [entry["ctxs"][: max(ks)] for entry in entries]
        union = list({c["id"]: c for top in tops for c in top}.values())
        position = {c["id"]: i for i, c in enumerate(union)}
        readings = read_passages(reader, entries[0]["question"], union)
        for name, entry, top in zip(names, entries, tops):
            mine = [dataclasses.replace(readings[position[c["id"]]], index=i) for i, c in enumerate(top)]
            per_k = answers_at_k(mine, top, entry["answers"], ks)
            out[name].append({"question": entry["question"], "answers": entry["answers"], "predictions": per_k})
    return out


def latency(reader: Reader, hybrid: HybridRetriever, store, questions: list, lam: float, k: int = 20) -> dict:
    """One question at a time: hybrid retrieval of the top 100, then reading the top ``k``."""
    hybrid.lam = lam
    retrieve_s, read_s = [], []
    for q in questions:
        t0 = time.perf_counter()
        hits = hybrid.search([q.text], k=100)[0]
        ctxs = [store[h.row].ctx() for h in hits[:k]]
        t1 = time.perf_counter()
        predict(reader, q.text, ctxs)
        read_s.append(time.perf_counter() - t1)
        retrieve_s.append(t1 - t0)
    total = [a + b for a, b in zip(retrieve_s, read_s)]
    return {"questions": len(questions), "k": k, "retrieve_ms": 1000 * statistics.mean(retrieve_s),
            "read_ms": 1000 * statistics.mean(read_s), "total_ms_mean": 1000 * statistics.mean(total),
            "total_ms_median": 1000 * statistics.median(total)}


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", force=True)
    corpus, out = mini_wiki(Path(args.corpus), args.articles), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ks, lams = [int(k) for k in args.ks.split(",")], [float(x) for x in args.lams.split(",")]
    rng = random.Random(args.seed)
    store = densepr.PassageStore(corpus / "psgs_w100.tsv")
    bm25 = densepr.BM25Retriever.load(corpus / "bm25")
    hybrid = HybridRetriever(bm25, densepr.DenseRetriever.load(corpus / "flat"), depth=args.depth)
    train_squad, held_squad, held_titles = split_squad(SQUAD, out)
    train_qs, held_qs = (densepr.read_questions(f)[: args.questions] for f in (train_squad, held_squad))
    dev_ids = set(rng.sample(range(len(train_qs)), args.dev_questions))
    dev_qs = [q for i, q in enumerate(train_qs) if i in dev_ids]
    reader_qs = [q for i, q in enumerate(train_qs) if i not in dev_ids]
    report: dict = {"corpus_passages": len(store), "heldout_articles": held_titles, "config": vars(args),
                    "questions": {"train": len(train_qs), "dev": len(dev_qs), "reader_train": len(reader_qs),
                                  "heldout": len(held_qs)}}

    # 1. λ on the dev questions of the train articles (no normalisation, as the paper; z-score for comparison)
    start = time.perf_counter()
    report["tune"] = {}
    for norm in (None, "zscore"):
        hybrid.normalize = norm
        tuned = tune_lambda(hybrid, dev_qs, store, lams, ks=(20, 100))
        report["tune"][str(norm)] = {"best": tuned["best"], "accuracy": {str(k): v for k, v in tuned["accuracy"].items()}}
        print("tune", norm, tuned["best"], tuned["accuracy"][tuned["best"]], flush=True)
    def dev_score(norm: str | None) -> tuple[float, ...]:
        tuned = report["tune"][str(norm)]
        return tuple(tuned["accuracy"][str(tuned["best"])].values())

    best_norm = max((None, "zscore"), key=dev_score)
    hybrid.normalize, lam = best_norm, report["tune"][str(best_norm)]["best"]
    report["chosen"] = {"lam": lam, "normalize": best_norm, "tune_seconds": round(time.perf_counter() - start, 1)}

    # 2. held-out retrieval with every retriever (top-k accuracy on all held-out questions)
    start = time.perf_counter()
    held = heldout_retrieval(hybrid, held_qs, store, lam)
    report["heldout_retrieval_seconds"] = round(time.perf_counter() - start, 1)
    report["top_k_accuracy"] = {name: densepr.top_k_accuracy(held[name]) for name in RETRIEVERS}
    print("top-k", json.dumps(report["top_k_accuracy"]), flush=True)

    # 3. the reader, trained on BM25 results of the other train-article questions, positives from their gold pages
    train_results, gold = out / "train.bm25.json", out / "train.gold.json"
    if not train_results.is_file():
        hits = bm25.search([q.text for q in reader_qs], k=100)
        densepr.write_results(train_results, densepr.build_results(reader_qs, hits, store, bm25.ids))
    rows = squad_gold_rows(train_squad, store)
    write_training_data(gold, [TrainingExample(q.text, q.answers, [store[rows[q.id]]]) for q in reader_qs if q.id in rows])
    config = ReaderConfig(out=str(out / "reader"), passages_per_question=args.passages_per_question,
                          batch_size=args.batch_size, max_steps=args.max_steps, lr=args.lr, warmup_steps=args.warmup_steps,
                          save_every=100, seed=args.seed)
    report["reader_train"] = training.train_reader(results=train_results, config=config, model=args.reader_init,
                                                   max_length=args.max_length, depth=args.reader_depth, gold=gold)
    if report["reader_train"]["steps"] == 0 and (out / "reader_train.json").is_file():  # already trained by an earlier run
        report["reader_train"] = json.loads((out / "reader_train.json").read_text())
    write_json(out / "reader_train.json", report["reader_train"])
    reader = Reader.load(out / "reader")

    # 4. EM on held-out questions for each retriever, the reader seeing only the top k
    subset = sorted(rng.sample(range(len(held_qs)), args.heldout_questions)) if args.heldout_questions else range(len(held_qs))
    held_rows = squad_gold_rows(held_squad, store)  # reading only the gold passage: the reader's own ceiling
    gold_only = [{"question": q.text, "answers": q.answers, "ctxs": [store[held_rows[q.id]].ctx()] if q.id in held_rows else []}
                 for q in (held_qs[i] for i in subset)]
    start = time.perf_counter()
    by = {name: [held[name][i] for i in subset] for name in READ_BY}
    predictions = read_heldout(reader, dict(by, **{GOLD: gold_only}), ks)
    report["read_seconds"] = round(time.perf_counter() - start, 1)
    report["exact_match"] = {}
    for name, preds in predictions.items():
        write_json(out / f"heldout.{name}.predictions.json", preds, indent=None)
        report["exact_match"][name] = {str(k): 100.0 * sum(p["predictions"][j]["exact_match"] for p in preds) / len(preds)
                                       for j, k in enumerate(ks)}
        print("EM", name, report["exact_match"][name], flush=True)
    report["exact_match_questions"] = len(subset)
    report["latency"] = latency(reader, hybrid, store, [held_qs[i] for i in list(subset)[: args.latency_questions]], lam)
    publish("qa", args, report, qa_report(report, ks))


def qa_report(r: dict, ks: list[int]) -> str:
    t, c = r["reader_train"], r["config"]
    tune = r["tune"][str(r["chosen"]["normalize"])]
    q = r["questions"]
    lines = [f"## Open-domain QA on mini-Wikipedia ({r['corpus_passages']:,} passages)", "",
             f"SQuAD dev split by article: {len(r['heldout_articles'])} held-out articles ({q['heldout']} questions); "
             f"train articles: {q['train']} questions ({q['dev']} for λ, {q['reader_train']} for the reader). "
             f"{cpu_line()}.", "",
             "### Retrieval on held-out questions (top-k accuracy, %)", "",
             "| retriever | top-1 | top-5 | top-20 | top-100 |", "|---|---|---|---|---|"]
    for name, acc in r["top_k_accuracy"].items():
        lines.append(f"| {name} | " + " | ".join(f"{acc[k]:.1f}" for k in ("1", "5", "20", "100")) + " |")
    lines += ["", f"hybrid: BM25 + λ·dense over the union of each retriever's top {c['depth']}, λ = {r['chosen']['lam']:g}, "
              f"normalisation {r['chosen']['normalize']}, chosen on the dev questions (top-20, then top-100); "
              "hybrid-rrf: reciprocal rank fusion (k=60) of the same lists.", "",
              "λ on dev (top-20 / top-100): "
              + ", ".join(f"{lam}: {a['20']:.1f} / {a['100']:.1f}" for lam, a in tune["accuracy"].items()),
              "", f"### Reader exact match on {r['exact_match_questions']} held-out questions (%)", "",
              "| retriever | " + " | ".join(f"k={k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    for name, em in r["exact_match"].items():
        lines.append(f"| {name} | " + " | ".join(f"{em[str(k)]:.1f}" for k in ks) + " |")
    lat = r["latency"]
    lines += ["", f"'{GOLD}': the reader given only the passage SQuAD's answer comes from (reading comprehension, "
              "no retrieval): its ceiling at this training.", "",
              f"Reader: from {c.get('reader_init', DEFAULT_MODEL)}, m = {c['passages_per_question']} passages per question "
              f"(paper: 24, too slow on this CPU), negatives sampled from the BM25 top {c.get('reader_depth', 100)}, "
              f"lr {c['lr']:g}, {t['steps']} steps of {c['batch_size']} questions ({t['examples']} training questions with a "
              f"positive, {t['data']['gold']} of them with their SQuAD gold passage as positive, as DPR's gold-page "
              f"positives; {t['data']['no_positive']} without one, {t['data']['no_answer_span']} without an answer span), "
              f"trained in {t['seconds']:.0f} s ({t['questions_per_second']:.2f} questions/s); loss {t['loss_first']:.2f} -> "
              f"{t['loss_last']:.2f}.", "",
              f"Latency per question (one at a time, {lat['questions']} questions): "
              f"hybrid retrieval {lat['retrieve_ms']:.0f} ms + "
              f"reading the top {lat['k']} passages {lat['read_ms']:.0f} ms = {lat['total_ms_mean']:.0f} ms mean, "
              f"{lat['total_ms_median']:.0f} ms median. Reading the top {max(ks)} of every retriever for "
              f"{r['exact_match_questions']} questions (each passage once) took {r['read_seconds']:.0f} s."]
    return "\n".join(lines)


if __name__ == "__main__":
    main()

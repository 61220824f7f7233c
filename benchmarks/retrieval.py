"""Retrieval on the mini-Wikipedia (SQuAD dev articles + wiki-vital): BM25 against the default dense model.

    python -m benchmarks retrieval [--articles N] [--questions N] [--out benchmarks/out/retrieval]

Corpus size, BM25 build, encoding and index build times, search throughput and top-1/5/20/100 accuracy on SQuAD dev,
NQ-open dev and CuratedTREC (regex). The corpus and indexes under ``--out`` are reused by a later run and by the
training, QA, backends, planner and peers suites (their ``--corpus``).
"""

from __future__ import annotations

from pathlib import Path

import densepr
from benchmarks.harness import DATA, cpu_line, mini_wiki, parser, publish, table, timed
from densepr import pipeline

SMOKE = ["--articles", "3", "--questions", "20"]
QUESTION_SETS = {  # name: (file under data, match mode)
    "squad-dev": ("squad/squad-dev-v1.1.open.json", "string"),
    "nq-open-dev": ("nq-open/NQ-open.dev.jsonl", "string"),
    "curatedtrec-train": ("curatedtrec/CuratedTrec-train.txt", "regex"),
}


def main() -> None:
    p = parser(__doc__, "retrieval")
    p.add_argument("--articles", type=int, help="the first N articles of each source (default: all)")
    p.add_argument("--questions", type=int, help="the first N questions of each set (default: all)")
    p.add_argument("--model", help="passage and question encoder (default: offline all-MiniLM-L6-v2)")
    args = p.parse_args()
    out = Path(args.out)

    _, build_s = timed(mini_wiki, out, args.articles, args.model)
    store = densepr.PassageStore(out / "psgs_w100.tsv")
    _, bm25_s = timed(pipeline.build_bm25, passages=out / "psgs_w100.tsv", out=out / "bm25-timed", progress=False)
    r: dict = {"passages": len(store), "bm25_build_s": round(bm25_s, 2), "corpus_build_s": round(build_s, 1), "sets": {}}
    searchers = {"bm25": densepr.open_searcher(index=str(out / "bm25")), "dense": densepr.open_searcher(index=str(out / "flat"))}
    for name, (rel, match) in QUESTION_SETS.items():
        if not (DATA / rel).is_file():
            continue
        questions = densepr.read_questions(DATA / rel)[: args.questions]
        for kind, searcher in searchers.items():
            hits, seconds = timed(searcher.search, [q.text for q in questions], 100)
            results = densepr.build_results(questions, hits, searcher.store, searcher.ids, match)
            r["sets"][f"{name}/{kind}"] = {"questions": len(questions), "match": match,
                                           "top_k": densepr.top_k_accuracy(results),
                                           "questions_per_s": round(len(questions) / seconds, 1)}
    rows = [[*key.split("/"), e["questions"], *(f"{e['top_k'][k]:.1f}" for k in ("1", "5", "20", "100")), e["questions_per_s"]]
            for key, e in r["sets"].items()]
    text = "\n".join([f"## Retrieval on the mini-Wikipedia ({len(store):,} passages)", "", cpu_line() + ".", "",
                      *table(["questions", "retriever", "n", "top-1", "top-5", "top-20", "top-100", "questions/s"], rows), "",
                      f"BM25 build: {r['bm25_build_s']} s. Corpus, indexes and vectors (when not reused): {r['corpus_build_s']} s."])
    publish("retrieval", args, r, text)


if __name__ == "__main__":
    main()

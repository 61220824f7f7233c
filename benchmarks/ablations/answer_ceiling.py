"""How many test questions of the Multi recipe's sets any retriever could answer over the mini-Wikipedia.

    python -m benchmarks.ablations.answer_ceiling [--corpus benchmarks/out/retrieval] [--out benchmarks/out/ceiling] [--page]

For each held-out test set of :mod:`recipes.multi_recipe` (same splits), the share of questions with an answer in
at least one corpus passage under DPR's matching (string, or regex for CuratedTREC): no retriever's top-k can exceed
it. Beside it, BM25's and the zero-shot default's top-20 and top-100 (the corpus's ``bm25`` and ``flat`` indexes of
:mod:`benchmarks.retrieval`), and what the issue's "zero-shot + 8 points at top-20" asks as a share of the
ceiling. Writes ``results.json`` and ``report.md`` under ``--out`` (``--page``: section ``answer-ceiling`` of
``docs/results/history.md``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from recipes.multi_recipe import SETS, accuracy, split_sets

import densepr
from benchmarks.ablations._report import publish
from benchmarks.harness import DATA
from densepr.evaluate.answers import has_answer, tokenize


class CorpusAnswers:
    """Answers anywhere in a passage store: one joined token string (string mode), the texts one by one (regex)."""

    def __init__(self, store: densepr.PassageStore) -> None:
        texts = [store[row].text for row in range(len(store))]
        self.tokens = "\x01".join("\x00" + "\x00".join(tokenize(text)) + "\x00" for text in texts)
        self.texts = texts

    def contains(self, answers: list[str], match: str) -> bool:
        if match == "string":
            return any(tokens and "\x00" + "\x00".join(tokens) + "\x00" in self.tokens for tokens in map(tokenize, answers))
        return any(has_answer(answers, text, "regex") for text in self.texts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="benchmarks/out/retrieval", help="output folder of benchmarks.retrieval")
    parser.add_argument("--data", default=str(DATA), help="the shared data folder")
    parser.add_argument("--out", default="benchmarks/out/ceiling")
    parser.add_argument("--page", action="store_true", help="also write the report into docs/results/history.md")
    args = parser.parse_args()
    corpus, out = Path(args.corpus), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    splits = split_sets(Path(tempfile.mkdtemp()), Path(args.data))
    match = {"squad": "string", **{name: mode for name, (_, mode, _) in SETS.items()}}
    searchers = {"bm25": densepr.open_searcher(index=str(corpus / "bm25")),
                 "zero-shot": densepr.open_searcher(index=str(corpus / "flat"))}
    answers = CorpusAnswers(searchers["bm25"].store)
    sets: dict = {}
    for name, split in splits.items():
        questions = densepr.read_questions(split["test"])
        found = sum(answers.contains(q.answers, match[name]) for q in questions)
        row = {"questions": len(questions), "ceiling": round(100 * found / len(questions), 1)}
        row |= {who: accuracy(s, questions, match[name]) for who, s in searchers.items()}
        sets[name] = row
        print(name, row, flush=True)
    r = {"corpus_passages": len(searchers["bm25"].store), "sets": sets}
    publish(out, r, report(r), "answer-ceiling" if args.page else None)


def report(r: dict) -> str:
    lines = ["# How many test questions the mini-Wikipedia can answer", "",
             f"`python -m benchmarks.ablations.answer_ceiling`: the Multi recipe's test splits over {r['corpus_passages']:,} passages. "
             "Ceiling: the share of questions with an answer in at least one passage (DPR matching; regex for CuratedTREC). "
             "'+8 asks': the zero-shot default's top-20 plus 8 points (the issue's target for the NQ-style sets), and that as a share of the ceiling.", "",
             "| set | test questions | ceiling | BM25 top-20 / top-100 | zero-shot top-20 / top-100 | +8 asks | of the ceiling |",
             "|---|---|---|---|---|---|---|"]
    for name, s in r["sets"].items():
        asks = s["zero-shot"]["20"] + 8
        target = f"{asks:.1f} | {100 * asks / s['ceiling']:.0f}%" if name != "squad" else "- | -"  # NQ-style sets only
        lines.append(f"| {name} | {s['questions']} | {s['ceiling']:.1f} | {s['bm25']['20']:.1f} / {s['bm25']['100']:.1f} | "
                     f"{s['zero-shot']['20']:.1f} / {s['zero-shot']['100']:.1f} | {target} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

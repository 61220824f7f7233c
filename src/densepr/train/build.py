"""Build DPR training data: gold or distantly supervised positives, BM25 hard negatives, random negatives."""

from __future__ import annotations

import logging
import os
from collections import defaultdict

import numpy as np
from tqdm.auto import tqdm

from densepr.corpus.passages import Passage, PassageStore
from densepr.evaluate.answers import has_answer
from densepr.fileio import read_json
from densepr.hits import Hit
from densepr.questions import Question
from densepr.retrieve.searcher import Searcher
from densepr.train.data import TrainingExample

log = logging.getLogger(__name__)


def _word_index(text: str, char_offset: int) -> int:
    """Index of the whitespace word that holds ``text[char_offset]``."""
    prefix = text[:char_offset]
    n = len(prefix.split())
    return n - 1 if prefix and not prefix[-1].isspace() else n


def squad_gold_rows(squad_path: str | os.PathLike, store: PassageStore, words_per_passage: int = 100) -> dict[str, int]:
    """Question id → row of the passage holding its answer span, for a corpus made from this SQuAD file."""
    rows_by_title: dict[str, list[int]] = defaultdict(list)
    for row, p in enumerate(store):
        rows_by_title[p.title].append(row)
    gold: dict[str, int] = {}
    for article in read_json(squad_path)["data"]:
        rows = rows_by_title.get(" ".join(article["title"].replace("_", " ").split()), [])
        text, offset = " ".join(p["context"] for p in article["paragraphs"]), 0
        for par in article["paragraphs"]:
            context = par["context"]
            for qa in par.get("qas", []):
                answer = qa["answers"][0]
                idx = _word_index(text, offset + answer["answer_start"]) // words_per_passage
                for row in ([rows[idx]] if idx < len(rows) else []) + rows:
                    if has_answer([answer["text"]], store[row].text):
                        gold[qa["id"]] = row
                        break
            offset += len(context) + 1
    return gold


def build_training_data(questions: list[Question], bm25: Searcher,
                        gold: dict[str, int] | None = None, hard_negatives: int = 30, random_negatives: int = 10,
                        depth: int = 100, match: str = "string", seed: int = 0, progress: bool = True,
                        dense: Searcher | None = None) -> tuple[list[TrainingExample], dict[str, int]]:
    """DPR training examples and counts (``gold``, ``distant``, ``dropped`` questions; ``via_dense``: the distant
    positives that only ``dense`` found).

    Positive: the gold passage where given, else the best BM25 passage (of the top ``depth``) holding an
    answer, else (with ``dense``, a dense searcher over the same passages) the best such passage of the dense
    top ``depth``; questions with none are dropped. Hard negatives: top BM25 passages without an answer.
    """
    rng, store = np.random.default_rng(seed), bm25.store
    gold = gold or {}
    stats = {"gold": 0, "distant": 0, "via_dense": 0, "dropped": 0}
    examples = []
    batch = 256
    bar = tqdm(total=len(questions), desc="build-train", unit="q", disable=not progress)

    def rows_with_answer(q: Question, hits: list[Hit]) -> list[int]:
        return [h.row for h in hits if has_answer(q.answers, store[h.row].text, match)]

    for start in range(0, len(questions), batch):
        chunk = questions[start : start + batch]
        texts = [q.text for q in chunk]
        hits_of = bm25.search(texts, k=depth)
        answer_rows_of = [rows_with_answer(q, hits) for q, hits in zip(chunk, hits_of)]
        missed = [i for i, q in enumerate(chunk) if q.id not in gold and not answer_rows_of[i]]
        dense_positive: dict[int, int] = {}  # only the questions BM25 left without a positive are searched again
        if dense is not None and missed:
            for i, extra in zip(missed, dense.search([texts[i] for i in missed], k=depth)):
                found = rows_with_answer(chunk[i], extra)
                if found:
                    dense_positive[i] = found[0]
        for i, (q, hits, answer_rows) in enumerate(zip(chunk, hits_of, answer_rows_of)):
            bar.update(1)
            if q.id in gold:
                positive, stats["gold"] = gold[q.id], stats["gold"] + 1
            elif answer_rows or i in dense_positive:
                positive, stats["distant"] = answer_rows[0] if answer_rows else dense_positive[i], stats["distant"] + 1
                stats["via_dense"] += not answer_rows
            else:
                stats["dropped"] += 1
                continue
            excluded = set(answer_rows) | {positive}
            hard = [store[h.row] for h in hits if h.row not in excluded][:hard_negatives]
            randoms: list[Passage] = []
            for row in rng.choice(len(store), size=min(len(store), 3 * random_negatives), replace=False):
                if len(randoms) < random_negatives and row not in excluded and not has_answer(q.answers, store[int(row)].text, match):
                    randoms.append(store[int(row)])
            examples.append(TrainingExample(q.text, list(q.answers), [store[positive]], randoms, hard, match=match))
    bar.close()
    log.info("training examples: %d gold, %d distantly supervised (%d found by the dense index only), %d dropped "
             "(no answer in the top %d)", stats["gold"], stats["distant"], stats["via_dense"], stats["dropped"], depth)
    return examples, stats

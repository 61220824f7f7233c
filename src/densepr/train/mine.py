"""Iterated hard negatives: re-mine each example's negatives with a (trained) retriever."""

from __future__ import annotations

from collections.abc import Sequence

from tqdm.auto import tqdm

from densepr.evaluate.answers import has_answer
from densepr.retrieve.searcher import Searcher
from densepr.train.data import TrainingExample


def mine_hard_negatives(examples: Sequence[TrainingExample], searcher: Searcher, depth: int = 100, keep: int = 30,
                        match: str = "string", progress: bool = True) -> list[TrainingExample]:
    """Copies of ``examples`` whose hard negatives are the searcher's top passages without an answer."""
    out, store = [], searcher.store
    batch = 256
    for start in tqdm(range(0, len(examples), batch), desc="mine", disable=not progress):
        chunk = examples[start : start + batch]
        for ex, hits in zip(chunk, searcher.search([ex.question for ex in chunk], k=depth)):
            positive_ids = {p.id for p in ex.positives}
            hard = []
            for hit in hits:
                p = store[hit.row]
                if p.id not in positive_ids and not has_answer(ex.answers, p.text, match):
                    hard.append(p)
                if len(hard) == keep:
                    break
            out.append(TrainingExample(ex.question, ex.answers, ex.positives, ex.negatives, hard or ex.hard_negatives))
    return out

"""Iterated hard negatives: re-mine each example's negatives with a (trained) retriever, auditing false negatives."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from tqdm.auto import tqdm

from densepr.evaluate.answers import has_answer
from densepr.retrieve.searcher import Searcher
from densepr.train.data import TrainingExample


def positive_scores(searcher: Searcher, vectors: np.ndarray, examples: Sequence[TrainingExample],
                    row_of: dict[str, int]) -> list[float | None]:
    """Each example's score for its first positive under a dense searcher (``None``: the positive is not indexed)."""
    assert searcher.dense is not None
    rows = [row_of.get(ex.positives[0].id) for ex in examples]
    known = [i for i, r in enumerate(rows) if r is not None]
    scores: list[float | None] = [None] * len(examples)
    if known:
        stored = searcher.dense.index.vectors([row for row in rows if row is not None])
        for i, score in zip(known, np.einsum("ij,ij->i", vectors[known], stored)):
            scores[i] = float(score)
    return scores


def mine_hard_negatives(examples: Sequence[TrainingExample], searcher: Searcher, depth: int = 100, keep: int = 30,
                        match: str = "string", margin: float | None = 0.0, progress: bool = True,
                        keep_old: bool = False) -> tuple[list[TrainingExample], dict[str, int]]:
    """Copies of ``examples`` whose hard negatives are the searcher's top passages, less likely false negatives.

    A retrieved passage is skipped when it is a positive, when it holds an answer (matched as the example's
    ``match`` says, else as ``match``), or (a dense searcher, ``margin`` not ``None``) when it scores above the
    question's positive by more than ``margin``: a passage the trained model prefers to the labelled positive often
    answers the question too. With ``keep_old`` the mined negatives join the old ones (DPR's BM25 + DPR negatives);
    otherwise they replace them, and an example left with no negative keeps its old ones. Returns the examples and
    the audit: ``kept``, ``skipped_answer``, ``skipped_margin`` negatives and ``examples_unchanged``.
    """
    out, store = [], searcher.store
    audit = {"examples": len(examples), "kept": 0, "skipped_answer": 0, "skipped_margin": 0, "examples_unchanged": 0}
    by_score = margin is not None and searcher.kind == "dense"
    row_of = {pid: row for row, pid in enumerate(searcher.ids)} if by_score else {}
    batch = 256
    for start in tqdm(range(0, len(examples), batch), desc="mine", disable=not progress):
        chunk = examples[start : start + batch]
        questions = [ex.question for ex in chunk]
        vectors = searcher.encode(questions)
        ceilings: list[float | None] = [None] * len(chunk)
        if by_score and vectors is not None:
            ceilings = [None if s is None else s + float(margin or 0) for s in positive_scores(searcher, vectors, chunk, row_of)]
        for ex, hits, ceiling in zip(chunk, searcher.search(questions, k=depth, vectors=vectors), ceilings):
            positive_ids = {p.id for p in ex.positives}
            hard = []
            for hit in hits:
                p = store[hit.row]
                if p.id in positive_ids:
                    continue
                if has_answer(ex.answers, p.text, ex.match or match):
                    audit["skipped_answer"] += 1
                elif ceiling is not None and hit.score > ceiling:
                    audit["skipped_margin"] += 1
                else:
                    hard.append(p)
                    if len(hard) == keep:
                        break
            audit["kept"] += len(hard)
            audit["examples_unchanged"] += not hard
            if keep_old:
                mined = {p.id for p in hard}
                hard += [p for p in ex.hard_negatives if p.id not in mined]
            out.append(dataclasses.replace(ex, hard_negatives=hard or ex.hard_negatives))
    return out, audit

"""Retrieval metrics: DPR's top-k accuracy, and BEIR's nDCG@k / Recall@k from qrels."""

from __future__ import annotations

import csv
import math
import os
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from densepr.errors import DenseprError, at_line
from densepr.evaluate.answers import has_answer

DEFAULT_KS = (1, 5, 20, 100)


def top_k_accuracy(results: Sequence[Mapping[str, Any]], ks: Sequence[int] = DEFAULT_KS, match: str | None = None) -> dict[str, float]:
    """Percent of questions with an answer-bearing passage in the top k, for each k.

    ``results`` are DPR result entries (``answers``, ``ctxs``). With ``match`` set, ``has_answer`` is
    recomputed from each ctx's text; otherwise the stored ``has_answer`` flags are used.
    """
    if not results:
        raise DenseprError("no results to evaluate")
    hits = {k: 0 for k in ks}
    for i, entry in enumerate(results):
        try:
            ctxs = entry["ctxs"]
            flags = [has_answer(entry["answers"], c["text"], match) if match else bool(c["has_answer"]) for c in ctxs]
        except (KeyError, TypeError) as exc:
            raise DenseprError(f"result {i}: missing field {exc} (expected DPR result format)") from None
        first = next((rank for rank, f in enumerate(flags) if f), None)
        for k in ks:
            hits[k] += first is not None and first < k
    return {str(k): 100.0 * hits[k] / len(results) for k in ks}


def read_qrels(path: str | os.PathLike) -> dict[str, dict[str, int]]:
    """BEIR qrels TSV (``query-id corpus-id score``, with header) as ``{qid: {doc_id: grade}}``."""
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            rows = list(csv.reader(fh, delimiter="\t"))
    except FileNotFoundError:
        raise DenseprError(f"{path}: no such qrels file") from None
    except UnicodeDecodeError as exc:
        raise DenseprError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except csv.Error as exc:
        raise DenseprError(f"{path}: malformed TSV ({exc})") from None
    for lineno, row in enumerate(rows, 1):
        if lineno == 1 and row and not row[-1].lstrip("-").isdigit():
            continue  # header
        if not row:
            continue
        if len(row) < 3:
            raise at_line(path, lineno, "expected 'query-id<TAB>corpus-id<TAB>score'")
        try:
            qrels[row[0]][row[1]] = int(row[2])
        except ValueError:
            raise at_line(path, lineno, f"score {row[2]!r} is not an integer") from None
    return dict(qrels)


def beir_metrics(run: dict[str, list[str]], qrels: dict[str, dict[str, int]], ndcg_k: int = 10, recall_k: int = 100) -> dict[str, float]:
    """Mean nDCG@k and Recall@k over the judged queries of ``run`` (``{qid: ranked doc ids}``)."""
    ndcgs, recalls = [], []
    for qid, judged in qrels.items():
        relevant = {d: g for d, g in judged.items() if g > 0}
        if qid not in run or not relevant:
            continue
        ranked = run[qid]
        dcg = sum((2 ** relevant.get(d, 0) - 1) / math.log2(i + 2) for i, d in enumerate(ranked[:ndcg_k]))
        ideal = sorted(relevant.values(), reverse=True)[:ndcg_k]
        idcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
        ndcgs.append(dcg / idcg)
        recalls.append(len(set(ranked[:recall_k]) & relevant.keys()) / len(relevant))
    if not ndcgs:
        raise DenseprError("no query of the results has relevant documents in the qrels (do the ids match?)")
    return {f"ndcg@{ndcg_k}": 100.0 * sum(ndcgs) / len(ndcgs), f"recall@{recall_k}": 100.0 * sum(recalls) / len(recalls), "queries": len(ndcgs)}

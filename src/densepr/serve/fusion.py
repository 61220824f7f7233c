"""Reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009) of ranked lists."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import TypeVar

K = TypeVar("K", bound=Hashable)


def rrf(lists_of_hits: Sequence[Iterable[K]], k: int = 60) -> list[tuple[K, float]]:
    """Fuse ranked lists of hit keys (e.g. passage ids, best first) into one list of ``(key, score)``.

    Each list contributes ``1 / (k + rank)`` (rank from 1) to every key it holds; keys are returned by
    fused score, best first, ties kept in the order the keys were first seen. A key repeated within
    one list counts at its best rank only.

    >>> rrf([["a", "b"], ["b", "c"]], k=1)
    [('b', 0.8333333333333333), ('a', 0.5), ('c', 0.3333333333333333)]
    """
    if k < 0:
        raise ValueError(f"rrf k must be >= 0, got {k}")
    scores: dict[K, float] = {}
    for hits in lists_of_hits:
        seen: set[K] = set()
        for rank, key in enumerate(hits, 1):
            if key in seen:
                continue
            seen.add(key)
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    order = {key: i for i, key in enumerate(scores)}
    return sorted(scores.items(), key=lambda item: (-item[1], order[item[0]]))

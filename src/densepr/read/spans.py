"""Answer spans from start and end logits, in numpy (what inference runs, with or without torch)."""

from __future__ import annotations

from typing import Any

import numpy as np

MASKED = -1e9  # logit of positions outside the passage text


def masked(logits: Any, text_mask: Any) -> np.ndarray:
    """Logits (an array or a CPU tensor) with every position outside the passage text set to :data:`MASKED`."""
    return np.where(np.asarray(text_mask, dtype=bool), np.asarray(logits, dtype=np.float32), np.float32(MASKED))


def best_spans(start_logits: Any, end_logits: Any, max_answer_len: int = 10) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row the span maximising start + end logit with ``start <= end < start + max_answer_len``.
    Returns ``(start, end, score)`` arrays of shape ``(N,)``.

    >>> [int(x[0]) for x in best_spans(np.array([[0.0, 5.0, 1.0]]), np.array([[0.0, 1.0, 4.0]]))]
    [1, 2, 9]
    """
    start, end = np.asarray(start_logits, dtype=np.float32), np.asarray(end_logits, dtype=np.float32)
    scores = span_scores(start, end, max_answer_len)
    n, length = scores.shape[:2]
    flat = scores.reshape(n, -1).argmax(-1)
    return flat // length, flat % length, scores.reshape(n, -1)[np.arange(n), flat]


def span_scores(start: np.ndarray, end: np.ndarray, max_answer_len: int) -> np.ndarray:
    """``(N, L, L)``: start + end logit of each span ``[i, j]`` with ``i <= j < i + max_answer_len``; ``-inf`` elsewhere."""
    i = np.arange(start.shape[1])
    width = i[None, :] - i[:, None]
    allowed = (width >= 0) & (width < max_answer_len)
    return np.where(allowed[None], start[:, :, None] + end[:, None, :], -np.inf)


def span_certainty(start_logits: np.ndarray, end_logits: np.ndarray, starts: np.ndarray, ends: np.ndarray,
                   max_answer_len: int = 10, cap: float = 15.0) -> tuple[np.ndarray, np.ndarray]:
    """How sure the reader is of each row's chosen span (``starts``, ``ends``) within its passage: the span's log
    probability (log-softmax of its start plus that of its end, over the masked logits) and its score's margin over the
    best span that does not overlap it (at most ``cap``; ``cap`` when there is none).

    >>> logprob, margin = span_certainty(np.array([[0.0, 5.0, 1.0]]), np.array([[0.0, 1.0, 4.0]]), np.array([1]), np.array([2]))
    >>> round(float(logprob[0]), 2), float(margin[0])
    (-0.09, 9.0)
    """
    start, end = np.asarray(start_logits, dtype=np.float64), np.asarray(end_logits, dtype=np.float64)
    rows, length = np.arange(len(start)), start.shape[1]

    def log_softmax_at(logits: np.ndarray, at: np.ndarray) -> np.ndarray:
        top = logits.max(-1)
        return logits[rows, at] - top - np.log(np.exp(logits - top[:, None]).sum(-1))

    logprob = log_softmax_at(start, starts) + log_softmax_at(end, ends)
    i = np.arange(length)
    overlaps = (i[None, :, None] <= ends[:, None, None]) & (i[None, None, :] >= starts[:, None, None])
    others = np.where(overlaps, -np.inf, span_scores(start, end, max_answer_len)).reshape(len(start), -1).max(-1)
    return logprob, np.minimum(start[rows, starts] + end[rows, ends] - others, cap)  # none: inf, so the cap

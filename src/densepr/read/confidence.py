"""A calibrated confidence for the reader's answers: the probability that an answer is right (exact match).

A logistic model over features of one question's reading: the chosen span's score, the chosen passage's selection
probability (softmax over the passages read), how much of that probability sits on passages whose best span is the
same answer (evidence across passages), the share of passages agreeing, the chosen passage's rank, the retrieval
margin, the answer's length, the chosen passage's selection logit and its margin over the next passage's (the
logit's scale says how sure the reader is that any passage holds the answer, which the softmax hides), and how sure the
reader is of the span within its passage: its log probability and its margin over the best span not overlapping it
(version 3). It is fitted on dev questions (``recipes/calibration.py``) and stored with the reader as
``confidence.json``, with its own version, the threshold ``ask`` abstains below, and the figures it was chosen on.

>>> model = ConfidenceModel(FEATURES, np.zeros(len(FEATURES)), 0.0, np.zeros(len(FEATURES)), np.ones(len(FEATURES)), 0.5)
>>> float(round(model.probability(np.zeros((1, len(FEATURES))))[0], 2))
0.5
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from densepr.errors import DenseprError
from densepr.evaluate.exact_match import normalize_answer
from densepr.read.inference import PassageReading

CONFIDENCE_FILE = "confidence.json"
VERSION = 3
FEATURES = ("span_score", "selection_prob", "answer_prob", "agreeing_share", "chosen_rank", "retrieval_margin",
            "answer_words", "selection_logit", "selection_logit_margin", "span_logprob", "span_margin")


def features(readings: Sequence[PassageReading], chosen: PassageReading, scores: Sequence[float]) -> np.ndarray:
    """The feature vector of one answer: ``readings`` of the passages read, the ``chosen`` one, the passages' retrieval
    ``scores`` (best first)."""
    logits = np.array([r.selection for r in readings], dtype=np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    answer = normalize_answer(chosen.answer)
    same = np.array([bool(answer) and normalize_answer(r.answer) == answer for r in readings])
    top = np.asarray(scores[:2], dtype=np.float64)
    margin = (top[0] - top[1]) / (abs(top[0]) + 1e-9) if len(top) == 2 else 1.0
    ranked = np.sort(logits)
    logit_margin = ranked[-1] - ranked[-2] if len(ranked) > 1 else 0.0
    return np.array([chosen.span_score, probs[chosen.index], probs[same].sum(), same.mean(), chosen.index + 1,
                     margin, len(chosen.answer.split()), chosen.selection, logit_margin, chosen.span_logprob,
                     chosen.span_margin], dtype=np.float64)


@dataclass
class ConfidenceModel:
    """Logistic regression over standardised :data:`FEATURES`; ``threshold``: the default confidence to answer at."""

    names: Sequence[str]
    weights: np.ndarray
    bias: float
    mean: np.ndarray
    scale: np.ndarray
    threshold: float
    card: dict[str, Any] = field(default_factory=dict)  # what it was fitted and chosen on, and the figures

    def probability(self, x: np.ndarray) -> np.ndarray:
        """P(exact match) of each row of features."""
        z = ((np.atleast_2d(x) - self.mean) / self.scale) @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, l2: float = 1.0, iterations: int = 50) -> ConfidenceModel:
        """Fit by Newton's method (L2-penalised log loss); the threshold is left at 0.5 until chosen."""
        if len(x) < 10 or len(set(y.tolist())) < 2:
            raise DenseprError("calibration needs at least 10 answers, right and wrong ones")
        mean, scale = x.mean(0), x.std(0) + 1e-9
        z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
        w = np.zeros(z.shape[1])
        penalty = np.diag([l2] * (z.shape[1] - 1) + [0.0])
        for _ in range(iterations):
            p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -40, 40)))
            gradient = z.T @ (p - y) + penalty @ w
            hessian = (z * (p * (1 - p))[:, None]).T @ z + penalty
            step = np.linalg.solve(hessian, gradient)
            w -= step
            if np.abs(step).max() < 1e-8:
                break
        return cls(FEATURES, w[:-1], float(w[-1]), mean, scale, 0.5)

    def to_dict(self) -> dict[str, Any]:
        return {"version": VERSION, "features": list(self.names), "weights": self.weights.tolist(), "bias": self.bias,
                "mean": self.mean.tolist(), "scale": self.scale.tolist(), "threshold": self.threshold, "card": self.card}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "confidence") -> ConfidenceModel:
        if data.get("version") != VERSION or list(data.get("features", [])) != list(FEATURES):
            raise DenseprError(f"{source}: a confidence model of another version or features; fit it again")
        return cls(FEATURES, np.asarray(data["weights"]), float(data["bias"]), np.asarray(data["mean"]),
                   np.asarray(data["scale"]), float(data["threshold"]), dict(data.get("card", {})))

    def save(self, folder: Path) -> None:
        from densepr.fileio import write_json

        write_json(folder / CONFIDENCE_FILE, self.to_dict())

    @classmethod
    def load(cls, reader: str | Path | None) -> ConfidenceModel | None:
        """The model stored with a reader folder; ``None`` if it has none, or ``reader`` is no folder (a hub name)."""
        path = Path(reader) / CONFIDENCE_FILE if reader is not None else None
        if path is None or not path.is_file():
            return None
        from densepr.fileio import read_json

        return cls.from_dict(read_json(path), str(path))


def calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error over ``bins`` equal-width confidence bins."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    return float(sum(abs(confidence[which == b].mean() - correct[which == b].mean()) * (which == b).sum()
                     for b in range(bins) if (which == b).any()) / max(len(confidence), 1))


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """The reliability diagram's bins: range, count, mean confidence, accuracy."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    return [{"low": float(edges[b]), "high": float(edges[b + 1]), "count": int((which == b).sum()),
             "confidence": float(confidence[which == b].mean()) if (which == b).any() else math.nan,
             "accuracy": float(correct[which == b].mean()) if (which == b).any() else math.nan} for b in range(bins)]


def coverage_curve_area(confidence: np.ndarray, correct: np.ndarray) -> float:
    """Mean EM (percent) among the answered questions over all coverage levels, answering the most confident first."""
    if not len(confidence):
        return 0.0
    order = np.argsort(-confidence, kind="stable")
    running = np.cumsum(correct[order]) / np.arange(1, len(order) + 1)
    return float(100.0 * running.mean())


def selective(confidence: np.ndarray, correct: np.ndarray, threshold: float) -> dict[str, float]:
    """EM always answering; coverage and EM among answered at ``threshold``; curve area; calibration error (percent
    except the error)."""
    answered = confidence >= threshold
    return {"em_always": float(100.0 * correct.mean()) if len(correct) else 0.0,
            "coverage": float(100.0 * answered.mean()) if len(correct) else 0.0,
            "em_answered": float(100.0 * correct[answered].mean()) if answered.any() else math.nan,
            "area": coverage_curve_area(confidence, correct), "ece": calibration_error(confidence, correct)}

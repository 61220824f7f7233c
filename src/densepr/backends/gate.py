"""The agreement gate: an exported graph runs only if it agrees with torch fp32 on a sample of the corpus's passages.

:func:`place` is shared by :func:`densepr.dense.backend.attach_encoder` and :func:`densepr.read.backend.attach_reader`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from densepr.backends.choice import Backend, passes_gate
from densepr.backends.onnx import OnnxRunner
from densepr.backends.openvino import OpenVinoRunner
from densepr.corpus.passages import Passage, Passages

log = logging.getLogger(__name__)
SAMPLE = 64  # passages the agreement with torch fp32 is measured on


def _spread(total: int, n: int) -> list[int]:
    """Up to ``n`` positions spread evenly over ``range(total)``, first and last included."""
    return np.unique(np.linspace(0, total - 1, num=min(n, total)).astype(int)).tolist() if total else []


def sample_passages(store: Passages, n: int = SAMPLE) -> list[Passage]:
    """``n`` passages spread evenly over ``store`` (the corpus's own text, for calibration and agreement)."""
    return [store[r] for r in _spread(len(store), n)]


def ctx_sample(entries: Sequence[Mapping[str, Any]], n: int = SAMPLE) -> list[Passage]:
    """The first retrieved passage of up to ``n`` DPR result entries (spread over the file), as passages."""
    chosen = [entries[i] for i in _spread(len(entries), n)]
    return [Passage(str(c.get("id", "")), c["text"], c.get("title") or "") for e in chosen for c in e.get("ctxs", [])[:1]]


def question_like(passages: Sequence[Passage]) -> list[str]:
    """Short question-shaped texts from passage titles, for the question tower's agreement check."""
    return [f"what is known about {p.title or p.text.split('.')[0][:60]}?" for p in passages]


Measure = Callable[[OnnxRunner], dict[str, float]]


def agreement_of(runner: OnnxRunner, measure: Measure) -> dict[str, float]:
    """The runner's recorded agreement with torch fp32, measured (and recorded) on first use."""
    if runner.agreement is None:
        runner.record_agreement(measure(runner))
    return runner.agreement  # type: ignore[return-value]


def runner_class(backend: str) -> type[OnnxRunner]:
    """The runner of an exported-graph backend ("onnx" or "openvino")."""
    return OpenVinoRunner if backend == "openvino" else OnnxRunner


def place(kind: str, backend: Backend, build: Callable[[Backend], OnnxRunner], measure: Measure,
          sample: int, fallback: Backend = Backend("torch", "fp32")) -> tuple[Backend, OnnxRunner | None]:
    """``backend`` and its runner; an exported graph failing the gate falls back to the same engine in fp32, then to
    ``fallback`` (the reference the agreement is measured against: torch fp32, or a graph tower's fp32 graph), which
    runs without a runner of its own."""
    if backend.name == "torch":
        return backend, None  # kept as given: its ``chosen`` tells an attach that auto picked it
    if not sample:
        log.warning("%s: no passages to check an exported graph against; running %s", kind, fallback)
        return fallback, None
    for precision in dict.fromkeys((backend.precision, "fp32")):
        tried = Backend(backend.name, precision)
        runner = build(tried)
        agreement = agreement_of(runner, measure)
        if passes_gate(agreement):
            log.debug("%s: %s (agreement with torch fp32: %s)", kind, tried, ", ".join(f"{k} {v:.4f}" for k, v in agreement.items()))
            return tried, runner
        log.warning("%s: %s disagrees with %s (%s); not used", kind, tried, fallback, agreement)
    return fallback, None

"""Run an encoder tower on a backend: torch, or its ONNX export (on ONNX Runtime or OpenVINO) checked against torch fp32.

>>> attach_encoder(encoder, choose("auto"), sample_passages(store), question=True)   # doctest: +SKIP
Backend(name='onnx', precision='int8')
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from densepr.backends.choice import Backend
from densepr.backends.export import about_torch, exporter, module_fingerprint
from densepr.backends.gate import place, question_like, runner_class
from densepr.backends.onnx import GRAPH, OnnxRunner, cache_root
from densepr.corpus.passages import Passage
from densepr.dense.encoder import Encoder


def attach_encoder(encoder: Encoder, backend: Backend, passages: Sequence[Passage], question: bool = False,
                   cache_near: Path | None = None) -> Backend:
    """Run ``encoder`` on ``backend`` from now on; returns what runs (the gate may fall back). ``passages``: the
    corpus's own, the agreement sample (as titles/texts for a passage tower, question-shaped for a question tower)."""
    texts, pairs = (question_like(passages), None) if question else ([p.title for p in passages], [p.text for p in passages])

    def build(backend: Backend) -> OnnxRunner:
        sample = dict(encoder.tokenizer.pad(encoder.tokenize(["a", *texts[:1]], None if pairs is None else ["b", *pairs[:1]]),
                                            return_tensors="pt"))
        settings = {"kind": "encoder", "pooling": encoder.pooling, "normalize": encoder.normalize}
        return runner_class(backend.name).build(exporter(encoder, sample, ["vectors"]), backend.precision,
                                                module_fingerprint(encoder, settings), cache_root(cache_near or encoder.source),
                                                about=about_torch())

    def measure(runner: OnnxRunner) -> dict[str, float]:
        encoder.runner, encoder.precision = None, "fp32"
        reference = encoder.embed(texts, pairs, warn_truncation=False)
        encoder.runner = runner
        vectors = encoder.embed(texts, pairs, warn_truncation=False)
        encoder.runner = None
        cosine = (reference * vectors).sum(1) / np.maximum(np.linalg.norm(reference, axis=1) * np.linalg.norm(vectors, axis=1), 1e-12)
        return {"cosine_mean": float(cosine.mean()), "cosine_min": float(cosine.min())}

    placed, encoder.runner = place("question encoder" if question else "passage encoder", backend, build, measure, len(passages))
    encoder.precision = None if placed.chosen else placed.precision  # auto's bf16: small batches still run fp32
    return placed


def export_tower(encoder: Encoder, folder: Path, source: str = "") -> None:
    """Write ``encoder`` as an ONNX folder a lean install loads (``model.onnx`` in fp32, the tokenizer,
    ``densepr_export.json`` with its pooling), into an existing folder (the caller writes it atomically)."""
    from densepr.dense.graph_tower import EXPORT_FILE
    from densepr.fileio import write_json

    sample = dict(encoder.tokenizer.pad(encoder.tokenize(["a question", "a"], ["a passage", "b"]), return_tensors="pt"))
    exporter(encoder, sample, ["vectors"])(folder / GRAPH)
    encoder.tokenizer.save_pretrained(folder)  # type: ignore[union-attr]  # a torch tower loaded with lite=False
    settings = {"pooling": encoder.pooling, "normalize": encoder.normalize, "max_length": encoder.max_length}
    write_json(folder / EXPORT_FILE, {"kind": "encoder", **settings, "dim": encoder.dim, "source": source,
                                      "fingerprint": module_fingerprint(encoder, settings), **about_torch()})

"""Run the reader on a backend: torch, or its ONNX export (on ONNX Runtime or OpenVINO) checked against torch fp32.

>>> attach_reader(reader, choose("auto"), sample_passages(store))   # doctest: +SKIP
Backend(name='onnx', precision='int8')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from densepr.backends.choice import Backend
from densepr.backends.export import about_torch, exporter, module_fingerprint
from densepr.backends.gate import place, question_like, runner_class
from densepr.backends.onnx import GRAPH, OnnxRunner, cache_root, early_down_projections
from densepr.corpus.passages import Passage
from densepr.read.graph_reader import head_correlations
from densepr.read.model import Reader


def attach_reader(reader: Reader, backend: Backend, passages: Sequence[Passage], cache_near: Path | None = None) -> Backend:
    """Run ``reader`` on ``backend`` from now on (as :func:`attach_encoder`; agreement: the correlation of the start,
    end and selection logits with torch fp32 on the sample, the lowest of the three). Its int8 graph keeps the early
    feed-forward down-projections fp32 (:func:`~densepr.backends.onnx.early_down_projections`)."""
    ctxs: list[Mapping[str, Any]] = [p.ctx() for p in passages]
    questions = question_like(passages)

    def build(backend: Backend) -> OnnxRunner:
        sample = dict(reader.encode(["a", questions[0]], [{"title": "t", "text": "b"}, ctxs[0]]).tensors)
        settings = {"kind": "reader", "input_format": reader.input_format, "int8_fp32_nodes": "early down-projections"}
        return runner_class(backend.name).build(exporter(reader, sample, ["start", "end", "select"]), backend.precision,
                                                module_fingerprint(reader, settings), cache_root(cache_near or reader.source),
                                                keep_fp32=early_down_projections, about=about_torch())

    def measure(runner: OnnxRunner) -> dict[str, float]:
        return {"logit_correlation": min(logit_correlations(reader, runner, questions, ctxs).values())}

    placed, reader.runner = place("reader", backend, build, measure, len(passages))
    reader.precision = placed.precision
    return placed


def logit_correlations(reader: Reader, runner: OnnxRunner, questions: Sequence[str],
                       ctxs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """How ``runner``'s start, end (over passage text tokens) and selection logits correlate with ``reader``'s in
    torch fp32, one question per ctx."""
    batch = reader.encode(list(questions), list(ctxs))
    with torch.inference_mode():
        reference = [t.float().numpy() for t in reader(**{k: v.to(reader.device) for k, v in batch.tensors.items()})]
    return head_correlations(reference, runner(batch.tensors), batch.text_mask.numpy())


def export_reader(reader: Reader, folder: Path, source: str = "") -> None:
    """Write ``reader`` as an ONNX folder a lean install loads (``model.onnx`` in fp32 with the heads, the tokenizer,
    ``densepr_reader.json``, ``densepr_export.json``), into an existing folder (the caller writes it atomically)."""
    from densepr.fileio import write_json
    from densepr.read.graph_reader import CONFIG_FILE, EXPORT_FILE

    ctx = {"title": "a title", "text": "a passage"}
    sample = dict(reader.encode(["a question", "another question"], [ctx, ctx]).tensors)
    exporter(reader, sample, ["start", "end", "select"])(folder / GRAPH)
    reader.tokenizer.save_pretrained(folder)  # type: ignore[union-attr]  # a reader loaded with lite=False
    settings = {"max_length": reader.max_length, "max_answer_len": reader.max_answer_len, "base_model": reader.base_model,
                "input_format": reader.input_format}
    write_json(folder / CONFIG_FILE, settings)
    write_json(folder / EXPORT_FILE, {"kind": "reader", "source": source, "fingerprint": module_fingerprint(reader, settings),
                                      **about_torch()})

"""Export a torch module to an ONNX graph (needs ``densepr[train]``): the graphs of models that
:mod:`densepr.backends.bert_graph` cannot write from their weights alone, and the torch path's own exports.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import torch

from densepr.backends.onnx import WriteGraph
from densepr.errors import DenseprError

OPSET = 17


def module_fingerprint(module: torch.nn.Module, settings: Mapping[str, object]) -> str:
    """A hash of every parameter and buffer (names, shapes, bytes) and of ``settings``."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps(dict(settings), sort_keys=True, default=str).encode())
    for name, tensor in module.state_dict().items():
        h.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def export_graph(module: torch.nn.Module, sample: Mapping[str, torch.Tensor], outputs: Sequence[str], path: Path) -> None:
    """Trace ``module(**sample)`` to ONNX at ``path`` in fp32, batch and sequence axes dynamic."""
    names = [k for k in inspect.signature(module.forward).parameters if k in sample]  # positional: forward's order
    if len(names) != len(sample):
        raise DenseprError(f"{type(module).__name__}.forward takes no {sorted(set(sample) - set(names))}")
    axes: dict[str, dict[int, str]] = {k: {0: "batch", 1: "sequence"} for k in names}
    axes.update({o: {0: "batch"} for o in outputs})
    modes = [(m, m.training) for m in module.modules()]
    # eager attention: the SDPA path traces into mask arithmetic (Where, IsNaN) that took 13-23% of ONNX Runtime's time;
    # eager exported 12% (fp32) to 40% (int8) faster with the same vectors (benchmarks/ablations/backend_profile.py)
    attention: list[tuple[Any, str]] = [(m, cast(Any, m).config._attn_implementation) for m in module.modules()
                                         if hasattr(m, "set_attn_implementation")]
    for m, _ in attention:
        m.set_attn_implementation("eager")
    module.eval()
    try:
        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on constants it keeps; the agreement gate checks the graph
            torch.onnx.export(module, tuple(sample[k].cpu() for k in names), str(path), input_names=names,
                              output_names=list(outputs), dynamic_axes=axes, opset_version=OPSET, dynamo=False)
    finally:
        for m, training in modes:
            m.training = training
        for m, implementation in attention:
            m.set_attn_implementation(implementation)


def exporter(module: torch.nn.Module, sample: Mapping[str, torch.Tensor], outputs: Sequence[str]) -> WriteGraph:
    """A :data:`~densepr.backends.onnx.WriteGraph` exporting ``module`` (for :meth:`OnnxRunner.build`)."""
    return lambda path: export_graph(module, sample, outputs, path)


def about_torch() -> dict[str, object]:
    """What an export's metadata records of its making."""
    return {"opset": OPSET, "torch": torch.__version__}

"""OpenVINO inference of the exported ONNX graphs (:mod:`densepr.backends.onnx`): fp32, or bf16 on CPUs with bf16 units.

The same fp32 graph, cached by the module's fingerprint, serves ONNX Runtime and OpenVINO; OpenVINO compiles it for
this CPU at load time, with bf16 inference where asked (AMX and AVX512-BF16 run it natively). Its agreement with torch
fp32 is measured and kept apart per precision, and the gate applies as to ONNX Runtime.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from densepr.backends.onnx import OnnxRunner
from densepr.errors import DenseprError


def require_openvino() -> Any:
    """``openvino``, or a one-line error saying how to install it."""
    try:
        import openvino
    except ImportError:
        raise DenseprError("the openvino backend needs openvino: pip install 'densepr[openvino]'") from None
    return openvino


class OpenVinoRunner(OnnxRunner):
    """Runs a cached ONNX graph on OpenVINO's CPU plugin: ``runner(tensors)`` returns the outputs as numpy arrays.

    >>> runner = OpenVinoRunner.build(write_graph, "bf16", key, Path("cache"))   # doctest: +SKIP
    """

    engine = "openvino"

    @classmethod
    def require(cls) -> Any:
        return require_openvino()

    def open(self, path: Path, threads: int) -> None:
        ov = self.require()
        hint = "bf16" if self.precision == "bf16" else "f32"
        compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": hint,
                                                               "PERFORMANCE_HINT": "LATENCY"})
        self.inputs = [i.get_any_name() for i in compiled.inputs]
        self.outputs = list(compiled.outputs)
        self.request = compiled.create_infer_request()
        self.lock = threading.Lock()  # one infer request: calls from several threads take turns

    def __call__(self, tensors: Mapping[str, Any]) -> list[np.ndarray]:
        feed = {k: np.asarray(tensors[k], dtype=np.int64) for k in self.inputs}
        with self.lock:
            results = self.request.infer(feed)
            return [np.array(results[o], dtype=np.float32) for o in self.outputs]

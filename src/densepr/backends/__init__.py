"""Inference backends: torch (fp32, bf16) or ONNX Runtime (fp32, int8), chosen per machine and gated on agreement."""

from densepr.backends.choice import BACKENDS, PRECISIONS, Backend, BackendOptions, choose

__all__ = ["BACKENDS", "PRECISIONS", "Backend", "BackendOptions", "choose"]

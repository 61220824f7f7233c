"""ONNX Runtime inference for a torch module: export once, cache by the module's fingerprint, quantise to int8.

The graph takes the tokenizer's int64 tensors (``input_ids``, ``attention_mask``, ``token_type_ids``) with dynamic
batch and sequence axes and returns the module's float outputs. Exports live in a folder keyed by a hash of the
module's weights, its settings and the precision, written atomically; a graph that fails to load is rebuilt.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from densepr.errors import DenseprError
from densepr.fileio import atomic_folder, write_json

log = logging.getLogger(__name__)
GRAPH, META = "model.onnx", "densepr_onnx.json"
OPSET = 17
RECIPE = 2  # bumped when the export changes (2: eager attention), so older exports in a cache are not reused


def require_onnxruntime():  # -> the onnxruntime module
    """``onnxruntime``, or a one-line error saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise DenseprError("the onnx backend needs onnxruntime: pip install 'densepr[onnx]'") from None
    return onnxruntime


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
    # eager exported 12% (fp32) to 40% (int8) faster with the same vectors (benchmarks/backend_profile.py)
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


def quantize_int8(source: Path, target: Path, keep_fp32: Sequence[str] = ()) -> None:
    """Dynamic int8: weights per output channel (signed), activations quantised per batch at run time; the nodes
    named in ``keep_fp32`` stay fp32."""
    require_onnxruntime()
    from onnxruntime.quantization import QuantType, quantize_dynamic

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # onnxruntime's quantiser logs every node it skips to the root logger
    try:
        quantize_dynamic(str(source), str(target), per_channel=True, weight_type=QuantType.QInt8,
                         nodes_to_exclude=list(keep_fp32))
    finally:
        logging.disable(previous)


def down_projections(graph: Path) -> list[str]:
    """A BERT graph's feed-forward down-projections, in graph order: MatMuls whose weight maps a wider input onto the
    model's width (the output width most MatMuls share)."""
    import onnx

    model = onnx.load(str(graph))
    shapes = {w.name: tuple(w.dims) for w in model.graph.initializer if len(w.dims) == 2}  # shapes only, no array copies
    weighted = [(n.name, shapes[n.input[1]]) for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in shapes]
    widths = [shape[1] for _, shape in weighted]
    hidden = max(set(widths), key=widths.count) if widths else 0
    return [name for name, (rows, cols) in weighted if cols == hidden and rows > hidden]


def early_down_projections(graph: Path) -> list[str]:
    """The first half (rounded up) of :func:`down_projections`: what the reader's int8 graph keeps fp32.

    Their inputs (after GELU) carry the outliers int8 rounds worst, and the early layers' errors grow through the later
    ones. The default reader's logits then correlate 0.9958 with torch fp32 on mini-Wikipedia passages (all int8:
    0.9924, under the gate's 0.995; section ``reader-int8`` of ``benchmarks/RESULTS.md``)."""
    down = down_projections(graph)
    return down[: (len(down) + 1) // 2]


def cache_root(near: Path | None) -> Path:
    """``near/.densepr-onnx`` when that folder is writable, else the user cache (``$XDG_CACHE_HOME/densepr/onnx``)."""
    if near is not None and os.access(near, os.W_OK):
        return near / ".densepr-onnx"
    import platformdirs

    return Path(platformdirs.user_cache_dir("densepr")) / "onnx"


class OnnxRunner:
    """Runs a cached ONNX graph of a module: ``runner({"input_ids": ..., ...})`` returns its outputs as numpy arrays.

    >>> runner = OnnxRunner.build(encoder, sample, ["vectors"], "int8", key, Path("cache"))   # doctest: +SKIP
    """

    engine = "onnx"  # the backend's name; another engine over the same exported graphs subclasses this (OpenVINO)

    def __init__(self, path: Path, precision: str = "fp32", threads: int | None = None):
        self.path, self.precision = path, precision
        self.open(path, threads or torch.get_num_threads())
        meta = path.parent / META
        self.agreement: dict[str, float] | None = json.loads(meta.read_text()).get(self.agreement_key) if meta.is_file() else None

    @classmethod
    def require(cls) -> Any:
        """The engine's module, or a one-line error saying how to install it."""
        return require_onnxruntime()

    def open(self, path: Path, threads: int) -> None:
        """Load the graph into the engine (raises the engine's own errors for a truncated or foreign graph)."""
        ort = self.require()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    @property
    def agreement_key(self) -> str:
        """Where the export's metadata keeps this engine's agreement (one graph serves several engines/precisions)."""
        return "agreement" if self.engine == "onnx" else f"agreement_{self.engine}_{self.precision}"

    def record_agreement(self, agreement: dict[str, float]) -> None:
        """Keep ``agreement`` (with torch fp32, measured once) in the export's metadata."""
        self.agreement = agreement
        meta = self.path.parent / META
        write_json(meta, {**json.loads(meta.read_text()), self.agreement_key: agreement})

    @classmethod
    def build(cls, module: torch.nn.Module, sample: Mapping[str, torch.Tensor], outputs: Sequence[str], precision: str,
              key: str, root: Path, keep_fp32: Callable[[Path], Sequence[str]] | None = None) -> OnnxRunner:
        """The runner of ``module`` at ``precision``, its graph exported into ``root/<key>-<graph precision>`` unless
        there (int8 graphs are quantised, but for the nodes ``keep_fp32`` names in the fp32 graph; any other precision
        runs the fp32 graph). ``key`` must change with ``keep_fp32``."""
        cls.require()
        graph = "int8" if precision == "int8" else "fp32"
        folder = root / f"{key}-{graph}-r{RECIPE}"
        if (folder / META).is_file():
            try:
                return cls(folder / GRAPH, precision)
            except Exception as exc:  # the engines raise their own types for truncated or foreign graphs
                log.warning("%s: cannot load the exported graph (%s); exporting it again", folder, str(exc).splitlines()[0][:120])
        log.info("exporting %s to ONNX (%s) -> %s", type(module).__name__, graph, folder)
        with atomic_folder(folder) as tmp:
            export_graph(module, sample, outputs, tmp / "fp32.onnx")
            kept: Sequence[str] = []
            if graph == "int8":
                kept = keep_fp32(tmp / "fp32.onnx") if keep_fp32 else []
                quantize_int8(tmp / "fp32.onnx", tmp / GRAPH, kept)
                (tmp / "fp32.onnx").unlink()
            else:
                (tmp / "fp32.onnx").rename(tmp / GRAPH)
            write_json(tmp / META, {"key": key, "precision": graph, "recipe": RECIPE, "opset": OPSET, "torch": torch.__version__,
                                    "fp32_nodes": list(kept)})
        return cls(folder / GRAPH, precision)

    def __call__(self, tensors: Mapping[str, np.ndarray | torch.Tensor]) -> list[np.ndarray]:
        feed = {k: np.asarray(tensors[k], dtype=np.int64) for k in self.inputs}
        return self.session.run(None, feed)

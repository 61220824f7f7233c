"""ONNX Runtime inference of a model's graph: written once (exported from torch, :mod:`densepr.backends.export`, or
built from a BERT's weights without torch, :mod:`densepr.backends.bert_graph`), cached by a fingerprint, quantised to
int8. No torch here: a lean install runs these graphs.

The graph takes the tokenizer's int64 tensors (``input_ids``, ``attention_mask``, ``token_type_ids``) with dynamic
batch and sequence axes and returns the model's float outputs. Graphs live in a folder keyed by a hash of the weights,
the settings and the precision, written atomically; a graph that fails to load is rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from densepr.errors import DenseprError
from densepr.fileio import atomic_folder, write_json

log = logging.getLogger(__name__)
GRAPH, META = "model.onnx", "densepr_onnx.json"
RECIPE = 2  # bumped when the export changes (2: eager attention), so older exports in a cache are not reused
WriteGraph = Callable[[Path], None]  # writes a model's fp32 graph to a path


def default_threads() -> int:
    """Threads an engine runs on: the cores this process may use (``OMP_NUM_THREADS`` where set)."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def require_onnxruntime():  # -> the onnxruntime module
    """``onnxruntime``, or a one-line error saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise DenseprError("the onnx backend needs onnxruntime: pip install 'densepr[onnx]'") from None
    return onnxruntime


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
    0.9924, under the gate's 0.995; section ``reader-int8`` of ``docs/results/history.md``)."""
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

    >>> runner = OnnxRunner.build(write_graph, "int8", key, Path("cache"))   # doctest: +SKIP
    """

    engine = "onnx"  # the backend's name; another engine over the same exported graphs subclasses this (OpenVINO)

    def __init__(self, path: Path, precision: str = "fp32", threads: int | None = None):
        self.path, self.precision = path, precision
        self.open(path, threads or default_threads())
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
    def per_row(self) -> bool:
        """True for an int8 graph: dynamic quantisation scales each layer's activations by their range over the whole
        batch, so a text's vector would depend on the texts (and padding) batched with it. Its callers run it one text
        at a time (the reader one passage at a time): on a 2-core AVX2 EPYC that cost 1.2-1.5x for questions (2.46
        against 2.02 ms each in the latest run), while 585 of 900 NQ-open questions had another top 5 batched than
        alone; the reader read 5 passages no slower (``benchmarks/ablations/int8_batches.py``)."""
        return self.precision == "int8"

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
    def build(cls, write: WriteGraph, precision: str, key: str, root: Path,
              keep_fp32: Callable[[Path], Sequence[str]] | None = None, about: Mapping[str, object] | None = None) -> OnnxRunner:
        """The runner at ``precision`` of the graph ``write`` writes (fp32), kept in ``root/<key>-<graph precision>``
        unless there (int8 graphs are quantised, but for the nodes ``keep_fp32`` names in the fp32 graph; any other
        precision runs the fp32 graph). ``key`` must change with ``keep_fp32``; ``about`` goes into the metadata."""
        cls.require()
        graph = "int8" if precision == "int8" else "fp32"
        folder = root / f"{key}-{graph}-r{RECIPE}"
        if (folder / META).is_file():
            try:
                return cls(folder / GRAPH, precision)
            except Exception as exc:  # the engines raise their own types for truncated or foreign graphs
                log.warning("%s: cannot load the exported graph (%s); exporting it again", folder, str(exc).splitlines()[0][:120])
        log.info("writing the %s ONNX graph -> %s", graph, folder)
        with atomic_folder(folder) as tmp:
            write(tmp / "fp32.onnx")
            kept: Sequence[str] = []
            if graph == "int8":
                kept = keep_fp32(tmp / "fp32.onnx") if keep_fp32 else []
                quantize_int8(tmp / "fp32.onnx", tmp / GRAPH, kept)
                (tmp / "fp32.onnx").unlink()
            else:
                (tmp / "fp32.onnx").rename(tmp / GRAPH)
            write_json(tmp / META, {"key": key, "precision": graph, "recipe": RECIPE, **(about or {}), "fp32_nodes": list(kept)})
        return cls(folder / GRAPH, precision)

    def __call__(self, tensors: Mapping[str, Any]) -> list[np.ndarray]:
        feed = {k: np.asarray(tensors[k], dtype=np.int64) for k in self.inputs}
        return self.session.run(None, feed)

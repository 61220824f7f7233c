"""An encoder tower run from an ONNX graph (ONNX Runtime or OpenVINO), with no torch: what a lean install encodes with.

The graph is written once from the folder's weights (a plain BERT's ``model.safetensors``:
:mod:`densepr.backends.bert_graph`) or copied from a ``densepr export`` folder, cached by the weights' fingerprint, and
quantised to int8 where asked. An int8 (or OpenVINO) graph runs only if it agrees with the fp32 graph on a sample of
the corpus's passages (the gate of :mod:`densepr.backends.gate`); the fp32 graph matches torch to 1e-4
(``tests/test_bert_graph.py``).

>>> tower = GraphTower.load(tower_spec(Path("model/")))                       # doctest: +SKIP
>>> tower.attach(choose("auto"), sample_passages(store), question=True)       # doctest: +SKIP
>>> tower.embed(["who wrote hamlet"]).shape                                   # doctest: +SKIP
(1, 384)
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from densepr.backends.bert_graph import bert_graph, load_weights, pooling_head, read_config, supports
from densepr.backends.choice import Backend
from densepr.backends.gate import place, question_like, runner_class
from densepr.backends.onnx import GRAPH, OnnxRunner, WriteGraph, cache_root
from densepr.corpus.passages import Passage
from densepr.dense.batching import CPU_BATCH_TOKENS, PAD_MULTIPLE, count_truncated, run_batches
from densepr.dense.loading import TowerSpec
from densepr.dense.tokenizer_lite import TokenizerLite
from densepr.errors import DenseprError
from densepr.fileio import fingerprint, read_json

EXPORT_FILE = "densepr_export.json"  # a ``densepr export`` folder: model.onnx, its settings, the tokenizer
GRAPH_VERSION = 1  # bumped when bert_graph writes other graphs, so cached ones are not reused


def graph_source(folder: Path, spec: TowerSpec) -> tuple[WriteGraph, str, int] | None:
    """How to write a folder's fp32 graph, its cache key and its vectors' width; ``None`` where no graph can be had
    without torch (not a plain BERT, no safetensors weights, not an export)."""
    export = folder / EXPORT_FILE
    if export.is_file():
        settings = read_json(export)
        key = hashlib.blake2b(f"{fingerprint(folder / GRAPH)}:{settings}".encode(), digest_size=16).hexdigest()

        def copy(path: Path) -> None:
            shutil.copyfile(folder / GRAPH, path)

        return copy, key, int(settings["dim"])
    weights = folder / "model.safetensors"
    if not weights.is_file() or not (folder / "config.json").is_file():
        return None
    config = read_config(folder)
    if not supports(config):
        return None
    settings = {"kind": "encoder", "pooling": spec.pooling, "normalize": spec.normalize, "graph": GRAPH_VERSION}
    key = hashlib.blake2b(f"{fingerprint(weights)}:{json.dumps(config, sort_keys=True)}:{settings}".encode(),
                          digest_size=16).hexdigest()

    def write(path: Path) -> None:
        tensors = load_weights(weights)
        path.write_bytes(bert_graph(tensors, config, pooling_head(spec.pooling, spec.normalize, tensors), str(folder)))

    dim = int(config.get("projection_dim") or 0) or int(config["hidden_size"])
    return write, key, dim


class GraphTower:
    """Maps texts (or title/text pairs) to vectors with an ONNX graph; the inference face of
    :class:`~densepr.dense.encoder.Encoder` (``embed``, ``tokenize``, ``backend``, ``dim``)."""

    def __init__(self, source: Path, tokenizer: TokenizerLite, write: WriteGraph, key: str, dim: int, pooling: str,
                 normalize: bool, max_length: int):
        self.source, self.tokenizer, self.dim = source, tokenizer, dim
        self.pooling, self.normalize, self.max_length = pooling, normalize, max_length
        self._write, self._key = write, key
        self.truncated = 0  # inputs cut at max_length by embed(), all calls together
        self.runner: OnnxRunner | None = None
        self.precision: str | None = None

    @classmethod
    def load(cls, spec: TowerSpec) -> GraphTower | None:
        """The tower of a model folder, or ``None`` where it needs torch (see :func:`graph_source`)."""
        source = graph_source(spec.path, spec)
        tokenizer = TokenizerLite.load(spec.path) if source is not None else None
        if source is None or tokenizer is None:
            return None
        config = read_config(spec.path) if (spec.path / "config.json").is_file() else {}
        positions = int(config.get("max_position_embeddings", 512))
        length = min(spec.max_length or tokenizer.model_max_length, positions, 512)
        return cls(spec.path, tokenizer, *source, spec.pooling, spec.normalize, int(length))

    @classmethod
    def load_export(cls, folder: Path) -> GraphTower:
        """A ``densepr export`` folder's tower (its graph, tokenizer and pooling settings)."""
        settings = read_json(folder / EXPORT_FILE)
        if settings.get("kind") != "encoder":
            raise DenseprError(f"{folder}: an exported {settings.get('kind')}, not an encoder")
        spec = TowerSpec(folder, str(settings["pooling"]), bool(settings["normalize"]), int(settings["max_length"]))
        source, tokenizer = graph_source(folder, spec), TokenizerLite.load(folder, any_class=True)
        if source is None or tokenizer is None:
            raise DenseprError(f"{folder}: an export without its graph or tokenizer.json")
        return cls(folder, tokenizer, *source, spec.pooling, spec.normalize, int(spec.max_length or 512))

    def _runner(self, backend: Backend) -> OnnxRunner:
        return runner_class(backend.name).build(self._write, backend.precision, self._key, cache_root(self.source),
                                                about={"graph": GRAPH_VERSION})

    def attach(self, backend: Backend, passages: Sequence[Passage], question: bool = False) -> Backend:
        """Run on ``backend`` (onnx or openvino) from now on, if it agrees with the fp32 graph on ``passages`` (the
        corpus's own; question-shaped for a question tower); else the fp32 graph runs. Returns what runs."""
        if backend.name not in ("onnx", "openvino"):
            raise DenseprError(f"the {backend.name} backend needs torch: pip install 'densepr[train]'")
        texts, pairs = (question_like(passages), None) if question else ([p.title for p in passages], [p.text for p in passages])

        def measure(runner: OnnxRunner) -> dict[str, float]:  # only where no agreement is recorded yet
            if (runner.engine, runner.precision) == ("onnx", "fp32"):
                return {"cosine_mean": 1.0, "cosine_min": 1.0}  # the reference itself
            self.runner = self._runner(Backend("onnx", "fp32"))
            reference = self.embed(texts, pairs, warn_truncation=False)
            self.runner = runner
            vectors = self.embed(texts, pairs, warn_truncation=False)
            norms = np.maximum(np.linalg.norm(reference, axis=1) * np.linalg.norm(vectors, axis=1), 1e-12)
            cosine = (reference * vectors).sum(1) / norms
            return {"cosine_mean": float(cosine.mean()), "cosine_min": float(cosine.min())}

        kind = "question encoder" if question else "passage encoder"
        placed, runner = place(kind, backend, self._runner, measure, len(passages), fallback=Backend("onnx", "fp32"))
        self.runner, self.precision = runner or self._runner(Backend("onnx", "fp32")), placed.precision
        return placed

    def backend(self, bf16: bool | None = None) -> str:
        """What computes the vectors: ``<onnx|openvino> <precision>``."""
        return f"{getattr(self.runner, 'engine', 'onnx')} {self.precision or 'fp32'}"

    def tokenize(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> dict[str, list]:
        """Unpadded token ids; ``pairs`` makes ``[CLS] text [SEP] pair [SEP]`` inputs (DPR's title/text)."""
        return self.tokenizer(list(texts), list(pairs) if pairs is not None else None, truncation=True,
                              max_length=self.max_length, padding=False)

    def embed(self, texts: Sequence[str], pairs: Sequence[str] | None = None, batch_size: int | None = None,
              bf16: bool | None = None, progress: bool | Callable[[int], object] = False,
              warn_truncation: bool = True) -> np.ndarray:
        """Encode texts in length-sorted batches (as :meth:`Encoder.embed <densepr.dense.encoder.Encoder.embed>`;
        ``bf16`` is the engine's business here; an int8 graph runs one text at a time: :attr:`OnnxRunner.per_row
        <densepr.backends.onnx.OnnxRunner.per_row>`); float32 ``(n, dim)`` in input order."""
        if batch_size is not None and batch_size < 1:
            raise DenseprError(f"batch size must be >= 1, not {batch_size}")
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.runner is None:
            self.runner, self.precision = self._runner(Backend("onnx", "fp32")), "fp32"
        runner = self.runner
        batch_size = 1 if runner.per_row else batch_size
        encoded = self.tokenize(texts, pairs)
        self.truncated += count_truncated(encoded["input_ids"], self.max_length, warn_truncation)

        def forward(rows: dict[str, list], lengths: np.ndarray) -> np.ndarray:
            return runner(self.tokenizer.pad(rows, return_tensors="np", pad_to_multiple_of=PAD_MULTIPLE))[0]

        return run_batches(dict(encoded), self.dim, forward, batch_size, CPU_BATCH_TOKENS, progress)

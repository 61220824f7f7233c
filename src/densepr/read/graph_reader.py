"""The reader run from an ONNX graph (ONNX Runtime or OpenVINO), with no torch: what a lean install answers with.

A saved reader folder (a plain BERT's ``model.safetensors``, ``reader_heads.safetensors``, ``densepr_reader.json`` and
``tokenizer.json``) becomes one graph (:func:`~densepr.backends.bert_graph.bert_graph` with the reader's heads), cached
by the weights' fingerprints. On a 2-core AVX2 EPYC it read 5 passages (128 tokens) in 136 ms against torch fp32's
191 ms, its logits within 1e-5 of torch's. An int8 graph (early down-projections kept fp32) runs only if asked and if its
logits correlate with the fp32 graph's as the gate asks.

>>> reader = load_reader("reader/", graph=True)                              # doctest: +SKIP
>>> attach_any_reader(reader, choose("auto", int8=False), passages)          # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np

from densepr.backends.bert_graph import bert_graph, load_weights, read_config, reader_head, supports
from densepr.backends.choice import Backend
from densepr.backends.gate import place, question_like, runner_class
from densepr.backends.onnx import GRAPH, OnnxRunner, WriteGraph, cache_root, early_down_projections
from densepr.corpus.passages import Passage
from densepr.dense.graph_tower import EXPORT_FILE
from densepr.dense.tokenizer_lite import TokenizerLite
from densepr.errors import DenseprError
from densepr.fileio import fingerprint, read_json
from densepr.hardware import torch_installed
from densepr.read.data import PassageBatch, encode_pairs

if TYPE_CHECKING:
    from densepr.read.model import Reader

AnyReader = Union["Reader", "GraphReader"]
HEADS_FILE, CONFIG_FILE = "reader_heads.safetensors", "densepr_reader.json"
GRAPH_VERSION = 1


def find_reader_folder(path: str | Path) -> Path:
    """``path`` itself, or its ``final/`` (a ``train-reader`` output), if it holds a saved reader."""
    path = Path(path).expanduser()
    for candidate in (path, path / "final"):
        if (candidate / CONFIG_FILE).is_file() and (candidate / HEADS_FILE).is_file():
            return candidate
    raise DenseprError(f"{path}: not a reader folder (no {CONFIG_FILE} and {HEADS_FILE}); train one with 'densepr train-reader'")


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; constant arrays correlate 1 when equal (to 1e-4), else 0."""
    if a.std() < 1e-12 or b.std() < 1e-12:
        return float(np.allclose(a, b, atol=1e-4))
    return float(np.corrcoef(a, b)[0, 1])


def head_correlations(reference: Sequence[np.ndarray], got: Sequence[np.ndarray], text_mask: Any) -> dict[str, float]:
    """How ``got``'s start, end (over passage text tokens) and selection logits correlate with ``reference``'s."""
    text = np.asarray(text_mask, dtype=bool)
    pairs = {"start": (reference[0][text], got[0][text]), "end": (reference[1][text], got[1][text]), "select": (reference[2], got[2])}
    return {name: correlation(a, b) for name, (a, b) in pairs.items()}


class GraphReader:
    """Scores spans of passages and the passages themselves with an ONNX graph; the inference face of
    :class:`~densepr.read.model.Reader` (``encode``, ``logits``, ``backend``, ``max_answer_len``)."""

    lite = True

    def __init__(self, source: Path, tokenizer: TokenizerLite, settings: Mapping[str, Any], write: WriteGraph, key: str):
        self.source, self.tokenizer = source, tokenizer
        self.max_length, self.max_answer_len = int(settings["max_length"]), int(settings["max_answer_len"])
        self.base_model, self.input_format = str(settings.get("base_model", "")), str(settings.get("input_format", "densepr"))
        self.runner: OnnxRunner | None = None
        self.precision: str | None = None
        self._write, self._key = write, key

    @classmethod
    def load(cls, path: str | Path) -> GraphReader | None:
        """A saved reader folder, or a ``densepr export`` of any reader, as a graph reader; ``None`` where it needs
        torch (not a plain BERT, no safetensors weights, a tokenizer that only transformers loads, or Hugging Face's
        ``DPRReader`` layout: ``densepr export --reader`` turns those into a folder this loads)."""
        folder = Path(path).expanduser()
        if (folder / EXPORT_FILE).is_file() and (folder / CONFIG_FILE).is_file():
            return cls._from_export(folder)
        try:
            folder = find_reader_folder(path)
        except DenseprError:
            if (folder / "config.json").is_file():
                return None  # a DPRReader folder: torch's Reader.load reads it
            raise
        tokenizer = TokenizerLite.load(folder)
        if tokenizer is None or not (folder / "model.safetensors").is_file() or not supports(read_config(folder)):
            return None
        config, weights, heads = read_config(folder), folder / "model.safetensors", folder / HEADS_FILE
        about = f"{fingerprint(weights)}:{fingerprint(heads)}:{json.dumps(config, sort_keys=True)}:reader:{GRAPH_VERSION}"

        def write(path: Path) -> None:
            path.write_bytes(bert_graph(load_weights(weights), config, reader_head(load_weights(heads)), str(folder)))

        return cls(folder, tokenizer, read_json(folder / CONFIG_FILE), write,
                   hashlib.blake2b(about.encode(), digest_size=16).hexdigest())

    @classmethod
    def _from_export(cls, folder: Path) -> GraphReader:
        tokenizer = TokenizerLite.load(folder, any_class=True)
        if tokenizer is None:
            raise DenseprError(f"{folder}: no tokenizer.json to read with")

        def copy(path: Path) -> None:
            shutil.copyfile(folder / GRAPH, path)

        key = hashlib.blake2b(f"{fingerprint(folder / GRAPH)}:export-reader".encode(), digest_size=16).hexdigest()
        return cls(folder, tokenizer, read_json(folder / CONFIG_FILE), copy, key)

    def _runner(self, backend: Backend) -> OnnxRunner:
        return runner_class(backend.name).build(self._write, backend.precision, self._key, cache_root(self.source),
                                                keep_fp32=early_down_projections, about={"graph": GRAPH_VERSION})

    def encode(self, questions: Sequence[str], ctxs: Sequence[Mapping[str, Any]]) -> PassageBatch:
        """Tokenise (question, passage) pairs at the reader's maximum length, as numpy arrays."""
        return encode_pairs(self.tokenizer, questions, ctxs, self.max_length, dpr_format=self.input_format == "dpr",
                            tensors="np")

    def logits(self, batch: PassageBatch, bf16: bool | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Start, end and selection logits of an encoded batch (``bf16`` is the engine's business here)."""
        if self.runner is None:
            self.runner, self.precision = self._runner(Backend("onnx", "fp32")), "fp32"
        feed = dict(batch.tensors)
        feed.setdefault("token_type_ids", np.zeros_like(feed["input_ids"]))
        start, end, select = self.runner(feed)
        return start, end, select

    def backend(self) -> str:
        """What computes the logits: ``<onnx|openvino> <precision>``."""
        return f"{getattr(self.runner, 'engine', 'onnx')} {self.precision or 'fp32'}"

    def attach(self, backend: Backend, passages: Sequence[Passage]) -> Backend:
        """Run on ``backend`` (onnx or openvino) from now on, if its logits correlate with the fp32 graph's on
        ``passages`` as the gate asks; else the fp32 graph runs. Returns what runs."""
        if backend.name not in ("onnx", "openvino"):
            raise DenseprError(f"the {backend.name} backend needs torch: pip install 'densepr[train]'")
        questions, ctxs = question_like(passages), [p.ctx() for p in passages]

        def measure(runner: OnnxRunner) -> dict[str, float]:  # only where no agreement is recorded yet
            if (runner.engine, runner.precision) == ("onnx", "fp32"):
                return {"logit_correlation": 1.0}  # the reference itself
            batch = self.encode(questions, ctxs)
            self.runner = self._runner(Backend("onnx", "fp32"))
            reference = self.logits(batch)
            self.runner = runner
            return {"logit_correlation": min(head_correlations(reference, self.logits(batch), batch.text_mask).values())}

        placed, runner = place("reader", backend, self._runner, measure, len(passages), fallback=Backend("onnx", "fp32"))
        self.runner, self.precision = runner or self._runner(Backend("onnx", "fp32")), placed.precision
        return placed


def load_reader(path: str | Path, graph: bool = False) -> AnyReader:
    """A reader for inference: with ``graph`` (or without torch), an ONNX graph reader where the folder allows it;
    else torch's :class:`~densepr.read.model.Reader` (lite)."""
    if graph or not torch_installed():
        reader = GraphReader.load(path)
        if reader is not None:
            return reader
        if not torch_installed():
            raise DenseprError(f"{path}: this reader needs torch to run: pip install 'densepr[train]'")
    from densepr.read.model import Reader

    return Reader.load(path, lite=True)


def attach_any_reader(reader: AnyReader, backend: Backend, passages: Sequence[Passage]) -> Backend:
    """Run ``reader`` on ``backend`` from now on (gated on agreement over ``passages``); returns what runs."""
    if isinstance(reader, GraphReader):
        return reader.attach(backend, passages)
    from densepr.read.backend import attach_reader

    return attach_reader(reader, backend, passages)

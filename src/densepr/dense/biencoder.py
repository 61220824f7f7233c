"""The DPR dual encoder: question and passage towers (separate, or one shared), dot-product scores."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np

from densepr.backends.choice import Backend
from densepr.corpus.passages import Passage
from densepr.dense.graph_tower import EXPORT_FILE, GraphTower
from densepr.dense.loading import DEFAULT_ALIASES, DEFAULT_MODEL, pair_for_dpr_hub_name, resolve_model_path, tower_spec
from densepr.errors import DenseprError
from densepr.hardware import torch_installed

if TYPE_CHECKING:
    from densepr.dense.encoder import Encoder

Tower = Union["Encoder", GraphTower]  # a torch tower, or an ONNX graph's (inference, no torch)
QUESTION_DIR, PASSAGE_DIR = "question_encoder", "passage_encoder"


def load_tower(name_or_path: str | Path, pooling: str | None = None, lite: bool = False, graph: bool = False) -> Tower:
    """One tower: with ``graph``, an ONNX graph tower where the folder allows it (a plain BERT, or a ``densepr export``
    folder), without importing torch; else torch's :class:`~densepr.dense.encoder.Encoder` (``lite``: for inference)."""
    path = Path(name_or_path).expanduser()
    if (path / EXPORT_FILE).is_file():
        return GraphTower.load_export(path)
    if graph or not torch_installed():
        tower = GraphTower.load(tower_spec(resolve_model_path(name_or_path), pooling))
        if tower is not None:
            return tower
        if not torch_installed():
            raise DenseprError(f"{name_or_path}: not a plain BERT, which runs without torch: pip install 'densepr[train]' "
                               "to run it, or turn it into an ONNX folder once with 'densepr export'")
    from densepr.dense.encoder import Encoder

    return Encoder.from_pretrained(name_or_path, pooling, lite=lite)


def attach_tower(tower: Tower, backend: Backend, passages: Sequence[Passage], question: bool = False) -> Backend:
    """Run ``tower`` on ``backend`` from now on, gated on agreement over ``passages`` (the corpus's own); returns what
    runs. A graph tower runs its graph (onnx, openvino); a torch tower runs torch or its export."""
    if isinstance(tower, GraphTower):
        return tower.attach(backend, passages, question=question)
    from densepr.dense.backend import attach_encoder

    return attach_encoder(tower, backend, passages, question=question)


class BiEncoder:
    """Question and passage encoders whose vectors are compared by inner product.

    >>> model = BiEncoder.load("default")                                    # doctest: +SKIP
    >>> q = model.encode_questions(["where was einstein born"])              # doctest: +SKIP
    >>> p = model.encode_passages([Passage("1", "Einstein was born in Ulm.", "Albert Einstein")])  # doctest: +SKIP
    >>> float(q @ p.T)                                                       # doctest: +SKIP
    """

    def __init__(self, question_encoder: Tower, passage_encoder: Tower | None = None, name: str = ""):
        self.question_encoder = question_encoder
        self.passage_encoder = passage_encoder or question_encoder
        if self.question_encoder.dim != self.passage_encoder.dim:
            raise DenseprError(f"question ({self.question_encoder.dim}) and passage ({self.passage_encoder.dim}) encoder dimensions differ")
        self.name = name

    @property
    def shared(self) -> bool:
        return self.question_encoder is self.passage_encoder

    @property
    def dim(self) -> int:
        return self.passage_encoder.dim

    @classmethod
    def load(cls, model: str | Path | None = None, question_model: str | Path | None = None,
             passage_model: str | Path | None = None, pooling: str | None = None, lite: bool = False,
             graph: bool = False) -> BiEncoder:
        """Load towers from one name (shared tower, a densepr checkpoint, or a DPR hub pair) or two.

        - ``load("default")``: the offline all-MiniLM-L6-v2, one shared tower;
        - ``load("ckpt/")`` where ``ckpt/`` has ``question_encoder/`` and ``passage_encoder/``;
        - ``load("facebook/dpr-question_encoder-single-nq-base")``: its ``ctx_encoder`` twin is the passage tower;
        - ``load(question_model=Q, passage_model=P)``: any two folders or names.

        ``lite``: for inference only (plain BERT towers load without transformers' model code; see ``bert_lite``);
        ``graph``: towers run from ONNX graphs, without torch, where they can (:func:`load_tower`).
        """
        if question_model or passage_model:
            if not (question_model and passage_model):
                raise DenseprError("give both --question-model and --passage-model, or --model")
            q = load_tower(question_model, pooling, lite, graph)
            p = load_tower(passage_model, pooling, lite, graph)
            return cls(q, p, name=f"{question_model}+{passage_model}")
        model = str(model or DEFAULT_MODEL)
        folder = Path(model).expanduser()
        model = str(folder.resolve()) if folder.is_dir() else (DEFAULT_MODEL if model in DEFAULT_ALIASES else model)
        if (folder / QUESTION_DIR).is_dir() and (folder / PASSAGE_DIR).is_dir():
            shared = json.loads((folder / "densepr.json").read_text()).get("shared", False) if (folder / "densepr.json").is_file() else False
            q = load_tower(folder / QUESTION_DIR, pooling, lite, graph)
            return cls(q, None if shared else load_tower(folder / PASSAGE_DIR, pooling, lite, graph), name=model)
        pair = None if folder.exists() else pair_for_dpr_hub_name(model)
        if pair:
            q, p = (load_tower(name, pooling, lite, graph) for name in pair)
            return cls(q, p, name=model)
        return cls(load_tower(model, pooling, lite, graph), name=model)

    def encode_questions(self, questions: Sequence[str], batch_size: int | None = None, bf16: bool | None = None,
                         progress: bool | Callable[[int], object] = False) -> np.ndarray:
        """Question vectors, float32 ``(n, dim)``."""
        return self.question_encoder.embed(questions, batch_size=batch_size, bf16=bf16, progress=progress)

    def encode_passages(self, passages: Sequence[Passage], batch_size: int | None = None, bf16: bool | None = None,
                        progress: bool | Callable[[int], object] = False, warn_truncation: bool = True) -> np.ndarray:
        """Passage vectors of ``title [SEP] text`` inputs, float32 ``(n, dim)``."""
        return self.passage_encoder.embed([p.title for p in passages], [p.text for p in passages], batch_size=batch_size,
                                          bf16=bf16, progress=progress, warn_truncation=warn_truncation)

    def save(self, path: str | Path) -> None:
        """Save as ``question_encoder/`` and ``passage_encoder/`` Hugging Face folders."""
        path = Path(path)
        if isinstance(self.question_encoder, GraphTower) or isinstance(self.passage_encoder, GraphTower):
            raise DenseprError("towers run from ONNX graphs (inference) cannot be saved; load the model with torch")
        self.question_encoder.save(path / QUESTION_DIR)
        self.passage_encoder.save(path / PASSAGE_DIR)
        (path / "densepr.json").write_text(json.dumps({"shared": self.shared, "dim": self.dim}, indent=2))

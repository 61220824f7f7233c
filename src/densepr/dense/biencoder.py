"""The DPR dual encoder: question and passage towers (separate, or one shared), dot-product scores."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from densepr.corpus.passages import Passage
from densepr.dense.encoder import Encoder
from densepr.dense.loading import DEFAULT_ALIASES, DEFAULT_MODEL, pair_for_dpr_hub_name
from densepr.errors import DenseprError

QUESTION_DIR, PASSAGE_DIR = "question_encoder", "passage_encoder"


class BiEncoder:
    """Question and passage encoders whose vectors are compared by inner product.

    >>> model = BiEncoder.load("default")                                    # doctest: +SKIP
    >>> q = model.encode_questions(["where was einstein born"])              # doctest: +SKIP
    >>> p = model.encode_passages([Passage("1", "Einstein was born in Ulm.", "Albert Einstein")])  # doctest: +SKIP
    >>> float(q @ p.T)                                                       # doctest: +SKIP
    """

    def __init__(self, question_encoder: Encoder, passage_encoder: Encoder | None = None, name: str = ""):
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
             passage_model: str | Path | None = None, pooling: str | None = None, lite: bool = False) -> BiEncoder:
        """Load towers from one name (shared tower, a densepr checkpoint, or a DPR hub pair) or two.

        - ``load("default")``: the offline all-MiniLM-L6-v2, one shared tower;
        - ``load("ckpt/")`` where ``ckpt/`` has ``question_encoder/`` and ``passage_encoder/``;
        - ``load("facebook/dpr-question_encoder-single-nq-base")``: its ``ctx_encoder`` twin is the passage tower;
        - ``load(question_model=Q, passage_model=P)``: any two folders or names.

        ``lite``: for inference only (plain BERT towers load without transformers' model code; see ``bert_lite``).
        """
        if question_model or passage_model:
            if not (question_model and passage_model):
                raise DenseprError("give both --question-model and --passage-model, or --model")
            q = Encoder.from_pretrained(question_model, pooling, lite=lite)
            p = Encoder.from_pretrained(passage_model, pooling, lite=lite)
            return cls(q, p, name=f"{question_model}+{passage_model}")
        model = str(model or DEFAULT_MODEL)
        folder = Path(model).expanduser()
        model = str(folder.resolve()) if folder.is_dir() else (DEFAULT_MODEL if model in DEFAULT_ALIASES else model)
        if (folder / QUESTION_DIR).is_dir() and (folder / PASSAGE_DIR).is_dir():
            shared = json.loads((folder / "densepr.json").read_text()).get("shared", False) if (folder / "densepr.json").is_file() else False
            q = Encoder.from_pretrained(folder / QUESTION_DIR, pooling, lite=lite)
            return cls(q, None if shared else Encoder.from_pretrained(folder / PASSAGE_DIR, pooling, lite=lite), name=model)
        pair = None if folder.exists() else pair_for_dpr_hub_name(model)
        if pair:
            q, p = (Encoder.from_pretrained(name, pooling, lite=lite) for name in pair)
            return cls(q, p, name=model)
        return cls(Encoder.from_pretrained(model, pooling, lite=lite), name=model)

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
        self.question_encoder.save(path / QUESTION_DIR)
        self.passage_encoder.save(path / PASSAGE_DIR)
        (path / "densepr.json").write_text(json.dumps({"shared": self.shared, "dim": self.dim}, indent=2))

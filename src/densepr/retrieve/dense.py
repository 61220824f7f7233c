"""Dense retrieval: encode questions with the question tower, search the FAISS index."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from densepr.dense.biencoder import BiEncoder
from densepr.errors import DenseprError
from densepr.hits import Hit, Ranked
from densepr.index.faiss_index import DenseIndex
from densepr.index.matrix import MatrixIndex

if TYPE_CHECKING:
    from densepr.index.ray_shards import RayShards


class DenseRetriever:
    """Question encoder + passage index.

    >>> retriever = DenseRetriever.load("INDEX_DIR")               # doctest: +SKIP
    >>> retriever.search(["who wrote hamlet"], k=5)[0]              # doctest: +SKIP
    """

    def __init__(self, model: BiEncoder, index: DenseIndex | RayShards | MatrixIndex):
        if model.dim != index.dim:
            raise DenseprError(f"model {model.name!r} makes {model.dim}-d vectors but the index holds {index.dim}-d vectors "
                               f"(built with {index.meta.get('model')!r}); pass the index's --model")
        self.model, self.index = model, index

    @property
    def ids(self) -> Sequence[str]:
        return self.index.ids

    @property
    def meta(self) -> dict:
        return self.index.meta

    @classmethod
    def load(cls, index_dir: str | Path, model: str | BiEncoder | None = None, question_model: str | None = None,
             allow_model_mismatch: bool = False, verify: bool | None = False,
             ray_address: str | None = None, ray_cpus: int = 1, graph: bool = False) -> DenseRetriever:
        """Load an index folder and its question encoder (by default the model recorded in the index); ``verify``:
        check every index file's checksum against the manifest; ``ray_address``: search its shards in Ray actors of
        ``ray_cpus`` CPUs each, on that cluster (:mod:`densepr.index.ray_shards`); ``graph``: the question tower runs
        from an ONNX graph, without torch, where it can (:func:`~densepr.dense.biencoder.load_tower`)."""
        index: DenseIndex | RayShards
        if ray_address:
            from densepr.fileio import check_manifest
            from densepr.index.ray_shards import RayShards

            check_manifest(index_dir, checksums=verify)
            index = RayShards.connect(index_dir, ray_address, ray_cpus)
        else:
            index = DenseIndex.load(index_dir, verify=verify)
        if isinstance(model, BiEncoder):
            encoder = model
        elif question_model:
            encoder = BiEncoder(BiEncoder.load(question_model, lite=True, graph=graph).question_encoder, name=question_model)
        else:
            encoder = BiEncoder.load(model or index.meta.get("model"), lite=True, graph=graph)
            if model and not allow_model_mismatch and index.meta.get("model") not in (None, encoder.name):
                raise DenseprError(f"{index_dir} was built with model {index.meta['model']!r}, not {encoder.name!r} "
                                   "(pass --allow-model-mismatch if the question encoder is meant to differ)")
        return cls(encoder, index)

    def encode(self, questions: Sequence[str], batch_size: int | None = None, progress: bool = False) -> np.ndarray:
        """Question vectors, as :meth:`search` computes them."""
        return self.model.encode_questions(questions, batch_size=batch_size, progress=progress)

    def search(self, questions: Sequence[str], k: int = 100, vectors: np.ndarray | None = None,
               batch_size: int | None = None, progress: bool = False) -> list[list[Hit]]:
        """Top-k passages per question by inner product, best first (``vectors``: the questions, already encoded)."""
        return [r.hits() for r in self.ranked(questions, k, vectors, batch_size, progress)]

    def ranked(self, questions: Sequence[str], k: int = 100, vectors: np.ndarray | None = None,
               batch_size: int | None = None, progress: bool = False) -> list[Ranked]:
        """:meth:`search`'s lists as arrays."""
        if not len(questions):
            return []
        if vectors is None:
            vectors = self.encode(questions, batch_size=batch_size, progress=progress)
        scores, rows = self.index.search(vectors, k)
        return [Ranked(rr[rr >= 0], ss[rr >= 0]) for rr, ss in zip(rows, scores)]  # -1 pads when k > size

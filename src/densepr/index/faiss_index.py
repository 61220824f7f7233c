"""FAISS inner-product indexes over passage vectors: exact, HNSW, IVF-PQ, IVF-SQ8 and 8-bit scalar quantised.

Saved as ``INDEX_DIR/index.faiss`` + ``ids.txt`` (row → passage id) + ``meta.json`` (type, dim,
model, passages file and fingerprint).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import faiss
import numpy as np

from densepr.errors import DenseprError
from densepr.fileio import atomic_folder, check_manifest, read_ids, read_json, write_json, write_manifest
from densepr.index import INDEX_TYPES
from densepr.index.planner import ivf_lists

log = logging.getLogger(__name__)


def _pq_subquantizers(dim: int) -> int:
    """Largest divisor of ``dim`` giving at most 4 dimensions per byte code."""
    return max(m for m in range(1, dim // 4 + 1) if dim % m == 0) if dim >= 4 else dim


def build_faiss(vectors: np.ndarray, kind: str = "flat", hnsw_m: int = 32, ef_construction: int = 200,
                nlist: int | None = None, pq_m: int | None = None, train_size: int = 200_000, seed: int = 0) -> faiss.Index:
    """A FAISS index of ``kind`` holding ``vectors`` (inner product metric)."""
    if kind not in INDEX_TYPES:
        raise DenseprError(f"unknown index type {kind!r}; choose from {', '.join(INDEX_TYPES)}")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    n, dim = vectors.shape
    if n == 0:
        raise DenseprError("no vectors to index")
    ip = faiss.METRIC_INNER_PRODUCT
    index: Any  # FAISS index classes share no typed base with .hnsw
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, ip)
        index.hnsw.efConstruction = ef_construction
    elif kind == "sq8":
        index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit, ip)
    elif kind == "ivfsq8":
        index = faiss.index_factory(dim, f"IVF{nlist or ivf_lists(n)},SQ8", ip)
    else:
        nlist = nlist or ivf_lists(n)
        pq_m = pq_m or _pq_subquantizers(dim)
        if dim % pq_m:
            raise DenseprError(f"--pq-m {pq_m} must divide the vector dimension {dim}")
        index = faiss.index_factory(dim, f"IVF{nlist},PQ{pq_m}", ip)
    if kind.startswith("ivf"):  # probe 1/16 of the lists unless --nprobe says otherwise (FAISS saves it)
        faiss.extract_index_ivf(index).nprobe = max(8, faiss.extract_index_ivf(index).nlist // 16)
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        sample = vectors[rng.choice(n, size=min(n, train_size), replace=False)] if n > train_size else vectors
        index.train(sample)
    for start in range(0, n, 100_000):
        index.add(vectors[start : start + 100_000])
    return index


class DenseIndex:
    """A FAISS index plus its row → passage-id map and provenance.

    >>> index = DenseIndex.build(vectors, ids, kind="hnsw")      # doctest: +SKIP
    >>> scores, rows = index.search(query_vectors, k=100)         # doctest: +SKIP
    """

    def __init__(self, index: faiss.Index, ids: list[str], meta: dict):
        if index.ntotal != len(ids):
            raise DenseprError(f"index holds {index.ntotal} vectors but {len(ids)} passage ids")
        self.index, self.ids, self.meta = index, ids, meta

    @classmethod
    def build(cls, vectors: np.ndarray, ids: list[str], kind: str = "flat", meta: dict | None = None, **params) -> DenseIndex:
        start = time.perf_counter()
        index = build_faiss(vectors, kind, **params)
        info = dict(meta or {}, type=kind, dim=int(vectors.shape[1]), size=len(ids),
                    build_seconds=round(time.perf_counter() - start, 3))
        return cls(index, ids, info)

    @property
    def dim(self) -> int:
        return self.index.d

    def configure(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Search-time knobs: IVF lists probed, HNSW candidate list size."""
        if nprobe is not None and self.meta["type"].startswith("ivf"):
            faiss.extract_index_ivf(self.index).nprobe = nprobe
        if ef_search is not None and self.meta["type"] == "hnsw":
            cast(Any, self.index).hnsw.efSearch = ef_search

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ``(scores, rows)`` per query; rows index :attr:`ids` (-1 pads when k > size)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise DenseprError(f"query vectors have dimension {queries.shape[-1]}, the index has {self.dim}: "
                               f"was it built with another model (index model: {self.meta.get('model')!r})?")
        return self.index.search(queries, min(k, len(self.ids)))

    def vectors(self, rows: Sequence[int]) -> np.ndarray:
        """The stored vectors of ``rows`` (exact for flat indexes, decoded for compressed ones)."""
        try:
            return self.index.reconstruct_batch(np.asarray(rows, dtype=np.int64))
        except RuntimeError as exc:
            raise DenseprError(f"a {self.meta['type']} index cannot give back its vectors ({str(exc).splitlines()[0]})") from None

    def save(self, out_dir: str | Path, extra: dict[str, dict] | None = None) -> None:
        """Write the index folder whole (built beside it, swapped in by a rename): never old and new files mixed.
        ``extra``: more JSON files (a recall card), each given the index file's size as ``index_bytes``."""
        with atomic_folder(Path(out_dir)) as tmp:
            (tmp / "index.faiss").write_bytes(faiss.serialize_index(self.index).tobytes())
            for name, content in (extra or {}).items():
                write_json(tmp / name, dict(content, index_bytes=(tmp / "index.faiss").stat().st_size))
            (tmp / "ids.txt").write_text("".join(i + "\n" for i in self.ids), encoding="utf-8")
            write_json(tmp / "meta.json", dict(self.meta, retriever="dense"))
            write_manifest(tmp)

    @classmethod
    def load(cls, index_dir: str | Path, mmap: bool = True) -> DenseIndex:
        """Load an index folder, memory-mapped where FAISS supports it for the index type."""
        index_dir = Path(index_dir)
        meta = read_json(index_dir / "meta.json")
        check_manifest(index_dir)
        if meta.get("retriever") != "dense":
            raise DenseprError(f"{index_dir} is not a dense index (retriever={meta.get('retriever')!r})")
        path = str(index_dir / "index.faiss")
        try:
            index = faiss.read_index(path, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY) if mmap else faiss.read_index(path)
        except RuntimeError:
            try:
                index = faiss.read_index(path)
            except RuntimeError as exc:
                raise DenseprError(f"{path}: unreadable FAISS index ({str(exc).splitlines()[0]})") from None
        loaded = cls(index, read_ids(index_dir / "ids.txt", index.ntotal), meta)
        loaded.configure(ef_search=meta.get("ef_search"))  # a recall card's choice (IVF indexes keep nprobe themselves)
        return loaded

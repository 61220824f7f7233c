"""FAISS inner-product indexes over passage vectors: exact, HNSW (over full or 8-bit vectors), 8- and 4-bit scalar
quantised, IVF-SQ8, IVF-PQ and OPQ + IVF-PQ.

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
from densepr.fileio import atomic_folder, atomic_open, check_manifest, read_json, write_json, write_manifest
from densepr.index import INDEX_TYPES, exact
from densepr.index.planner import ivf_lists
from densepr.passage_ids import read_ids
from densepr.vector_checks import check_loaded

log = logging.getLogger(__name__)


def _pq_subquantizers(dim: int) -> int:
    """Largest divisor of ``dim`` giving at most 4 dimensions per byte code."""
    return max(m for m in range(1, dim // 4 + 1) if dim % m == 0) if dim >= 4 else dim


# Rows the OPQ rotation trains on (FAISS's default: 65,536). FAISS's OPQ training with 24 sub-quantizers of 384 dims
# peaked at 2,166 MB on 65,536 rows and 578 MB on 16,384; recall@100 on 300k MiniLM-derived vectors went from 0.743 to
# 0.737 (OPQ24,IVF1000,PQ24, nprobe 64) and the build from 140 s to 59 s. Most of that memory is the PQ encoding
# table below, which FAISS's OPQ training fills over all its rows at once.
OPQ_TRAIN_ROWS = 16_384
COARSE_FLAT_LIMIT = 1e14  # rows x lists x dims beyond which IVF assigns through an HNSW graph of the centroids
# FAISS's PQ encoder (ProductQuantizer::compute_codes) fills a float table of rows x sub-quantizers x 256 in one go
# when sub-vectors have 16 dims or more: 805 MB for a 32,768-row block of PQ24 (adding 100k rows to an OPQ24,PQ24 index
# peaked 1,055 MB above its input; in blocks of 4,096 rows, 339 MB, and no slower). Rows are encoded in blocks that
# keep this table near PQ_TABLE_BYTES.
PQ_TABLE_BYTES = 64 << 20


def pq_block_rows(pq_m: int, ksub: int = 256) -> int:
    """Rows to encode at once into a PQ of ``pq_m`` sub-quantizers of ``ksub`` centroids (see ``PQ_TABLE_BYTES``)."""
    return max(1024, PQ_TABLE_BYTES // (pq_m * ksub * 4))


def build_faiss(vectors: np.ndarray, kind: str = "flat", hnsw_m: int = 32, ef_construction: int = 200,
                nlist: int | None = None, pq_m: int | None = None, train_size: int = 200_000, seed: int = 0,
                add: bool = True, total: int | None = None) -> faiss.Index:
    """A FAISS index of ``kind`` holding ``vectors`` (inner product metric); ``add=False``: trained on them, empty.

    ``total``: the rows the index will hold (default: ``vectors``'). Where comparing each of them with every IVF
    centroid would take over ~1e14 multiply-adds (21M x 18k lists x 768 dims is 3e17), the lists are found through
    an HNSW graph over the centroids instead (FAISS ``IVF<n>_HNSW32``)."""
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
    elif kind == "hnswsq8":
        index = cast(Any, faiss).IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_8bit, hnsw_m, ip)
        index.hnsw.efConstruction = ef_construction
    elif kind in ("sq8", "sq4"):
        index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_8bit if kind == "sq8" else faiss.ScalarQuantizer.QT_4bit, ip)
    else:
        nlist = nlist or ivf_lists(total or n, dim)
        coarse = f"IVF{nlist}_HNSW32" if (total or n) * nlist * dim > COARSE_FLAT_LIMIT else f"IVF{nlist}"
        pq_m = pq_m or _pq_subquantizers(dim)
        if kind != "ivfsq8" and dim % pq_m:
            raise DenseprError(f"--pq-m {pq_m} must divide the vector dimension {dim}")
        rotation = f"OPQ{pq_m}," if kind == "ivfopq" else ""  # learnt rotation balancing the PQ sub-vectors
        index = faiss.index_factory(dim, f"{coarse},SQ8" if kind == "ivfsq8" else f"{rotation}{coarse},PQ{pq_m}", ip)
        if kind == "ivfopq":
            opq: Any = faiss.downcast_VectorTransform(cast(Any, index).chain.at(0))
            opq.max_train_points = OPQ_TRAIN_ROWS
    if kind.startswith("ivf"):  # probe 1/16 of the lists unless --nprobe says otherwise (FAISS saves it)
        faiss.extract_index_ivf(index).nprobe = max(8, faiss.extract_index_ivf(index).nlist // 16)
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        sample = vectors[rng.choice(n, size=min(n, train_size), replace=False)] if n > train_size else vectors
        index.train(sample)
    step = pq_block_rows(pq_m) if pq_m and kind in ("ivfpq", "ivfopq") else 100_000
    for start in range(0, n if add else 0, step):
        index.add(vectors[start : start + step])
    return index


def shard_ranges(n: int, shards: int) -> list[tuple[int, int]]:
    """Contiguous row ranges of ``shards`` near-equal parts."""
    bounds = np.linspace(0, n, shards + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def build_shards(vectors: np.ndarray, kind: str, shards: int, **params: Any) -> list[faiss.Index]:
    """``shards`` indexes over contiguous rows, sharing one trained quantiser: searched together (FAISS
    ``IndexShards``), they return what one index of all the rows returns."""
    template = build_faiss(vectors, kind, add=False, **params)
    parts = []
    for start, stop in shard_ranges(len(vectors), shards):
        part = faiss.clone_index(template)
        part.add(np.ascontiguousarray(vectors[start:stop], dtype=np.float32))
        parts.append(part)
    return parts


def _join(parts: list[faiss.Index]) -> faiss.Index:
    if len(parts) == 1:
        return parts[0]
    joined = cast(Any, faiss.IndexShards)(parts[0].d, True, True)  # threaded; row ids continue from shard to shard
    for part in parts:
        joined.add_shard(part)
    return joined


class DenseIndex:
    """A FAISS index plus its row → passage-id map and provenance.

    >>> index = DenseIndex.build(vectors, ids, kind="hnsw")      # doctest: +SKIP
    >>> scores, rows = index.search(query_vectors, k=100)         # doctest: +SKIP
    """

    def __init__(self, index: faiss.Index | list[faiss.Index], ids: Sequence[str], meta: dict):
        self.parts = index if isinstance(index, list) else [index]  # one FAISS index per shard (kept alive here)
        self.index = _join(self.parts)
        if self.index.ntotal != len(ids):
            raise DenseprError(f"index holds {self.index.ntotal} vectors but {len(ids)} passage ids")
        self.ids, self.meta = ids, meta

    @classmethod
    def build(cls, vectors: np.ndarray, ids: Sequence[str], kind: str = "flat", meta: dict | None = None, shards: int = 1,
              **params) -> DenseIndex:
        """Index ``vectors`` (row i is passage ``ids[i]``); ``shards > 1`` splits the rows over that many FAISS indexes
        sharing one trained quantiser, saved as files of their own and searched in parallel threads."""
        if shards < 1 or shards > max(1, len(ids)):
            raise DenseprError(f"--shards must be between 1 and the number of vectors ({len(ids)}), not {shards}")
        start = time.perf_counter()
        index = build_faiss(vectors, kind, **params) if shards == 1 else build_shards(vectors, kind, shards, **params)
        info = dict(meta or {}, type=kind, dim=int(vectors.shape[1]), size=len(ids),
                    build_seconds=round(time.perf_counter() - start, 3))
        if shards > 1:
            info["shards"] = shards
        return cls(index, ids, info)

    @property
    def dim(self) -> int:
        return self.index.d

    def configure(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        """Search-time knobs: IVF lists probed, HNSW candidate list size."""
        for part in self.parts:
            if nprobe is not None and self.meta["type"].startswith("ivf"):
                faiss.extract_index_ivf(part).nprobe = nprobe
            if ef_search is not None and self.meta["type"].startswith("hnsw"):
                cast(Any, part).hnsw.efSearch = ef_search

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-k ``(scores, rows)`` per query; rows index :attr:`ids` (-1 pads when k > size)."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise DenseprError(f"query vectors have dimension {queries.shape[-1]}, the index has {self.dim}: "
                               f"was it built with another model (index model: {self.meta.get('model')!r})?")
        k = min(k, len(self.ids))
        flats = [exact.flat_vectors(part) for part in self.parts]
        if 0 < len(queries) < exact.MAX_QUERIES and k > 0 and all(v is not None for v in flats):
            return exact.top_k(queries, cast(list[np.ndarray], flats), k)  # faster than FAISS here (index.exact)
        return self.index.search(queries, k)

    def vectors(self, rows: Sequence[int] | np.ndarray) -> np.ndarray:
        """The stored vectors of ``rows`` (exact for flat indexes, decoded for compressed ones)."""
        wanted = np.asarray(rows, dtype=np.int64)
        try:
            if len(self.parts) == 1:
                return self.parts[0].reconstruct_batch(wanted)
            firsts = np.cumsum([0] + [p.ntotal for p in self.parts])
            shard = np.searchsorted(firsts, wanted, side="right") - 1
            out = np.empty((len(wanted), self.dim), dtype=np.float32)
            for i in np.unique(shard):
                out[shard == i] = self.parts[i].reconstruct_batch(wanted[shard == i] - firsts[i])
            return out
        except RuntimeError as exc:
            raise DenseprError(f"a {self.meta['type']} index cannot give back its vectors ({str(exc).splitlines()[0]})") from None

    def save(self, out_dir: str | Path) -> None:
        """Write the index folder whole (built beside it, swapped in by a rename): never old and new files mixed."""
        with atomic_folder(Path(out_dir)) as tmp:
            for name, part in zip(index_files(len(self.parts)), self.parts):
                write_faiss(part, tmp / name)
            (tmp / "ids.txt").write_text("".join(i + "\n" for i in self.ids), encoding="utf-8")
            write_json(tmp / "meta.json", dict(self.meta, retriever="dense"))
            write_manifest(tmp)

    def save_card(self, out_dir: str | Path, card: dict) -> None:
        """Add a recall card to this index's saved folder, given the index files' size as ``index_bytes``, with the
        probe setting it chose in ``meta.json``; the manifest is written again last."""
        out_dir = Path(out_dir)
        size = sum((out_dir / name).stat().st_size for name in index_files(len(self.parts)))
        write_json(out_dir / "recall_card.json", dict(card, index_bytes=size))
        write_json(out_dir / "meta.json", dict(self.meta, retriever="dense"))
        write_manifest(out_dir)

    @classmethod
    def load(cls, index_dir: str | Path, mmap: bool = True, shard: int | None = None, verify: bool | None = False) -> DenseIndex:
        """Load an index folder, memory-mapped where FAISS supports it for the index type; ``shard``: only that shard
        of a sharded folder (its rows' ids; ``meta["first_row"]`` says where its rows start in the whole index).
        File sizes are checked against the manifest; with ``verify``, their checksums too."""
        index_dir = Path(index_dir)
        meta = read_json(index_dir / "meta.json")
        check_manifest(index_dir, checksums=verify)
        if meta.get("retriever") != "dense":
            raise DenseprError(f"{index_dir} is not a dense index (retriever={meta.get('retriever')!r})")
        files = index_files(int(meta.get("shards", 1)))
        if shard is not None and not 0 <= shard < len(files):
            raise DenseprError(f"{index_dir} has {len(files)} shard(s): no shard {shard}")
        parts = [_read_faiss(index_dir / name, mmap) for i, name in enumerate(files) if shard is None or i == shard]
        ids = read_ids(index_dir / "ids.txt", int(meta.get("size", 0)) or None)
        if shard is not None:
            first, stop = shard_ranges(len(ids), len(files))[shard]
            ids, meta = ids[first:stop], dict(meta, first_row=first, shards=1)
        first_flat = exact.flat_vectors(parts[0])
        if first_flat is not None:
            check_loaded(first_flat, ids, str(index_dir))
        loaded = cls(parts, ids, meta)
        loaded.configure(nprobe=meta.get("nprobe"), ef_search=meta.get("ef_search"))  # a recall card's choice
        return loaded


def write_faiss(index: faiss.Index, path: Path) -> None:
    """Write a FAISS index atomically through a Python file object, so that a full disk is an ``OSError`` naming
    the file (FAISS's own file writer prints to stderr and raises a bare ``RuntimeError``)."""
    with atomic_open(path, "wb") as fh:
        faiss.write_index(index, cast(Any, faiss).PyCallbackIOWriter(fh.write))


def index_files(shards: int) -> list[str]:
    """The FAISS files of an index folder: ``index.faiss``, or ``index-000.faiss``... for a sharded one."""
    return ["index.faiss"] if shards == 1 else [f"index-{i:03d}.faiss" for i in range(shards)]


def _read_faiss(path: Path, mmap: bool) -> faiss.Index:
    """One FAISS file, memory-mapped where FAISS supports it for the index type."""
    try:
        return faiss.read_index(str(path), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY) if mmap else faiss.read_index(str(path))
    except RuntimeError:
        try:
            return faiss.read_index(str(path))
        except RuntimeError as exc:
            raise DenseprError(f"{path}: unreadable FAISS index ({str(exc).splitlines()[0]})") from None

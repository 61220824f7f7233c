"""Choose an index for a RAM budget, and measure what it gives: the plan before building, the recall card after.

>>> plan(21_000_000, 768, parse_bytes("8GB")).kind
'ivfopq'
>>> plan(14_885, 384, parse_bytes("1GB")).kind
'flat'
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from densepr.errors import DenseprError

TRAIN_ROWS, TRAIN_BYTES = 200_000, 1 << 28
ID_BYTES = 16  # RAM counted per passage id: its text in ids.txt and an 8-byte offset (densepr.passage_ids)
SEARCH_FLOPS = 8e9  # float operations a second assumed for search on 2 CPU cores (a planning figure, not a measurement)
UNITS = {"": 1, "B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


def parse_bytes(text: str) -> int:
    """``"8GB"``, ``"512MiB"``, ``"2e9"`` → bytes; a one-line error otherwise."""
    m = re.fullmatch(r"\s*([0-9.eE+]+)\s*([A-Za-z]*)\s*", text)
    if not m or m.group(2).upper() not in UNITS:
        raise DenseprError(f"cannot read {text!r} as a size: give e.g. 8GB, 512MiB or 2e9")
    return int(float(m.group(1)) * UNITS[m.group(2).upper()])


def train_rows(n: int, dim: int) -> int:
    """Rows a quantiser (IVF centroids, PQ or SQ codebooks) trains on: at most 200,000, and 256 MB as float32
    (FAISS copies the sample once more, as residuals)."""
    return min(n, TRAIN_ROWS, TRAIN_BYTES // (4 * dim))


def ivf_lists(n: int, dim: int) -> int:
    """About 4·sqrt(n) lists, with at least 39 rows of the training sample each (FAISS's minimum for k-means):
    4,000 at 1M x 384, 4,481 at 21M x 384, 2,240 at 21M x 768."""
    return max(1, min(int(4 * math.sqrt(n)), train_rows(n, dim) // 39))


@dataclass
class Plan:
    """An index type with its parameters, and what it should cost."""

    kind: str
    params: dict[str, int] = field(default_factory=dict)
    bytes: int = 0  # predicted size in RAM (index + ids)
    search_ms: float = 0.0  # predicted single-query search time at the default probe
    reason: str = ""
    rejected: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def predicted_bytes(kind: str, n: int, dim: int, hnsw_m: int = 32, nlist: int = 0, pq_m: int = 0) -> int:
    """RAM of a FAISS index of ``n`` ``dim``-d vectors (codes, lists, graph links, centroids, rotation) plus its ids."""
    links = 2 * hnsw_m * 4 * 1.05
    codes = {"flat": 4 * dim, "hnsw": 4 * dim + links, "hnswsq8": dim + links, "sq8": dim, "sq4": dim / 2,
             "ivfsq8": dim + 8, "ivfpq": pq_m + 8, "ivfopq": pq_m + 8}[kind]
    fixed = (nlist * dim * 4 if kind.startswith("ivf") else 0) + (256 * dim * 4 if kind in ("ivfpq", "ivfopq") else 0) \
        + (dim * dim * 4 if kind == "ivfopq" else 0)
    return int(n * (codes + ID_BYTES) + fixed)


def _search_ms(kind: str, n: int, dim: int, nlist: int = 0, nprobe: int = 0, pq_m: int = 0) -> float:
    graph = 20 * math.log2(max(n, 2)) * 32
    scanned = {"flat": n, "sq8": n, "sq4": n, "hnsw": graph, "hnswsq8": graph}.get(kind, n * nprobe / max(nlist, 1))
    per_code = pq_m or dim  # a PQ code costs a table look-up per byte, any other vector a multiply-add per dimension
    return 1000 * 2 * (scanned * per_code + nlist * dim) / SEARCH_FLOPS


def plan(n: int, dim: int, budget: int, latency_ms: float | None = None) -> Plan:
    """The most exact index that fits ``budget`` bytes (and, if given, ``latency_ms`` per query).

    Preference: flat (exact) > HNSW (fast, near exact) > HNSW over 8-bit codes > SQ8 (exact search over 8-bit codes)
    > IVF-SQ8 > SQ4 > OPQ + IVF-PQ with the most bytes per vector that fit (``dim/2`` … 8; the learnt rotation gave
    recall@100 0.74 vs 0.67 at 24 bytes, 0.84 vs 0.79 at 48, on 300k MiniLM-derived vectors). Search time is
    predicted for IVF at ``nprobe = 64`` (what recall@100 ≈ 0.95 took at 1M vectors); the recall card then measures
    and tunes it.
    """
    if n < 1 or dim < 1:
        raise DenseprError(f"nothing to plan for {n} vectors of dimension {dim}")
    nlist = ivf_lists(n, dim)
    pq_ms = dict.fromkeys(m for m in (dim // 2, dim // 4, dim // 8, dim // 16, 8) if m >= 1 and dim % m == 0)
    candidates: list[tuple[str, dict[str, int]]] = [("flat", {}), ("hnsw", {"hnsw_m": 32}), ("hnswsq8", {"hnsw_m": 32}),
                                                    ("sq8", {}), ("ivfsq8", {"nlist": nlist}), ("sq4", {})]
    candidates += [("ivfopq", {"nlist": nlist, "pq_m": m}) for m in pq_ms]
    rejected = []
    for kind, params in candidates:
        size = predicted_bytes(kind, n, dim, **params)
        ms = _search_ms(kind, n, dim, params.get("nlist", 0), min(64, params.get("nlist", 0)), params.get("pq_m", 0))
        label = f"{kind}{params or ''}"
        if size > budget:
            rejected.append(f"{label}: {size / 1e9:.2f} GB > budget {budget / 1e9:.2f} GB")
        elif latency_ms is not None and ms > latency_ms:
            rejected.append(f"{label}: ~{ms:.0f} ms a query > target {latency_ms:g} ms")
        else:
            return Plan(kind, params, size, ms, f"the most exact index within {budget / 1e9:.2f} GB"
                        + (f" and {latency_ms:g} ms" if latency_ms is not None else ""), rejected)
    raise DenseprError(f"no index of {n:,} {dim}-d vectors fits {budget / 1e9:.2f} GB"
                       + (f" and {latency_ms:g} ms" if latency_ms is not None else "")
                       + f": the smallest needs {predicted_bytes('ivfopq', n, dim, nlist=nlist, pq_m=8) / 1e9:.2f} GB")


def probe_queries(rows: Any, count: int = 1000, seed: int = 0) -> np.ndarray:
    """Queries near the data but not in it: the midpoints of random pairs of indexed vectors (``rows``: an array, or
    an ``EmbeddingRows`` reading them from disk)."""
    rng = np.random.default_rng(seed)
    a, b = rng.integers(len(rows), size=(2, count))
    return np.ascontiguousarray((np.asarray(rows[a], np.float32) + np.asarray(rows[b], np.float32)) / 2)


def exact_top_k(rows: Any, queries: np.ndarray, k: int, chunk: int = 16_384) -> np.ndarray:
    """Exact inner-product top-k row numbers for ``queries``, ``chunk`` rows at a time (an array, or an
    ``EmbeddingRows`` reading them from disk): the ground truth of a recall card, without a flat copy in memory.
    Each block's own top-k is merged into the best so far, so memory stays at one block's scores."""
    best_scores = np.full((len(queries), 0), -np.inf, dtype=np.float32)
    best_rows = np.empty((len(queries), 0), dtype=np.int64)
    for first in range(0, len(rows), chunk):
        scores = queries @ np.asarray(rows[first : first + chunk], dtype=np.float32).T
        numbers = np.arange(first, first + scores.shape[1])
        if scores.shape[1] > k:
            keep = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            scores, numbers = np.take_along_axis(scores, keep, 1), numbers[keep]
        else:
            numbers = np.broadcast_to(numbers, scores.shape)
        scores, numbers = np.concatenate([best_scores, scores], 1), np.concatenate([best_rows, numbers], 1)
        keep = np.argpartition(-scores, k - 1, axis=1)[:, :k] if scores.shape[1] > k else np.argsort(-scores, axis=1)
        best_scores, best_rows = np.take_along_axis(scores, keep, 1), np.take_along_axis(numbers, keep, 1)
    order = np.lexsort((best_rows, -best_scores), axis=1)  # by score, ties by row (as FAISS's flat search)
    return np.take_along_axis(best_rows, order, 1)


def recall_card(index: Any, rows: Any, recall_target: float = 0.95, queries: int | np.ndarray = 1000, k: int = 100,
                plateau: float = 0.002, query_kind: str = "question vectors") -> dict:
    """Recall@10/100 against exact search and queries/s for each probe setting tried, doubling it; sets the index to the
    smallest setting reaching ``recall_target`` at 100, or, where recall stops rising (by less than ``plateau`` a
    doubling: the codes, not the probing, limit it), to the setting before the plateau, and records it. ``rows``: the
    indexed vectors, an array or an ``EmbeddingRows`` (read from disk). ``queries``: query vectors (real questions',
    named by ``query_kind``), or how many midpoints of random pairs of indexed vectors to use."""
    if isinstance(queries, np.ndarray):
        q = np.ascontiguousarray(queries, dtype=np.float32)
    else:
        q, query_kind = probe_queries(rows, queries), "midpoints of random pairs of indexed vectors"
    k = min(k, len(rows))
    kind, trials = index.meta["type"], []
    exact = index.search(q, k)[1] if kind == "flat" else exact_top_k(rows, q, k)  # a flat index is exact already
    knob = "nprobe" if kind.startswith("ivf") else "ef_search" if kind.startswith("hnsw") else None
    settings: list[Any] = [16, 32, 64, 128, 256, 512] if knob == "ef_search" else [None]
    if knob == "nprobe":
        from faiss import extract_index_ivf

        lists = extract_index_ivf(index.index).nlist
        settings = [p for p in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) if p < lists] + [lists]
    chosen = None
    for value in settings:
        if knob:
            index.configure(**{knob: value})
        start = time.perf_counter()
        _, found = index.search(q, k)
        qps = len(q) / (time.perf_counter() - start)
        r10 = float(np.mean([len(set(a[:10]) & set(b[:10])) / min(10, k) for a, b in zip(found, exact)]))
        r100 = float(np.mean([len(set(a) & set(b)) / k for a, b in zip(found, exact)]))
        trials.append({knob or "setting": value, "recall@10": r10, f"recall@{k}": r100, "queries_per_s": qps})
        if r100 >= recall_target:
            chosen = trials[-1]
            break
        if len(trials) > 1 and r100 - trials[-2][f"recall@{k}"] < plateau:
            chosen = trials[-2]
            break
    chosen = chosen or trials[-1]
    if knob:
        index.configure(**{knob: chosen[knob]})
        index.meta[knob] = chosen[knob]
    return {"type": kind, "vectors": len(rows), "queries": len(q), "query_kind": query_kind,
            "recall_target": recall_target, "trials": trials, "chosen": chosen,
            "met_target": chosen[f"recall@{k}"] >= recall_target}

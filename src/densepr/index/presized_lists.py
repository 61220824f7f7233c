"""IVF inverted lists sized before they are filled, so that a streamed build holds no spare capacity.

``index.add`` grows each inverted list as a vector that doubles when full: at 21M rows it held ~0.9 GB beyond the
index's own bytes at the end of the build. Here the rows' lists are found first (one pass over the rows), every list
is sized to its count, and the codes are then written in place, row order kept within each list. The result is the
index ``add`` gives, byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import faiss
import numpy as np

from densepr.index.faiss_index import pq_block_rows


def ivf_parts(index: faiss.Index) -> tuple[list[Any], Any]:
    """An IVF index's input transforms (an OPQ rotation, say) and the IVF index under them."""
    transforms = []
    if isinstance(index, faiss.IndexPreTransform):
        chain: Any = index.chain  # a SWIG vector (typed as a list by FAISS's stubs)
        transforms = [faiss.downcast_VectorTransform(chain.at(i)) for i in range(chain.size())]
    return transforms, faiss.downcast_index(faiss.extract_index_ivf(index))


def transformed(transforms: list[Any], block: np.ndarray) -> np.ndarray:
    for transform in transforms:
        block = transform.apply(block)
    return np.ascontiguousarray(block, dtype=np.float32)


def assign_lists(template: faiss.Index, chunks: Iterator[tuple[int, np.ndarray]], n: int) -> np.ndarray:
    """The IVF list of each of ``n`` rows (``chunks``: ``(first row, block)`` pairs covering them)."""
    transforms, ivf = ivf_parts(template)
    lists = np.empty(n, dtype=np.int32)
    for first, block in chunks:
        lists[first : first + len(block)] = ivf.quantizer.assign(transformed(transforms, block), 1).ravel()
    return lists


class ListFiller:
    """Writes rows' codes into IVF parts whose lists were sized for them (one part a shard of contiguous rows)."""

    def __init__(self, parts: list[faiss.Index], ranges: list[tuple[int, int]], lists: np.ndarray, done: int = 0):
        self.parts, self.ranges, self.lists = parts, ranges, lists
        self.transforms, ivf = ivf_parts(parts[0])
        self.ivfs = [ivf_parts(part)[1] for part in parts]
        self.nlist, self.code_size = ivf.nlist, ivf.code_size
        pq = getattr(ivf, "pq", None)  # IVF-SQ8 has no PQ table to bound: a chunk is encoded at once
        self.encode_rows = pq_block_rows(pq.M, pq.ksub) if pq is not None else max(1, len(lists))
        self.filled = [np.bincount(lists[a : max(a, min(b, done))], minlength=self.nlist).astype(np.int64)
                       for a, b in ranges]  # rows already written to each list of each part

    def size_lists(self) -> None:
        """Size every list of every (empty) part to its rows; the parts then count all their rows."""
        for part, ivf, (a, b) in zip(self.parts, self.ivfs, self.ranges):
            for list_no, count in enumerate(np.bincount(self.lists[a:b], minlength=self.nlist).tolist()):
                ivf.invlists.resize(list_no, count)
            ivf.ntotal = part.ntotal = b - a

    def add(self, first: int, block: np.ndarray) -> None:
        """Write the codes of rows ``first``… (``block``) into their parts' lists."""
        lists = self.lists[first : first + len(block)].astype(np.int64)
        x = transformed(self.transforms, block)
        codes = np.empty((len(block), self.code_size), dtype=np.uint8)
        for lo in range(0, len(block), self.encode_rows):  # bounded PQ encoding tables (faiss_index.PQ_TABLE_BYTES)
            hi = lo + self.encode_rows
            self.ivfs[0].encode_vectors(len(x[lo:hi]), faiss.swig_ptr(x[lo:hi]), faiss.swig_ptr(lists[lo:hi]),
                                        faiss.swig_ptr(codes[lo:hi]))
        for ivf, filled, (a, b) in zip(self.ivfs, self.filled, self.ranges):
            lo, hi = max(a, first) - first, min(b, first + len(block)) - first
            if lo >= hi:
                continue
            order = lo + np.argsort(lists[lo:hi], kind="stable")
            numbers, starts = np.unique(lists[order], return_index=True)
            for list_no, start, stop in zip(numbers.tolist(), starts.tolist(), [*starts[1:].tolist(), len(order)]):
                rows = order[start:stop]
                ids = np.ascontiguousarray(rows + first - a, dtype=np.int64)  # ids count from the part's first row
                entry = np.ascontiguousarray(codes[rows])
                ivf.invlists.update_entries(list_no, int(filled[list_no]), len(rows), faiss.swig_ptr(ids),
                                            faiss.swig_ptr(entry))
                filled[list_no] += len(rows)

"""Sanity of passage vectors before they are saved or indexed: no NaN or Inf, and norms that look like the model's."""

from __future__ import annotations

import logging
from typing import Protocol

import numpy as np

from densepr.errors import DenseprError

log = logging.getLogger("densepr")
CHUNK = 16_384  # rows checked at a time


class Rows(Protocol):
    """A matrix, in memory or read from disk a slice at a time."""

    def __len__(self) -> int: ...
    def __getitem__(self, key: slice) -> np.ndarray: ...


class Ids(Protocol):
    """Passage ids by row."""

    def __getitem__(self, row: int) -> str: ...


def _listed(ids: Ids, rows: np.ndarray, most: int = 5) -> str:
    shown = ", ".join(str(ids[int(i)]) for i in rows[:most])
    return shown + (f" and {len(rows) - most} more" if len(rows) > most else "")


def check_vectors(vectors: Rows | np.ndarray, ids: Ids, where: str) -> None:
    """Refuse vectors holding NaN or Inf (one line naming their passages); warn about norm outliers.

    For a unit-norm model (median norm 1) an outlier is a norm off by more than 1%; otherwise one further from the
    median than 10 median absolute deviations. A flipped byte in a float usually shows as one or the other.
    """
    if not len(vectors):
        return
    norms = np.empty(len(vectors))
    for start in range(0, len(vectors), CHUNK):  # in chunks: memory-mapped shards are read once, never copied whole
        norms[start : start + CHUNK] = np.linalg.norm(np.asarray(vectors[start : start + CHUNK], dtype=np.float64), axis=1)
    if not np.isfinite(norms).all():  # a NaN or Inf anywhere in a row makes its norm NaN or Inf
        bad = np.flatnonzero(~np.isfinite(norms))
        raise DenseprError(f"{where}: {len(bad)} vector(s) hold NaN or Inf (passages {_listed(ids, bad)}); "
                           "encode them again")
    median = float(np.median(norms))
    if abs(median - 1.0) < 1e-3:
        outliers = np.flatnonzero(np.abs(norms - 1.0) > 0.01)
    else:
        spread = max(float(np.median(np.abs(norms - median))), 1e-6 * median)
        outliers = np.flatnonzero(np.abs(norms - median) > 10 * spread)
    if len(outliers):
        log.warning("%s: %d vector(s) with unusual norms (median %.4g): passages %s (norms %s)", where, len(outliers),
                    median, _listed(ids, outliers), ", ".join(f"{norms[i]:.4g}" for i in outliers[:5]))


class _Picked:
    """The ids of some rows, by their position among those rows."""

    def __init__(self, ids: Ids, rows: np.ndarray):
        self.ids, self.rows = ids, rows

    def __getitem__(self, row: int) -> str:
        return self.ids[int(self.rows[row])]


def check_loaded(vectors: np.ndarray, ids: Ids, where: str, most: int = 100_000) -> None:
    """:func:`check_vectors` on an index's stored vectors as it loads: all of them, or ``most`` spread evenly (what
    checksums cannot catch: an index built from bad vectors)."""
    rows = np.arange(0, len(vectors), max(1, len(vectors) // most))
    check_vectors(vectors[rows], _Picked(ids, rows), where)

"""Reading an embeddings folder (``densepr encode``'s ``shard-III-of-NNN.npy`` + ids + ``meta.json``) a few rows
at a time, checked when opened: what out-of-core index builds and :func:`load_embeddings` read through."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from densepr.errors import DenseprError
from densepr.fileio import check_manifest, read_json


def shard_name(shard_id: int, num_shards: int) -> str:
    return f"shard-{shard_id:03d}-of-{num_shards:03d}"


class EmbeddingRows:
    """The rows of an embeddings folder (``densepr encode``), read from its ``.npy`` shards on demand as float32.

    Opening checks the folder: its manifests (sizes; checksums too with ``verify``), every shard's header and size,
    its ids file, and the row count against ``meta.json``. ``rows[a:b]`` reads a slice, ``rows[array]`` those rows.
    """

    def __init__(self, emb_dir: str | Path, verify: bool = False):
        self.dir = Path(emb_dir)
        self.meta = read_json(self.dir / "meta.json")
        check_manifest(self.dir, checksums=verify)
        count = int(self.meta["num_shards"])
        self.files: list[tuple[Path, int, np.dtype, int]] = []  # (path, data offset, dtype, rows)
        dims = set()
        for i in range(count):
            path = self.dir / f"{shard_name(i, count)}.npy"
            if not path.is_file():
                raise DenseprError(f"{self.dir}: shard {i} of {count} is missing or unfinished; run: densepr encode ... "
                                   f"--shard-id {i} --num-shards {count}")
            try:
                with open(path, "rb") as fh:
                    header = (np.lib.format.read_array_header_1_0 if np.lib.format.read_magic(fh) == (1, 0)
                              else np.lib.format.read_array_header_2_0)
                    shape, fortran, dtype = header(fh)
                    offset = fh.tell()
            except (ValueError, OSError, EOFError) as exc:
                raise DenseprError(f"{path}: unreadable embeddings ({str(exc).splitlines()[0]}); encode the shard again") from None
            if len(shape) != 2 or fortran or dtype not in (np.float32, np.float16):
                raise DenseprError(f"{path}: expected a C-order float32 or float16 matrix, got {dtype} {shape}")
            if path.stat().st_size < offset + shape[0] * shape[1] * dtype.itemsize:
                raise DenseprError(f"{path}: truncated ({path.stat().st_size} bytes for {shape[0]} rows); encode the shard again")
            if not path.with_suffix(".ids.txt").is_file():
                raise DenseprError(f"{path.with_suffix('.ids.txt')}: missing; encode the shard again")
            self.files.append((path, offset, dtype, int(shape[0])))
            dims.add(int(shape[1]))
        if len(dims) != 1:
            raise DenseprError(f"{self.dir}: shards of different dimensions {sorted(dims)}")
        self.dim = dims.pop()
        self.starts = np.cumsum([0] + [f[3] for f in self.files])
        if self.meta.get("num_passages") not in (None, len(self)):
            raise DenseprError(f"{self.dir}: {len(self)} vectors for {self.meta['num_passages']} passages: inconsistent shards")

    def __len__(self) -> int:
        return int(self.starts[-1])

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a new float32 array."""
        out = np.empty((stop - start, self.dim), dtype=np.float32)
        row = start
        while row < stop:
            i = int(np.searchsorted(self.starts, row, side="right")) - 1
            path, offset, dtype, rows = self.files[i]
            first, last = row - int(self.starts[i]), min(stop - int(self.starts[i]), rows)
            with open(path, "rb") as fh:
                fh.seek(offset + first * self.dim * dtype.itemsize)
                block = np.fromfile(fh, dtype=dtype, count=(last - first) * self.dim)
            out[row - start : row - start + last - first] = block.reshape(-1, self.dim)
            row += last - first
        return out

    def __getitem__(self, key: slice | np.ndarray) -> np.ndarray:
        if isinstance(key, slice):
            start, stop, _ = key.indices(len(self))
            return self.read(start, stop)
        return self.take(key)

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The given rows (any order), each read on its own into one new array."""
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        for i, row in enumerate(rows):
            out[i] = self.read(int(row), int(row) + 1)[0]
        return out

    def chunks(self, start: int = 0, size: int = 65_536) -> Iterator[tuple[int, np.ndarray]]:
        for first in range(start, len(self), size):
            yield first, self.read(first, min(first + size, len(self)))

    def ids(self) -> Iterator[str]:
        """Passage ids in row order, read a shard at a time."""
        for path, *_ in self.files:
            with open(path.with_suffix(".ids.txt"), encoding="utf-8") as fh:
                for line in fh:
                    yield line.rstrip("\n")


class IdLookup:
    """``ids[row]`` for the few rows an error names, read from the shards' id files (no list of all ids)."""

    def __init__(self, rows: EmbeddingRows):
        self.rows = rows

    def __getitem__(self, row: int) -> str:
        return next(itertools.islice(self.rows.ids(), row, None))

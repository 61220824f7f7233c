"""An index's row → passage-id map, read from its ``ids.txt`` into two arrays instead of one Python string a row.

For 21,015,324 ids of up to 8 digits a list of strings took 1,448 MB; :class:`PassageIds` took 330 MB, the file's bytes
plus 8 bytes a row, and decodes an id when it is asked for.

>>> ids = PassageIds.from_lines(["a1", "b2", "c3"])
>>> ids[1], len(ids), list(ids[1:])
('b2', 3, ['b2', 'c3'])
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import numpy as np

from densepr.errors import DenseprError


class PassageIds(Sequence[str]):
    """Passage ids as the UTF-8 lines of ``data``, line ``i`` spanning ``[offsets[i], offsets[i + 1] - 1)`` (its
    newline dropped, and a ``\\r`` before it); equal to a list of the same strings."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray):
        self.data, self.offsets = data, offsets

    @classmethod
    def from_bytes(cls, data: np.ndarray) -> PassageIds:
        """Ids from the bytes of an ``ids.txt``: one id a line, ``\\n`` or ``\\r\\n`` ended."""
        if len(data) and data[-1] != 10:  # a last line without its newline
            data = np.append(data, np.uint8(10))
        return cls(data, np.concatenate([[0], np.flatnonzero(data == 10) + 1]).astype(np.int64))

    @classmethod
    def from_lines(cls, ids: Iterable[str]) -> PassageIds:
        return cls.from_bytes(np.frombuffer("".join(i + "\n" for i in ids).encode("utf-8"), np.uint8))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @overload
    def __getitem__(self, row: int) -> str: ...
    @overload
    def __getitem__(self, row: slice) -> PassageIds: ...

    def __getitem__(self, row: Any) -> Any:
        if isinstance(row, slice):
            first, stop, step = row.indices(len(self))
            if step != 1:
                raise DenseprError("passage ids slice with step 1 only")
            return PassageIds(self.data, self.offsets[first : max(first, stop) + 1])
        if not -len(self) <= row < len(self):
            raise IndexError(f"row {row} of {len(self)} passage ids")
        row %= len(self)
        return _decode(self.data[self.offsets[row] : self.offsets[row + 1] - 1])

    def __iter__(self) -> Iterator[str]:
        bounds = self.offsets.tolist()
        for a, b in zip(bounds[:-1], bounds[1:]):
            yield _decode(self.data[a : b - 1])

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PassageIds):
            if len(self) != len(other):
                return False
            a, b = (x.data[x.offsets[0] : x.offsets[-1]] for x in (self, other))
            if np.array_equal(self.offsets - self.offsets[0], other.offsets - other.offsets[0]) and np.array_equal(a, b):
                return True  # the same bytes line for line
            return all(x == y for x, y in zip(self, other))
        if isinstance(other, (list, tuple)):
            return len(self) == len(other) and all(x == y for x, y in zip(self, other))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # equal by content, like a list

    def __repr__(self) -> str:
        return f"PassageIds({len(self)} ids)"


def _decode(line: np.ndarray) -> str:
    raw = line.tobytes()
    return (raw[:-1] if raw.endswith(b"\r") else raw).decode("utf-8")


def read_ids(path: str | os.PathLike, expected: int | None) -> PassageIds:
    """An index's ``ids.txt``, one passage id a line; refused in one line when missing or not ``expected`` long."""
    path = Path(path)
    if not path.is_file():
        raise DenseprError(f"{path}: missing; build the index again")
    ids = PassageIds.from_bytes(np.fromfile(path, dtype=np.uint8))
    if expected is not None and len(ids) != expected:
        raise DenseprError(f"{path}: {len(ids)} ids where the index holds {expected}; build the index again")
    return ids

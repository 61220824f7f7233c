"""Passages: splitting documents into disjoint word windows, and DPR's ``psgs_w100.tsv`` file.

The TSV has a header ``id<TAB>text<TAB>title`` and one passage a line, quoted the way
Python's ``csv`` module (and DPR) does, so files from DPR load unchanged.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from densepr.errors import DenseprError, at_line
from densepr.fileio import atomic_open, fingerprint
from densepr.hits import PassageRecord

log = logging.getLogger(__name__)

HEADER = ["id", "text", "title"]
csv.field_size_limit(1 << 30)


@dataclass(frozen=True)
class Passage:
    """One retrieval unit: DPR encodes it as ``title [SEP] text``."""

    id: str
    text: str
    title: str

    def ctx(self) -> PassageRecord:
        """The passage as a DPR result ctx: ``{"id", "title", "text"}``."""
        return {"id": self.id, "title": self.title, "text": self.text}


class Passages(Protocol):
    """What a searcher reads passages from: a :class:`PassageStore`, or a collection's live passages."""

    path: Path

    def __len__(self) -> int: ...

    def __getitem__(self, row: int) -> Passage: ...


def split_words(text: str, words_per_passage: int = 100) -> list[str]:
    """Split ``text`` into disjoint windows of ``words_per_passage`` whitespace words.

    >>> split_words("a b c d e", 2)
    ['a b', 'c d', 'e']
    """
    if words_per_passage < 1:
        raise DenseprError(f"words per passage must be >= 1, got {words_per_passage}")
    words = text.split()
    return [" ".join(words[i : i + words_per_passage]) for i in range(0, len(words), words_per_passage)]


def write_passages(path: str | os.PathLike, passages: Iterable[Passage]) -> int:
    """Write passages as DPR TSV, atomically; returns how many were written."""
    count = 0
    seen: set[str] = set()
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, delimiter="\t", lineterminator="\n")
        writer.writerow(HEADER)
        for p in passages:
            if p.id in seen:
                raise DenseprError(f"duplicate passage id {p.id!r}")
            seen.add(p.id)
            writer.writerow([p.id, " ".join(p.text.split()), " ".join(p.title.split())])
            count += 1
    return count


def _parse_row(path: Path, lineno: int, raw: bytes) -> Passage:
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise at_line(path, lineno, f"not UTF-8 text ({exc.reason})") from None
    try:
        fields = next(csv.reader(io.StringIO(line), delimiter="\t"))
    except (csv.Error, StopIteration) as exc:
        raise at_line(path, lineno, f"malformed TSV row ({exc or 'empty line'})") from None
    if len(fields) != 3:
        raise at_line(path, lineno, f"expected 3 tab-separated fields (id, text, title), got {len(fields)}")
    pid, text, title = fields
    if not pid.strip():
        raise at_line(path, lineno, "empty passage id")
    if not text.strip():
        raise at_line(path, lineno, f"passage {pid!r} has empty text")
    return Passage(pid, text, title)


class PassageStore:
    """Random access to a passages TSV without loading it: one byte offset per line.

    >>> store = PassageStore("psgs_w100.tsv")   # doctest: +SKIP
    >>> store[0].title, len(store)              # doctest: +SKIP
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise DenseprError(f"{self.path}: no such passages file")
        self._fh = open(self.path, "rb")
        header = self._fh.readline().decode("utf-8", "replace").rstrip("\r\n").split("\t")
        if [h.strip().lower() for h in header] != HEADER:
            raise at_line(self.path, 1, f"expected DPR passages header 'id<TAB>text<TAB>title', got {header!r}")
        self._offsets = self._line_offsets()
        self._ids: dict[str, int] | None = None

    def _line_offsets(self) -> np.ndarray:
        """Byte offsets where each data line starts, plus the file size (numpy scan, no Python loop)."""
        size = self.path.stat().st_size
        data = np.memmap(self.path, dtype=np.uint8, mode="r")
        starts = np.concatenate([[0], np.flatnonzero(data == ord("\n")) + 1]).astype(np.int64)
        del data
        if starts[-1] == size:
            starts = starts[:-1]
        return np.append(starts, size)[1:]  # drop the header line

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, row: int) -> Passage:
        if not 0 <= row < len(self):
            raise DenseprError(f"passage row {row} out of range: {self.path} has {len(self)} passages")
        start, end = int(self._offsets[row]), int(self._offsets[row + 1])
        self._fh.seek(start)
        return _parse_row(self.path, row + 2, self._fh.read(end - start))

    def __iter__(self) -> Iterator[Passage]:
        return self.iter_range(0, len(self))

    def iter_range(self, start: int, stop: int) -> Iterator[Passage]:
        """Passages of rows ``start..stop-1``, read sequentially."""
        with open(self.path, "rb") as fh:
            fh.seek(int(self._offsets[start]))
            for row in range(start, stop):
                yield _parse_row(self.path, row + 2, fh.readline())

    def row_of(self, passage_id: str) -> int:
        """Row of a passage id (builds the id map on first use)."""
        if self._ids is None:
            ids: dict[str, int] = {}
            for row, p in enumerate(self):
                if p.id in ids:
                    raise DenseprError(f"{self.path}: duplicate passage id {p.id!r} (rows {ids[p.id] + 2} and {row + 2})")
                ids[p.id] = row
            self._ids = ids
        try:
            return self._ids[passage_id]
        except KeyError:
            raise DenseprError(f"unknown passage id {passage_id!r} in {self.path}") from None

    def fingerprint(self) -> str:
        """Identity of the file, recorded in indexes to catch corpus/index mismatches."""
        return fingerprint(self.path)

    def close(self) -> None:
        self._fh.close()

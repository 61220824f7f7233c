"""Passage ids held as bytes + offsets: the same strings, lengths and equalities as the list they replace."""

from __future__ import annotations

import numpy as np
import pytest

from densepr.errors import DenseprError
from densepr.passage_ids import PassageIds, read_ids

IDS = ["wiki:1", "wiki:22", "", "Zürich 3", "x" * 300, "last"]


def test_ids_read_back_as_written(tmp_path):
    (tmp_path / "ids.txt").write_text("".join(i + "\n" for i in IDS), encoding="utf-8")
    ids = read_ids(tmp_path / "ids.txt", len(IDS))
    assert list(ids) == IDS and [ids[i] for i in range(len(IDS))] == IDS and ids[-1] == "last" and ids[-6] == "wiki:1"
    assert ids == IDS and ids != IDS[:-1] and ids != IDS[:-1] + ["other"]
    assert list(ids[2:5]) == IDS[2:5] and ids[2:5][1] == "Zürich 3" and len(ids[4:2]) == 0
    assert ids.offsets.nbytes == 8 * (len(IDS) + 1)  # 8 bytes a row besides the text
    with pytest.raises(IndexError):
        ids[len(IDS)]


def test_crlf_lines_and_a_missing_last_newline(tmp_path):
    (tmp_path / "ids.txt").write_bytes(b"a\r\nb\r\nc")
    ids = read_ids(tmp_path / "ids.txt", 3)
    assert list(ids) == ["a", "b", "c"] and ids == PassageIds.from_lines(["a", "b", "c"])


def test_equality_between_reads_and_slices():
    ids = PassageIds.from_lines(IDS)
    again = PassageIds.from_bytes(np.frombuffer("\n".join(IDS).encode(), np.uint8))  # no final newline
    assert ids == again and ids[1:4] == again[1:4] and ids[1:4] == IDS[1:4] and ids[1:4] != ids[2:5]


def test_wrong_count_or_missing_file_is_one_line(tmp_path):
    (tmp_path / "ids.txt").write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(DenseprError, match="2 ids where the index holds 3"):
        read_ids(tmp_path / "ids.txt", 3)
    with pytest.raises(DenseprError, match="missing"):
        read_ids(tmp_path / "nope.txt", None)
    assert len(read_ids(tmp_path / "ids.txt", None)) == 2
    (tmp_path / "empty.txt").write_bytes(b"")
    assert list(read_ids(tmp_path / "empty.txt", 0)) == []

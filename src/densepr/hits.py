"""A retrieved passage row and its score."""

from __future__ import annotations

from typing import NamedTuple


class Hit(NamedTuple):
    """One retrieved passage: its row in the passage file and the retriever's score."""

    row: int
    score: float

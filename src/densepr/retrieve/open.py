"""Open any saved index folder as a retriever."""

from __future__ import annotations

from pathlib import Path

from densepr.errors import DenseprError
from densepr.fileio import read_json
from densepr.retrieve.dense import DenseRetriever
from densepr.sparse.bm25 import BM25Retriever

Retriever = BM25Retriever | DenseRetriever


def load_retriever(index_dir: str | Path, kind: str | None = None, **dense_options) -> Retriever:
    """A BM25 or dense retriever for ``index_dir``; ``kind`` (bm25|dense) must match the folder if given."""
    index_dir = Path(index_dir)
    if not (index_dir / "meta.json").is_file():
        raise DenseprError(f"{index_dir}: not an index folder (no meta.json); build one with 'densepr bm25' or 'densepr index'")
    found = read_json(index_dir / "meta.json").get("retriever")
    if kind and kind != found:
        raise DenseprError(f"{index_dir} is a {found} index, not {kind}")
    if found == "bm25":
        return BM25Retriever.load(index_dir)
    return DenseRetriever.load(index_dir, **dense_options)

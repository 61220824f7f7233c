"""The zero-setup path: a cached dense index over the built-in wiki-vital corpus, and ``ask``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from densepr import pipeline
from densepr.corpus.documents import WIKI_VITAL
from densepr.dense.loading import DEFAULT_MODEL
from densepr.retrieve.dense import DenseRetriever
from densepr.retrieve.results import open_passages

if TYPE_CHECKING:
    from densepr.read import Reader

log = logging.getLogger("densepr")


def default_index_home() -> Path:
    """Where the default corpus, embeddings and index are cached (``$XDG_CACHE_HOME/densepr``)."""
    return Path(platformdirs.user_cache_dir("densepr")) / "wiki-vital-minilm"


def ensure_default_index(home: Path | None = None, progress: bool = True) -> Path:
    """Build (once; resumable) passages, embeddings and a flat index for wiki-vital; returns the index folder."""
    home = home or default_index_home()
    index_dir = home / "index"
    if (index_dir / "meta.json").is_file():
        return index_dir
    log.info("first run: building the default index over %s in %s (a few minutes, once)", WIKI_VITAL, home)
    psgs = home / "psgs_w100.tsv"
    if not psgs.is_file():
        pipeline.make_passages([WIKI_VITAL], psgs)
    pipeline.encode(psgs, home / "embeddings", DEFAULT_MODEL, progress=progress)
    pipeline.build_index(home / "embeddings", index_dir)
    return index_dir


def ask(question: str, index_dir: Path | None = None, top_k: int = 5, model: str | None = None) -> list[dict]:
    """Top passages for one question: ``[{"id", "title", "text", "score"}]``."""
    retriever = DenseRetriever.load(index_dir or ensure_default_index(), model=model)
    store = open_passages(retriever.meta)
    hits = retriever.search([question], k=top_k)[0]
    return [{**store[hit.row].ctx(), "score": hit.score} for hit in hits]


def read_answer(question: str, passages: list[dict], reader: Reader | str | Path) -> dict:
    """The reader's answer from ``passages`` (as :func:`ask` returns them): ``{"answer", "passage", "passage_index", ...}``."""
    from densepr.read import Reader, predict

    return predict(reader if isinstance(reader, Reader) else Reader.load(reader), question, passages)

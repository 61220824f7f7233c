"""The zero-setup path: a cached dense index over the built-in wiki-vital corpus, and ``ask``."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import platformdirs

from densepr import pipeline
from densepr.corpus.documents import WIKI_VITAL
from densepr.dense.loading import DEFAULT_MODEL
from densepr.hits import PassageRecord, ScoredPassage
from densepr.retrieve.searcher import open_searcher
from densepr.retrieve.spec import SearchSpec

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
        pipeline.make_passages(inputs=[WIKI_VITAL], out=psgs)
    pipeline.encode(passages=psgs, out=home / "embeddings", model=DEFAULT_MODEL, progress=progress)
    pipeline.build_index(embeddings=home / "embeddings", out=index_dir)
    return index_dir


def default_spec(spec: SearchSpec | None = None, progress: bool = True) -> SearchSpec:
    """``spec``, or, where it names no index, the default dense index over wiki-vital (built on first use)."""
    spec = spec or SearchSpec()
    if spec.index or spec.bm25_index:
        return spec
    return dataclasses.replace(spec, kind=spec.kind or "dense", index=str(ensure_default_index(progress=progress)))


def ask(question: str, *, spec: SearchSpec | None = None, top_k: int = 5, progress: bool = True) -> list[ScoredPassage]:
    """Top passages for one question: ``[{"id", "title", "text", "score"}]`` (default: the wiki-vital index)."""
    return open_searcher(default_spec(spec, progress)).passages([question], top_k)[0]


def read_answer(question: str, passages: Sequence[PassageRecord], reader: Reader | str | Path) -> dict:
    """The reader's answer from ``passages`` (as :func:`ask` returns them): ``{"answer", "passage", "passage_index", ...}``."""
    from densepr.read import Reader, predict

    return predict(reader if isinstance(reader, Reader) else Reader.load(reader), question, passages)

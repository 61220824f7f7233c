"""A collection folder (``densepr collection create``) read back for search: its published version assembled into
BM25, dense and hybrid retrievers over one passage view.

Layout::

    kb/CURRENT                   the published version's number (replaced atomically: the one switch of a publish)
    kb/versions/000007.json      a version: settings, sources, each file's hash and documents (segment, rows)
    kb/segments/s000007/         immutable: passages.tsv, vectors.npy, terms.npz + vocab.txt, manifest
    kb/.lock                     held by the one create or sync that writes

The live passages are ordered by file path, then by document and passage within a file, and each passage's vector
and term counts depend on its text alone, so a collection loads the same rows, scores and ties whatever sequence of
syncs produced it: exactly what a fresh build over the same documents loads.

>>> passages, bm25, dense = load_collection("kb/", model)        # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from densepr.corpus.passages import Passage, PassageStore
from densepr.errors import DenseprError
from densepr.fileio import check_manifest, read_json
from densepr.vector_checks import check_loaded

if TYPE_CHECKING:  # faiss and bm25s load only when a collection is opened (a sync needs neither)
    from densepr.index.matrix import MatrixIndex
    from densepr.sparse.terms import TermBM25, TermCounts

log = logging.getLogger(__name__)
CURRENT, VERSIONS, SEGMENTS, LOCK = "CURRENT", "versions", "segments", ".lock"
PASSAGES_FILE, VECTORS_FILE = "passages.tsv", "vectors.npy"
FORMAT = 1


def version_path(folder: Path, version: int) -> Path:
    return folder / VERSIONS / f"{version:06d}.json"


def current_version(folder: str | os.PathLike) -> int | None:
    """The published version's number, or ``None`` before the first publish."""
    try:
        text = (Path(folder) / CURRENT).read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    if not text.isdigit():
        raise DenseprError(f"{folder}/{CURRENT}: not a version number ({text[:40]!r})")
    return int(text)


def read_version(folder: str | os.PathLike, version: int | None = None) -> dict[str, Any]:
    """A version's record (default: the published one)."""
    folder = Path(folder)
    if version is None:
        version = current_version(folder)
        if version is None:
            what = "an unfinished collection (run its create again)" if (folder / VERSIONS).is_dir() else "not a collection"
            raise DenseprError(f"{folder}: {what}; make one with 'densepr collection create DOCS --out {folder}'")
    record = read_json(version_path(folder, version))
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise DenseprError(f"{version_path(folder, version)}: not a collection version of format {FORMAT}")
    return record


def passage_ids(document: dict) -> list[str]:
    """The ids of a document's passages: ``<document id>#<n>``, from 1."""
    return [f"{document['id']}#{n}" for n in range(1, document["count"] + 1)]


def live_documents(record: dict) -> Iterator[dict]:
    """The version's documents in the canonical order (file path, then order within the file)."""
    for path in sorted(record["files"]):
        yield from record["files"][path].get("documents", [])


@dataclass
class Segment:
    """One segment's files, opened."""

    name: str
    passages: PassageStore
    vectors: np.ndarray
    terms: TermCounts

    @classmethod
    def open(cls, folder: Path, verify: bool | None = False) -> Segment:
        from densepr.sparse.terms import TermCounts

        check_manifest(folder, checksums=verify)
        try:
            vectors = np.load(folder / VECTORS_FILE, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DenseprError(f"{folder}: unreadable vectors ({str(exc).splitlines()[0][:200]})") from None
        return cls(folder.name, PassageStore(folder / PASSAGES_FILE), vectors, TermCounts.load(folder))


class CollectionPassages:
    """The live passages of a version, row by row in the canonical order (a
    :class:`~densepr.corpus.passages.PassageStore` to the searcher: ``[row]``, ``len``, ``path``)."""

    def __init__(self, folder: Path, segments: list[Segment], segment_of: np.ndarray, local_row: np.ndarray):
        self.path, self.segments = folder, segments
        self.segment_of, self.local_row = segment_of, local_row

    def __len__(self) -> int:
        return len(self.local_row)

    def __getitem__(self, row: int) -> Passage:
        if not 0 <= row < len(self):
            raise DenseprError(f"passage row {row} out of range: {self.path} has {len(self)} passages")
        return self.segments[int(self.segment_of[row])].passages[int(self.local_row[row])]

    def __iter__(self) -> Iterator[Passage]:
        return (self[row] for row in range(len(self)))

    def fingerprint(self) -> str:
        return str(self.path)

    def close(self) -> None:
        for segment in self.segments:
            segment.passages.close()


@dataclass
class LoadedCollection:
    """A version's passages, BM25 and dense index (the question encoder is the caller's)."""

    version: int
    record: dict
    passages: CollectionPassages
    bm25: TermBM25
    index: MatrixIndex


def load_collection(folder: str | os.PathLike, verify: bool | None = False, version: int | None = None) -> LoadedCollection:
    """Assemble the published version of a collection (or ``version``) for search."""
    folder = Path(folder)
    for attempt in range(3):  # a sync may publish (and drop an older version) while this reads
        number = version if version is not None else current_version(folder)
        record = read_version(folder, number)
        try:
            return _assemble(folder, int(record["version"]), record, verify)
        except (FileNotFoundError, DenseprError):
            if version is not None or attempt == 2 or current_version(folder) == number:
                raise
    raise AssertionError("unreachable")


def _assemble(folder: Path, number: int, record: dict, verify: bool | None) -> LoadedCollection:
    from densepr.index.matrix import MatrixIndex
    from densepr.sparse.terms import TermBM25, TermCounts

    documents = list(live_documents(record))
    if not documents:
        raise DenseprError(f"{folder}: version {number} holds no passages")
    names = sorted({d["segment"] for d in documents})
    segments = [Segment.open(folder / SEGMENTS / name, verify) for name in names]
    which = {name: i for i, name in enumerate(names)}
    segment_of = np.concatenate([np.full(d["count"], which[d["segment"]], np.int32) for d in documents])
    local_row = np.concatenate([np.arange(d["row"], d["row"] + d["count"], dtype=np.int64) for d in documents])
    ids = [pid for d in documents for pid in passage_ids(d)]
    for i, segment in enumerate(segments):
        rows = local_row[segment_of == i]
        if len(rows) and (rows.max() >= len(segment.passages) or len(segment.vectors) != len(segment.passages)):
            raise DenseprError(f"{folder}/{SEGMENTS}/{segment.name}: fewer rows than version {number} names; "
                               "run 'densepr collection sync' again")
    vectors = np.empty((len(ids), segments[0].vectors.shape[1]), dtype=np.float32)
    parts = []
    for i, segment in enumerate(segments):
        mine = np.flatnonzero(segment_of == i)
        vectors[mine] = segment.vectors[local_row[mine]]
        parts.append((segment.terms, local_row[mine], mine))
    order = np.argsort(np.concatenate([p[2] for p in parts]), kind="stable")
    gathered = TermCounts.gather([(terms, rows) for terms, rows, _ in parts])
    terms = TermCounts(gathered.vocab, gathered.matrix[order], gathered.lengths[order])
    settings = record["settings"]
    about = {"collection": str(folder), "version": number, "passages": str(folder), "model": settings["model"]}
    bm25 = TermBM25(terms, ids, about, k1=settings["k1"], b=settings["b"], stemmer=settings["stemmer"],
                    stopwords=settings["stopwords"])
    check_loaded(vectors, ids, str(folder))
    index = MatrixIndex(vectors, ids, about)
    return LoadedCollection(number, record, CollectionPassages(folder, segments, segment_of, local_row), bm25, index)

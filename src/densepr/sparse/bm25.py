"""BM25 over passages (Lucene scoring via ``bm25s``, Porter/Snowball stemming, English stopwords).

Defaults follow the DPR paper: k1 = 0.9, b = 0.4. A passage is indexed as ``title text``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

# bm25s imports JAX when it is installed and runs a top-k at import, and JAX then takes 75% of a GPU's memory
# (seen on an H200: two training processes ran out of memory). Selection runs on numpy below in any case.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import bm25s  # noqa: E402
import numpy as np  # noqa: E402
import Stemmer  # noqa: E402

from densepr.corpus.passages import PassageStore
from densepr.errors import DenseprError
from densepr.fileio import atomic_folder, check_manifest, read_json, write_json, write_manifest
from densepr.hits import Hit, Ranked
from densepr.passage_ids import read_ids

log = logging.getLogger(__name__)
logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG on import: its index-building chatter


class BM25Retriever:
    """A saved, memory-mappable BM25 index whose rows are the passage file's rows.

    >>> bm25 = BM25Retriever.build(PassageStore("psgs.tsv"))     # doctest: +SKIP
    >>> bm25.search(["who wrote hamlet"], k=5)[0][0].score       # doctest: +SKIP
    """

    def __init__(self, model: bm25s.BM25, ids: Sequence[str], meta: dict):
        self.model, self.ids, self.meta = model, ids, meta
        self._stemmer = Stemmer.Stemmer(meta["stemmer"]) if meta.get("stemmer") else None

    def _tokenize(self, texts: Sequence[str], return_ids: bool, progress: bool = False):
        return bm25s.tokenize(list(texts), stopwords=self.meta.get("stopwords"), stemmer=self._stemmer,
                              return_ids=return_ids, show_progress=progress)

    @classmethod
    def build(cls, passages: PassageStore, k1: float = 0.9, b: float = 0.4, stemmer: str | None = "english",
              stopwords: str | None = "en", progress: bool = True) -> BM25Retriever:
        """Index every passage of ``passages``."""
        if stemmer and stemmer not in Stemmer.algorithms():
            raise DenseprError(f"unknown stemmer {stemmer!r}; choose from {', '.join(Stemmer.algorithms())}")
        meta = {"retriever": "bm25", "k1": k1, "b": b, "method": "lucene", "stemmer": stemmer, "stopwords": stopwords,
                "passages": str(passages.path.resolve()), "passages_fingerprint": passages.fingerprint(), "size": len(passages)}
        ids, texts = [], []
        for p in passages:
            ids.append(p.id)
            texts.append(f"{p.title} {p.text}")
        if not texts:
            raise DenseprError(f"{passages.path}: no passages to index")
        retriever = cls(bm25s.BM25(method="lucene", k1=k1, b=b), ids, meta)
        retriever.model.index(retriever._tokenize(texts, return_ids=True, progress=progress), show_progress=progress)
        return retriever

    def search(self, questions: Sequence[str], k: int = 100, threads: int = 0) -> list[list[Hit]]:
        """Top-k passages per question, best first; passages sharing no term with it are left out."""
        return [r.hits() for r in self.ranked(questions, k, threads)]

    def ranked(self, questions: Sequence[str], k: int = 100, threads: int = 0) -> list[Ranked]:
        """:meth:`search`'s lists as arrays."""
        if not questions:
            return []
        k = min(k, len(self.ids))
        tokens = self._tokenize(questions, return_ids=False)
        rows, scores = self.model.retrieve(tokens, k=k, show_progress=False, n_threads=threads,
                                           backend_selection="numpy")
        return [Ranked(np.asarray(rr, dtype=np.int64)[ss > 0], ss[ss > 0]) for rr, ss in zip(rows, scores)]

    def scores(self, question: str, rows: np.ndarray) -> np.ndarray:
        """BM25 scores of ``question`` for the given passage rows (0 where no term matches)."""
        return self.model.get_scores(self._tokenize([question], return_ids=False)[0])[rows]

    def save(self, out_dir: str | os.PathLike) -> None:
        """Write the index folder whole: built beside it and swapped in by a rename, so a kill leaves the old
        folder or the new one, never bm25s's new matrices beside old ids."""
        with atomic_folder(Path(out_dir)) as tmp:
            self.model.save(tmp)
            (tmp / "ids.txt").write_text("".join(i + "\n" for i in self.ids), encoding="utf-8")
            write_json(tmp / "meta.json", self.meta)
            write_manifest(tmp)

    @classmethod
    def load(cls, index_dir: str | os.PathLike, mmap: bool = True, verify: bool | None = False) -> BM25Retriever:
        """Load an index folder (its files' sizes checked against the manifest; their checksums too with ``verify``)."""
        index_dir = Path(index_dir)
        meta = read_json(index_dir / "meta.json")
        check_manifest(index_dir, checksums=verify)
        if meta.get("retriever") != "bm25":
            raise DenseprError(f"{index_dir} is not a BM25 index (retriever={meta.get('retriever')!r})")
        try:
            model = bm25s.BM25.load(index_dir, mmap=mmap)
        except (OSError, ValueError, EOFError, KeyError) as exc:  # truncated or corrupt matrices or vocabulary
            raise DenseprError(f"{index_dir}: unreadable BM25 index ({str(exc).splitlines()[0][:200]}); build it again") from None
        return cls(model, read_ids(index_dir / "ids.txt", meta.get("size")), meta)

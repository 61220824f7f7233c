"""BM25 over stored term counts: the statistics (document frequencies, average length) are computed from the rows
held at load, so an index assembled from several segments scores exactly as one built over the same passages.

Scoring is bm25s's Lucene variant (``idf = ln(1 + (N - df + 0.5) / (df + 0.5))``, ``tf / (tf + k1·(1 - b + b·dl/avgdl))``)
with its tokeniser (English stopwords, Snowball stemming), in float64; each passage's score is summed over the
question's terms in their order, so it does not depend on where the passage sits.

>>> counts = TermCounts.count(["the cat sat", "a dog barked at the cat"])
>>> bm25 = TermBM25(counts, ["p1", "p2"])
>>> [(bm25.ids[h.row], round(h.score, 3)) for h in bm25.search(["dog"], k=2)[0]]
[('p2', 0.351)]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # as in densepr.sparse.bm25

import bm25s  # noqa: E402
import numpy as np  # noqa: E402
import Stemmer  # noqa: E402

from densepr.errors import DenseprError  # noqa: E402
from densepr.hits import Hit, Ranked  # noqa: E402

COUNTS_FILE, VOCAB_FILE = "terms.npz", "vocab.txt"


def tokenize(texts: Sequence[str], stemmer: str | None = "english", stopwords: str | None = "en") -> list[list[str]]:
    """Terms of each text, as :class:`~densepr.sparse.bm25.BM25Retriever` indexes them."""
    if not texts:
        return []
    stem = Stemmer.Stemmer(stemmer) if stemmer else None
    return bm25s.tokenize(list(texts), stopwords=stopwords, stemmer=stem, return_ids=False, show_progress=False)


@dataclass(frozen=True)
class Rows:
    """A compressed sparse row matrix in three numpy arrays (no scipy: the lean install has none): row ``r`` holds
    ``data[indptr[r]:indptr[r + 1]]`` at columns ``indices[...]``."""

    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    shape: tuple[int, int]

    def __getitem__(self, rows: np.ndarray) -> Rows:
        """The given rows, in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, sizes = self.indptr[rows], np.diff(self.indptr)[rows]
        indptr = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        take = np.repeat(starts - indptr[:-1], sizes) + np.arange(indptr[-1])
        return Rows(indptr, self.indices[take], self.data[take], (len(rows), self.shape[1]))

    def columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The same matrix by column (CSC): ``(indptr, rows, data)``, rows ascending within a column."""
        order = np.argsort(self.indices, kind="stable")  # rows are in order already: a stable sort keeps them so
        indptr = np.concatenate([[0], np.cumsum(np.bincount(self.indices, minlength=self.shape[1]))]).astype(np.int64)
        row_of = np.repeat(np.arange(self.shape[0]), np.diff(self.indptr))
        return indptr, row_of[order], self.data[order]


@dataclass(frozen=True)
class TermCounts:
    """Term counts of passages: a CSR matrix (passage rows × ``vocab`` columns) and each passage's length in terms."""

    vocab: list[str]
    matrix: Rows
    lengths: np.ndarray

    @classmethod
    def count(cls, texts: Sequence[str], stemmer: str | None = "english", stopwords: str | None = "en") -> TermCounts:
        """Count the terms of ``texts`` (one row each)."""
        vocab: dict[str, int] = {}
        indptr, indices, data, lengths = [0], [], [], []
        for terms in tokenize(texts, stemmer, stopwords):
            lengths.append(len(terms))
            row: dict[int, int] = {}
            for term in terms:
                col = vocab.setdefault(term, len(vocab))
                row[col] = row.get(col, 0) + 1
            cols = sorted(row)
            indices += cols
            data += [row[c] for c in cols]
            indptr.append(len(indices))
        matrix = Rows(np.asarray(indptr, np.int64), np.asarray(indices, np.int32), np.asarray(data, np.int32),
                      (len(texts), len(vocab)))
        return cls(list(vocab), matrix, np.asarray(lengths, dtype=np.int64))

    def save(self, folder: Path) -> None:
        """``terms.npz`` (the matrix and lengths) and ``vocab.txt`` (one term a line) into ``folder``."""
        m = self.matrix
        np.savez(folder / COUNTS_FILE, indptr=m.indptr, indices=m.indices, data=m.data, lengths=self.lengths,
                 shape=np.asarray(m.shape))
        (folder / VOCAB_FILE).write_text("".join(t + "\n" for t in self.vocab), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> TermCounts:
        try:
            with np.load(folder / COUNTS_FILE, allow_pickle=False) as z:
                matrix = Rows(z["indptr"], z["indices"], z["data"], (int(z["shape"][0]), int(z["shape"][1])))
                lengths = z["lengths"]
            vocab = (folder / VOCAB_FILE).read_text(encoding="utf-8").split("\n")[:-1]
        except (OSError, ValueError, KeyError) as exc:
            raise DenseprError(f"{folder}: unreadable term counts ({str(exc).splitlines()[0][:200]})") from None
        if len(vocab) != matrix.shape[1] or len(lengths) != matrix.shape[0]:
            raise DenseprError(f"{folder}: term counts and vocabulary disagree in size")
        return cls(vocab, matrix, lengths)

    @classmethod
    def gather(cls, parts: Sequence[tuple[TermCounts, np.ndarray]]) -> TermCounts:
        """The rows ``rows`` of each part, stacked in order, over one vocabulary (in order of first appearance)."""
        vocab: dict[str, int] = {}
        blocks, lengths = [], []
        for counts, rows in parts:
            remap = np.fromiter((vocab.setdefault(t, len(vocab)) for t in counts.vocab), np.int32, len(counts.vocab))
            block = counts.matrix[rows]
            blocks.append((block.indptr, remap[block.indices], block.data))
            lengths.append(counts.lengths[rows])
        indptr = [np.zeros(1, np.int64)]
        for ptr, _, _ in blocks:
            indptr.append(ptr[1:].astype(np.int64) + indptr[-1][-1])
        matrix = Rows(np.concatenate(indptr), np.concatenate([b[1] for b in blocks] or [np.zeros(0, np.int32)]),
                      np.concatenate([b[2] for b in blocks] or [np.zeros(0, np.int32)]),
                      (sum(len(r) for _, r in parts), len(vocab)))
        return cls(list(vocab), matrix, np.concatenate(lengths) if lengths else np.zeros(0, np.int64))


class TermBM25:
    """BM25 over :class:`TermCounts` (rows are passages ``ids``), with the search interface of
    :class:`~densepr.sparse.bm25.BM25Retriever`; ties are broken by row."""

    def __init__(self, counts: TermCounts, ids: Sequence[str], meta: dict | None = None, k1: float = 0.9, b: float = 0.4,
                 stemmer: str | None = "english", stopwords: str | None = "en"):
        if len(ids) != counts.matrix.shape[0]:
            raise DenseprError(f"{len(ids)} passage ids for {counts.matrix.shape[0]} rows of term counts")
        self.ids, self.stemmer, self.stopwords = ids, stemmer, stopwords
        self.meta = {"retriever": "bm25", "k1": k1, "b": b, "method": "lucene", "stemmer": stemmer,
                     "stopwords": stopwords, "size": len(ids), **(meta or {})}
        self.columns = {t: i for i, t in enumerate(counts.vocab)}
        indptr, rows, data = counts.matrix.columns()
        n = len(ids)
        avgdl = int(counts.lengths.sum()) / max(n, 1)
        df = np.diff(indptr)
        idf = np.log(1 + (n - df + 0.5) / (df + 0.5))
        norm = k1 * ((1 - b) + b * counts.lengths.astype(np.float64) / max(avgdl, 1e-12))
        tf = data.astype(np.float64)
        column_of = np.repeat(np.arange(len(df)), df)
        self._indptr, self._rows = indptr, rows
        self._weights = idf[column_of] * tf / (tf + norm[rows])  # each (passage, term) pair's score

    def _scores(self, question: str) -> np.ndarray:
        scores = np.zeros(len(self.ids))
        for term in tokenize([question], self.stemmer, self.stopwords)[0]:
            col = self.columns.get(term)
            if col is not None:
                a, z = self._indptr[col], self._indptr[col + 1]
                scores[self._rows[a:z]] += self._weights[a:z]
        return scores

    def ranked(self, questions: Sequence[str], k: int = 100, threads: int = 0) -> list[Ranked]:
        """Top-k rows and scores per question, best first; passages sharing no term are left out."""
        out = []
        for question in questions:
            scores = self._scores(question)
            rows = np.flatnonzero(scores > 0)
            if len(rows) > k:
                rows = rows[np.argpartition(-scores[rows], k - 1)[:k]]
                kth = scores[rows].min()
                rows = np.flatnonzero(scores >= kth)  # every row tied with the k-th, so ties break by row below
            rows = rows[np.lexsort((rows, -scores[rows]))][:k]
            out.append(Ranked(rows.astype(np.int64), scores[rows]))
        return out

    def search(self, questions: Sequence[str], k: int = 100, threads: int = 0) -> list[list[Hit]]:
        return [r.hits() for r in self.ranked(questions, k, threads)]

    def scores(self, question: str, rows: np.ndarray) -> np.ndarray:
        """BM25 scores of ``question`` for the given rows."""
        return self._scores(question)[rows]

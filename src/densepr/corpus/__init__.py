"""Corpus: documents → disjoint 100-word passages → DPR ``psgs_w100.tsv``."""

from densepr.corpus.documents import Document, documents_to_passages, read_documents
from densepr.corpus.passages import Passage, PassageStore, split_words, write_passages

__all__ = ["Document", "Passage", "PassageStore", "documents_to_passages", "read_documents", "split_words", "write_passages"]

"""Your own documents as a collection: one folder holding BM25, the dense index and the hybrid settings over a tree
of files, kept current by incremental syncs (:mod:`densepr.collection.build`)."""

from densepr.collection.build import add, create, info, remove, sync

__all__ = ["add", "create", "info", "remove", "sync"]

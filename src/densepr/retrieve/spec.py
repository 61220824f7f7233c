"""One retriever description: which indexes, which model, how to fuse. Read from and written to JSON and CLI options.

>>> spec = SearchSpec(kind="hybrid", index="flat/", bm25_index="bm25/", lam=20.0)
>>> SearchSpec.from_dict(spec.to_dict()) == spec
True
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from densepr.backends.choice import BACKENDS, PRECISIONS, BackendOptions
from densepr.errors import DenseprError
from densepr.fileio import read_json, write_json
from densepr.options import opt, to_argv
from densepr.retrieve.fusion import NORMALIZATIONS, RRF_K, Fusion, check_fusion

Kind = Literal["bm25", "dense", "hybrid"]
KINDS = ("bm25", "dense", "hybrid")
HYBRID_ONLY = ("bm25_index", "fusion", "lam", "depth", "normalize", "rrf_k")


@dataclass(kw_only=True)
class SearchSpec(BackendOptions):
    """Everything that decides a ranking; :func:`densepr.open_searcher` opens it.

    ``index`` is the dense index folder (``dense``, ``hybrid``) or the BM25 one (``bm25``); a hybrid's BM25
    folder is ``bm25_index``. Without ``kind``, it is read from the folders: both given → ``hybrid``. ``backend`` and
    ``precision`` say what runs the question encoder (:mod:`densepr.backends.choice`); they change no ranking beyond
    the agreement gate's tolerance.
    """

    collection: str | None = opt(None, help="a collection folder ('densepr collection create'): its BM25, dense index and "
                                            "hybrid settings, in place of --index and --bm25-index")
    kind: Kind | None = opt(None, flag="--retriever", choices=KINDS,
                            help="bm25, dense or hybrid (default: from the index folders; both given: hybrid)")
    index: str | None = opt(None, help="index folder: the dense one (dense, hybrid) or the BM25 one (bm25)")
    bm25_index: str | None = opt(None, help="hybrid: the BM25 index folder (--index is then the dense one)")
    model: str | None = opt(None, help="question encoder (default: the index's model)")
    allow_model_mismatch: bool = opt(False, help="allow a --model other than the index's")
    passages: str | None = opt(None, help="passages TSV (default: the one the indexes were built from)")
    fusion: Fusion = opt("linear", help="hybrid: linear score fusion BM25 + λ·dense (DPR), or reciprocal rank fusion")
    lam: float = opt(1.1, help="hybrid: weight λ of the dense score in BM25 + λ·dense (default 1.1; tune-hybrid finds one)")
    depth: int = opt(2000, help="hybrid: candidates taken from each retriever (default 2000)")
    normalize: str | None = opt(None, choices=NORMALIZATIONS, help="hybrid: normalise each list's scores before linear fusion")
    rrf_k: int = opt(RRF_K, help="hybrid: the k of reciprocal rank fusion, 1/(k + rank) (default 60)")
    nprobe: int | None = opt(None, help="IVF lists to probe (default: the index's)")
    ef_search: int | None = opt(None, help="HNSW search breadth (default: the index's)")
    ray_address: str | None = opt(None, help="search the index's shards (densepr index --shards N) in Ray actors, one a "
                                             "shard, with the same ranking as here: 'auto' (the cluster this machine "
                                             "joined with 'ray start'), HOST:PORT (its head node) or 'local' (a Ray "
                                             "started in this process); pip install 'densepr[ray]'")
    ray_cpus: int = opt(1, help="with --ray-address: CPUs each shard's actor reserves and searches with (default 1)")
    verify: bool | None = opt(None, help="check every index file's checksum against its manifest when loading: --verify "
                                         "always, --no-verify never (says so in one log line); default: folders of up to "
                                         "256 MB (a flipped byte changes no size, which is always checked)")

    def resolved(self) -> SearchSpec:
        """A checked copy with ``kind`` filled in (read from the folders' ``meta.json`` if not given)."""
        kind = self.kind
        if self.collection:
            if self.index or self.bm25_index:
                raise DenseprError("--collection holds its own indexes: give it, or --index/--bm25-index, not both")
            if not (Path(self.collection) / "CURRENT").is_file():
                raise DenseprError(f"{self.collection}: not a collection; make one with 'densepr collection create DOCS "
                                   f"--out {self.collection}'")
            kind = kind or "hybrid"
        elif kind is None:
            if self.index and self.bm25_index:
                kind = "hybrid"
            elif self.index or self.bm25_index:
                kind = "bm25" if self.bm25_index else _folder_kind(self.index)  # type: ignore[arg-type]
            else:
                raise DenseprError("give an index folder (--index DIR, or --bm25-index DIR, or a --spec file)")
        if kind not in KINDS:
            raise DenseprError(f"unknown retriever {kind!r}; choose from {', '.join(KINDS)}")
        spec = dataclasses.replace(self, kind=kind)
        spec.check()
        for folder in (spec.dense_dir, spec.bm25_dir):
            if folder:
                _folder_kind(folder)
        return spec

    def check(self) -> None:
        """One-line errors for options that do not fit together."""
        if not self.collection:
            self._check_folders()
        if self.ray_address and self.collection:
            raise DenseprError("--ray-address searches the shards of a dense index; a collection has none")
        check_fusion(self.fusion, self.normalize, self.depth, self.rrf_k)
        if self.ray_address and self.kind == "bm25":
            raise DenseprError("--ray-address searches the shards of a dense index; the bm25 retriever has none")
        if self.ray_cpus < 1:
            raise DenseprError(f"--ray-cpus must be at least 1, not {self.ray_cpus}")
        if self.backend not in BACKENDS:
            raise DenseprError(f"unknown backend {self.backend!r}; choose from {', '.join(BACKENDS)}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise DenseprError(f"unknown precision {self.precision!r}; choose from {', '.join(PRECISIONS)}")

    def _check_folders(self) -> None:
        if self.kind == "hybrid" and not (self.index and self.bm25_index):
            raise DenseprError("the hybrid retriever needs a BM25 index (--bm25-index DIR) besides the dense one (--index DIR)")
        if self.kind == "bm25" and self.index and self.bm25_index:
            raise DenseprError("the bm25 retriever takes one index folder: give --index or --bm25-index, not both")
        if self.kind == "dense" and not self.index:
            raise DenseprError("the dense retriever needs a dense index folder (--index DIR)")
        if self.kind != "hybrid" and self.bm25_index and self.index:
            raise DenseprError("--bm25-index, --lam, --depth, --fusion and --normalize need --retriever hybrid")

    @property
    def dense_dir(self) -> str | None:
        """The dense index folder, if this spec has one."""
        return self.index if self.kind in ("dense", "hybrid") and not self.collection else None

    @property
    def bm25_dir(self) -> str | None:
        """The BM25 index folder, if this spec has one."""
        if self.collection:
            return None
        return self.bm25_index if self.kind == "hybrid" else (self.bm25_index or self.index) if self.kind == "bm25" else None

    def part(self, kind: Kind) -> SearchSpec:
        """The spec of a hybrid's BM25 or dense half (the same folders, model and search knobs)."""
        if kind == "bm25":
            return dataclasses.replace(self, kind="bm25", index=self.bm25_dir, bm25_index=None)
        return dataclasses.replace(self, kind=kind, bm25_index=None if kind == "dense" else self.bm25_index)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_cli(self) -> list[str]:
        """The command-line options of this spec (``densepr retrieve`` reads them back to the same spec)."""
        return to_argv(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "spec") -> SearchSpec:
        """A spec from a dict (as :meth:`to_dict` writes); unknown keys are an error."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise DenseprError(f"{source}: unknown search spec field(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        return cls(**data)

    def save(self, path: str | os.PathLike) -> None:
        """Write the spec as JSON (atomically)."""
        write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> SearchSpec:
        """Read a spec JSON file (e.g. one ``densepr tune-hybrid --save-spec`` wrote)."""
        data = read_json(path)
        if not isinstance(data, dict):
            raise DenseprError(f"{path}: a search spec is a JSON object")
        return cls.from_dict(data, str(path))

def _folder_kind(index: str) -> Kind:
    meta = Path(index) / "meta.json"
    if not meta.is_file():
        raise DenseprError(f"{index}: not an index folder (no meta.json); build one with 'densepr bm25' or 'densepr index'")
    kind = read_json(meta).get("retriever")
    if kind not in ("bm25", "dense"):
        raise DenseprError(f"{meta}: unknown retriever {kind!r}")
    return kind

"""Out-of-core index builds: vectors stream from the embedding shards on disk in chunks, never all in memory, and a
killed build resumes from its last saved progress to the same index bytes as an uninterrupted one.

The quantiser (IVF centroids, PQ or SQ codebooks) trains on a sample of rows; the rows are then added chunk by chunk,
read with plain file reads (no memory map, so no page of the shards stays resident). IVF lists are sized to their rows
before they are filled (:mod:`densepr.index.presized_lists`). Progress (the partial FAISS
files and the rows added) is saved beside the output every ``save_seconds``.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import faiss
import numpy as np
from tqdm.auto import tqdm

from densepr.errors import DenseprError
from densepr.fileio import atomic_folder, read_json, save_npy, write_json, write_manifest
from densepr.hardware import peak_rss_mb
from densepr.index.faiss_index import DenseIndex, build_faiss, index_files, shard_ranges, write_faiss
from densepr.index.planner import ivf_lists, train_rows
from densepr.index.presized_lists import ListFiller, assign_lists
from densepr.passage_ids import read_ids

log = logging.getLogger(__name__)


class Rows(Protocol):
    """What a build reads its vectors through: ``densepr.dense.embedding_rows.EmbeddingRows``."""

    dir: Path
    dim: int
    files: list[tuple[Path, int, np.dtype, int]]

    def __len__(self) -> int: ...
    def read(self, start: int, stop: int) -> np.ndarray: ...
    def take(self, rows: np.ndarray) -> np.ndarray: ...
    def chunks(self, start: int = 0, size: int = 65_536) -> Iterator[tuple[int, np.ndarray]]: ...
    def ids(self) -> Iterator[str]: ...


def build_streaming(rows: Rows, out: str | Path, kind: str, meta: dict, shards: int = 1, chunk: int = 32_768,
                    save_seconds: float = 60.0, train_size: int = 200_000, seed: int = 0, progress: bool = True,
                    **params: Any) -> DenseIndex:
    """Build an index folder of ``kind`` over ``rows`` without holding them in memory; returns the index it wrote
    (the built parts, not a second copy read back).

    Resumes from ``.build-<name>/`` beside ``out`` when a build with the same settings and rows was killed."""
    out = Path(out)
    n, dim = len(rows), rows.dim
    if n == 0:
        raise DenseprError("no vectors to index")
    if kind.startswith("ivf"):
        params.setdefault("nlist", ivf_lists(n, dim))
    work = out.parent / f".build-{out.name}"
    settings = {"kind": kind, "params": params, "shards": shards, "rows": n, "dim": dim, "seed": seed,
                "train_size": train_size, "embeddings": {k: meta.get(k) for k in ("model", "passages_fingerprint")},
                "shard_bytes": [f[0].stat().st_size for f in rows.files]}
    started = time.perf_counter()
    ranges = shard_ranges(n, shards)
    done, parts = _resume(work, settings, shards)
    lists = np.empty(0, dtype=np.int32)  # each row's IVF list (IVF kinds)
    if parts is None:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        trained = kind not in ("flat", "hnsw")  # the others learn centroids, codebooks or ranges from a sample
        size = min(train_size, train_rows(n, dim))
        sample = rows.take(np.sort(np.random.default_rng(seed).choice(n, size=size, replace=False))) if trained else rows.read(0, 1)
        template = build_faiss(sample, kind, seed=seed, add=False, total=n, **params)
        if trained:
            log.info("trained the %s quantiser on %d of %d rows in %.1fs", kind, len(sample), n, time.perf_counter() - started)
        del sample
        parts = [faiss.clone_index(template) for _ in range(shards)]
        if kind.startswith("ivf"):  # each row's list first, then lists sized to their rows (no spare capacity)
            assigning = tqdm(rows.chunks(0, chunk), total=-(-n // chunk), unit="chunk", desc="assign IVF lists",
                             disable=not progress)
            lists = assign_lists(template, assigning, n)
            save_npy(work / "lists.npy", lists)
            ListFiller(parts, ranges, lists).size_lists()
            _save_progress(work, parts, settings, 0)
    elif kind.startswith("ivf"):
        lists = np.load(work / "lists.npy")
    filler = ListFiller(parts, ranges, lists, done) if kind.startswith("ivf") else None
    last_save = time.monotonic()
    bar = tqdm(total=n, initial=done, unit="vec", desc=f"index {out.name}", disable=not progress)
    for first, block in rows.chunks(done, chunk):
        if filler is not None:
            filler.add(first, block)
        else:
            for part, (a, b) in zip(parts, ranges):
                lo, hi = max(a, first), min(b, first + len(block))
                if lo < hi:
                    part.add(block[lo - first : hi - first])
        done = first + len(block)
        bar.update(len(block))
        if done < n and time.monotonic() - last_save > save_seconds:
            _save_progress(work, parts, settings, done)
            last_save = time.monotonic()
    bar.close()
    info = dict(meta, type=kind, dim=dim, size=n, build_seconds=round(time.perf_counter() - started, 3),
                build_peak_rss_mb=round(peak_rss_mb(), 1), retriever="dense", **({"shards": shards} if shards > 1 else {}))
    with atomic_folder(out) as tmp:
        for name, part in zip(index_files(shards), parts):
            write_faiss(part, tmp / name)
        with open(tmp / "ids.txt", "w", encoding="utf-8") as fh:
            written = sum(fh.write(pid + "\n") > 0 for pid in rows.ids())
        if written != n:
            raise DenseprError(f"{rows.dir}: {written} ids for {n} vectors; encode again")
        write_json(tmp / "meta.json", info)
        write_manifest(tmp)
    shutil.rmtree(work, ignore_errors=True)
    return DenseIndex(parts, read_ids(out / "ids.txt", n), info)


def _resume(work: Path, settings: dict, shards: int) -> tuple[int, list[faiss.Index] | None]:
    """Rows added and the partial parts saved by a killed build with these settings; ``(0, None)`` otherwise."""
    progress = work / "progress.json"
    if not progress.is_file():
        return 0, None
    try:
        saved = read_json(progress)
        if saved.get("settings") != settings:
            log.info("%s holds a build with other settings or rows: starting again", work)
            return 0, None
        parts = [faiss.read_index(str(work / name)) for name in saved["files"]]
        if settings["kind"].startswith("ivf") and len(np.load(work / "lists.npy", mmap_mode="r")) != settings["rows"]:
            raise DenseprError("lists.npy does not cover the rows")
    except (DenseprError, RuntimeError, KeyError, OSError, ValueError) as exc:
        log.warning("%s: unusable saved progress (%s): starting again", work, str(exc).splitlines()[0])
        return 0, None
    log.info("resuming the build at row %d of %d", saved["done"], settings["rows"])
    return int(saved["done"]), parts


def _save_progress(work: Path, parts: list[faiss.Index], settings: dict, done: int) -> None:
    """Write the partial parts under new names, then ``progress.json`` naming them, then drop the older ones: a kill
    at any point leaves a ``progress.json`` whose files are whole."""
    files = [f"part-{done:012d}-{i:03d}.faiss" for i in range(len(parts))]
    for name, part in zip(files, parts):
        write_faiss(part, work / name)
    write_json(work / "progress.json", {"settings": settings, "done": done, "files": files})
    for old in work.glob("part-*.faiss"):
        if old.name not in files:
            old.unlink()

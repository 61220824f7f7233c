"""Sharded, resumable passage encoding: ``EMB_DIR/shard-III-of-NNN.npy`` plus ids and ``meta.json``.

Each shard is encoded in chunks saved atomically under ``shard-III-of-NNN.parts/`` (by count or by time); a killed
run restarts after the last saved chunk, and the parts become one shard file only when all are done.
"""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from densepr.corpus.passages import PassageStore
from densepr.dense.biencoder import BiEncoder
from densepr.dense.embedding_rows import EmbeddingRows, shard_name
from densepr.errors import DenseprError
from densepr.fileio import MANIFEST, atomic_open, read_json, save_npy, write_json, write_manifest
from densepr.vector_checks import check_vectors

log = logging.getLogger(__name__)


def shard_range(num_rows: int, shard_id: int, num_shards: int) -> tuple[int, int]:
    """Contiguous rows ``[start, stop)`` of one shard; shards differ in size by at most one row."""
    if num_shards < 1 or not 0 <= shard_id < num_shards:
        raise DenseprError(f"--shard-id must be in [0, {num_shards}) and --num-shards >= 1, got {shard_id}/{num_shards}")
    per, extra = divmod(num_rows, num_shards)
    start = shard_id * per + min(shard_id, extra)
    return start, start + per + (shard_id < extra)


def _check_meta(out_dir: Path, meta: dict) -> None:
    """Write ``meta.json`` on first use; refuse to mix shards of another corpus or model."""
    meta_path = out_dir / "meta.json"
    if meta_path.is_file():
        old = read_json(meta_path)
        for key in ("passages_fingerprint", "model", "dim", "num_shards", "backend"):
            if old.get(key) != meta[key] and (key in old or key != "backend"):  # older runs recorded no backend
                raise DenseprError(f"{out_dir} holds embeddings with {key}={old.get(key)!r}, not {meta[key]!r}; use another --out")
    else:
        write_json(meta_path, meta)


def _done_parts(parts: Path, start: int) -> list[tuple[int, int]]:
    """Saved chunks ``(first, stop)`` that continue each other from row ``start`` (a chunk and its ids both written)."""
    spans = sorted(tuple(int(x) for x in p.stem.split("-")) for p in parts.glob("*-*.npy")
                   if (parts / f"{p.stem}.ids.txt").is_file())
    done: list[tuple[int, int]] = []
    for first, stop in spans:
        if first == (done[-1][1] if done else start):
            done.append((first, stop))
    return done


def encode_passages(passages: PassageStore, model: BiEncoder, out_dir: str | Path, shard_id: int = 0,
                    num_shards: int = 1, batch_size: int | None = None, chunk_size: int = 4096,
                    chunk_seconds: float = 60.0, bf16: bool | None = None, progress: bool = True,
                    window: int = 1024) -> Path:
    """Encode one shard of ``passages`` into ``out_dir``; returns the shard's ``.npy`` path.

    A chunk is saved every ``chunk_size`` passages or ``chunk_seconds`` seconds, whichever comes first. Batches are
    formed (by length) within fixed windows of ``window`` rows from the shard's start, and chunks end on window
    boundaries, so a resumed run computes the same batches, and the same vectors bit for bit, as an uninterrupted one.
    """
    if chunk_size < 1 or chunk_seconds <= 0:
        raise DenseprError("--chunk-size must be >= 1 and --chunk-seconds > 0")
    out_dir = Path(out_dir)
    start, stop = shard_range(len(passages), shard_id, num_shards)
    name = shard_name(shard_id, num_shards)
    final = out_dir / f"{name}.npy"
    _check_meta(out_dir, {"passages": str(passages.path.resolve()), "passages_fingerprint": passages.fingerprint(),
                          "num_passages": len(passages), "model": model.name, "dim": model.dim, "num_shards": num_shards,
                          "backend": model.passage_encoder.backend(bf16)})
    if final.is_file() and (out_dir / f"{name}.ids.txt").is_file():
        log.info("%s already complete", final)
        return final
    parts = out_dir / f"{name}.parts"
    parts.mkdir(parents=True, exist_ok=True)
    done = _done_parts(parts, start)
    row = done[-1][1] if done else start
    truncated_before = model.passage_encoder.truncated
    bar = tqdm(total=stop - start, initial=row - start, unit="psg", desc=f"encode {name}", disable=not progress)
    if done:
        log.info("resuming %s at passage %d of %d (%d chunks done)", name, row - start, stop - start, len(done))
    while row < stop:
        first, began, vectors, batch = row, time.monotonic(), [], []
        while row < stop and (row == first or (row - first < chunk_size and time.monotonic() - began < chunk_seconds)):
            window_passages = list(passages.iter_range(row, min(row + window, stop)))
            vectors.append(model.encode_passages(window_passages, batch_size=batch_size, bf16=bf16, progress=bar.update,
                                                 warn_truncation=False))
            batch += window_passages
            row += len(window_passages)
        chunk = np.concatenate(vectors)
        check_vectors(chunk, [p.id for p in batch], f"{out_dir} (passages {first}-{row - 1})")
        save_npy(parts / f"{first:09d}-{row:09d}.npy", chunk)
        with atomic_open(parts / f"{first:09d}-{row:09d}.ids.txt", "w", encoding="utf-8") as fh:
            fh.writelines(p.id + "\n" for p in batch)
        done.append((first, row))
    bar.close()
    truncated = model.passage_encoder.truncated - truncated_before  # this run's, whatever the model encoded before
    if truncated:
        log.warning("%d passages reached the %d-token limit and were truncated", truncated, model.passage_encoder.max_length)
    names = [f"{a:09d}-{b:09d}" for a, b in done]
    embeddings = np.concatenate([np.load(parts / f"{n}.npy") for n in names]) if names else np.zeros((0, model.dim), np.float32)
    with atomic_open(out_dir / f"{name}.ids.txt", "w", encoding="utf-8") as fh:
        for n in names:
            fh.write((parts / f"{n}.ids.txt").read_text(encoding="utf-8"))
    save_npy(final, embeddings)
    write_manifest(out_dir, [final.name, f"{name}.ids.txt"], f"{name}.{MANIFEST}")
    shutil.rmtree(parts)
    return final


def load_embeddings(emb_dir: str | Path, verify: bool = False) -> tuple[np.ndarray, list[str], dict]:
    """All shards of an embeddings folder, in row order: ``(vectors, ids, meta)``, memory-mapped where there is one
    shard. The folder is checked as :class:`EmbeddingRows` checks it (checksums too when ``verify``)."""
    rows = EmbeddingRows(emb_dir, verify)
    vectors = [np.load(path, mmap_mode="r") for path, *_ in rows.files]
    ids = list(rows.ids())
    if len(ids) != len(rows):
        raise DenseprError(f"{rows.dir}: {len(rows)} vectors, {len(ids)} ids: inconsistent shards")
    return (np.concatenate(vectors) if len(vectors) > 1 else np.asarray(vectors[0])), ids, rows.meta

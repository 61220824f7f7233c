"""Sharded, resumable passage encoding: ``EMB_DIR/shard-III-of-NNN.npy`` plus ids and ``meta.json``.

Each shard is encoded in chunks saved atomically under ``shard-III-of-NNN.parts/``; a killed run
restarts at the first missing chunk, and the parts become one shard file only when all are done.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from densepr.corpus.passages import PassageStore
from densepr.dense.biencoder import BiEncoder
from densepr.errors import DenseprError
from densepr.fileio import atomic_open, read_json, save_npy, write_json
from densepr.vector_checks import check_vectors

log = logging.getLogger(__name__)


def shard_range(num_rows: int, shard_id: int, num_shards: int) -> tuple[int, int]:
    """Contiguous rows ``[start, stop)`` of one shard; shards differ in size by at most one row."""
    if num_shards < 1 or not 0 <= shard_id < num_shards:
        raise DenseprError(f"--shard-id must be in [0, {num_shards}) and --num-shards >= 1, got {shard_id}/{num_shards}")
    per, extra = divmod(num_rows, num_shards)
    start = shard_id * per + min(shard_id, extra)
    return start, start + per + (shard_id < extra)


def shard_name(shard_id: int, num_shards: int) -> str:
    return f"shard-{shard_id:03d}-of-{num_shards:03d}"


def _check_meta(out_dir: Path, meta: dict) -> None:
    """Write ``meta.json`` on first use; refuse to mix shards of another corpus or model."""
    meta_path = out_dir / "meta.json"
    if meta_path.is_file():
        old = read_json(meta_path)
        for key in ("passages_fingerprint", "model", "dim", "num_shards"):
            if old.get(key) != meta[key]:
                raise DenseprError(f"{out_dir} holds embeddings with {key}={old.get(key)!r}, not {meta[key]!r}; use another --out")
    else:
        write_json(meta_path, meta)


def encode_passages(passages: PassageStore, model: BiEncoder, out_dir: str | Path, shard_id: int = 0,
                    num_shards: int = 1, batch_size: int | None = None, chunk_size: int = 4096,
                    bf16: bool | None = None, progress: bool = True) -> Path:
    """Encode one shard of ``passages`` into ``out_dir``; returns the shard's ``.npy`` path."""
    out_dir = Path(out_dir)
    start, stop = shard_range(len(passages), shard_id, num_shards)
    name = shard_name(shard_id, num_shards)
    final = out_dir / f"{name}.npy"
    _check_meta(out_dir, {"passages": str(passages.path.resolve()), "passages_fingerprint": passages.fingerprint(),
                          "num_passages": len(passages), "model": model.name, "dim": model.dim, "num_shards": num_shards})
    if final.is_file() and (out_dir / f"{name}.ids.txt").is_file():
        log.info("%s already complete", final)
        return final
    parts = out_dir / f"{name}.parts"
    parts.mkdir(parents=True, exist_ok=True)
    chunks = list(range(start, stop, chunk_size))
    done = sum((parts / f"{i:06d}.npy").is_file() for i in range(len(chunks)))
    bar = tqdm(total=stop - start, unit="psg", desc=f"encode {name}", disable=not progress)
    for i, chunk_start in enumerate(chunks):
        part = parts / f"{i:06d}.npy"
        chunk_stop = min(chunk_start + chunk_size, stop)
        if part.is_file():
            bar.update(chunk_stop - chunk_start)
            continue
        batch = list(passages.iter_range(chunk_start, chunk_stop))
        vectors = model.encode_passages(batch, batch_size=batch_size, bf16=bf16, progress=bar.update)  # moves per batch
        check_vectors(vectors, [p.id for p in batch], f"{out_dir} (passages {chunk_start}-{chunk_stop - 1})")
        save_npy(part, vectors)
        ids_part = parts / f"{i:06d}.ids.txt"
        with atomic_open(ids_part, "w", encoding="utf-8") as fh:
            fh.writelines(p.id + "\n" for p in batch)
    bar.close()
    if done:
        log.info("resumed %s: %d of %d chunks were already done", name, done, len(chunks))
    chunk_vectors = [np.load(parts / f"{i:06d}.npy") for i in range(len(chunks))]
    embeddings = np.concatenate(chunk_vectors) if chunk_vectors else np.zeros((0, model.dim), np.float32)
    with atomic_open(out_dir / f"{name}.ids.txt", "w", encoding="utf-8") as fh:
        for i in range(len(chunks)):
            fh.write((parts / f"{i:06d}.ids.txt").read_text(encoding="utf-8"))
    save_npy(final, embeddings)
    shutil.rmtree(parts)
    return final


def load_embeddings(emb_dir: str | Path) -> tuple[np.ndarray, list[str], dict]:
    """All shards of an embeddings folder, in row order: ``(vectors, ids, meta)``."""
    emb_dir = Path(emb_dir)
    meta = read_json(emb_dir / "meta.json")
    n = int(meta["num_shards"])
    vectors, ids = [], []
    for shard_id in range(n):
        name = shard_name(shard_id, n)
        if not (emb_dir / f"{name}.npy").is_file():
            raise DenseprError(f"{emb_dir}: shard {shard_id} of {n} is missing or unfinished; "
                               f"run: densepr encode ... --shard-id {shard_id} --num-shards {n}")
        try:
            vectors.append(np.load(emb_dir / f"{name}.npy", mmap_mode="r"))
        except (ValueError, OSError, EOFError) as exc:  # a corrupt header, a truncated file
            raise DenseprError(f"{emb_dir / f'{name}.npy'}: unreadable embeddings ({str(exc).splitlines()[0]}); "
                               "encode the shard again") from None
        if not (emb_dir / f"{name}.ids.txt").is_file():
            raise DenseprError(f"{emb_dir / f'{name}.ids.txt'}: missing; encode the shard again")
        ids.extend((emb_dir / f"{name}.ids.txt").read_text(encoding="utf-8").splitlines())
    embeddings = np.concatenate(vectors) if n > 1 else np.asarray(vectors[0])
    if len(ids) != len(embeddings) or len(ids) != meta["num_passages"]:
        raise DenseprError(f"{emb_dir}: {len(embeddings)} vectors, {len(ids)} ids, {meta['num_passages']} passages: inconsistent shards")
    return embeddings, ids, meta

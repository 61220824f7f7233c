"""Out-of-core index builds: rows stream from the shards on disk, and a killed build resumes to the same bytes."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from conftest import run_forked
from densepr.dense.embedding_rows import EmbeddingRows, shard_name
from densepr.errors import DenseprError
from densepr.fileio import KILL_AT, WRITE_TRACE
from densepr.index.faiss_index import DenseIndex
from densepr.index.planner import exact_top_k
from densepr.index.streaming import build_streaming


def write_embeddings(folder: Path, vectors: np.ndarray, shards: int = 3) -> Path:
    """An embeddings folder as ``densepr encode`` writes it, the first shard in float16."""
    folder.mkdir(parents=True)
    bounds = np.linspace(0, len(vectors), shards + 1).astype(int)
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        block = vectors[a:b].astype(np.float16 if i == 0 else np.float32)
        np.save(folder / f"{shard_name(i, shards)}.npy", block)
        (folder / f"{shard_name(i, shards)}.ids.txt").write_text("".join(f"p{r}\n" for r in range(a, b)))
    meta = {"num_shards": shards, "num_passages": len(vectors), "dim": vectors.shape[1], "model": "m",
            "passages": "psgs.tsv", "passages_fingerprint": "b2:0:x"}
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


@pytest.fixture
def vectors() -> np.ndarray:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(20, 16))
    return (centres[rng.integers(20, size=3000)] + 0.3 * rng.normal(size=(3000, 16))).astype(np.float32)


# not in the AVX2 pass: under QEMU 7.2 (-cpu Haswell) this process's float64 scores of these rows come out wrong (the
# same products computed alone are right), so the emulator, not a kernel, fails it; test_encode_index's exact search runs there
def test_rows_read_from_disk_equal_the_vectors_and_exact_search_is_exact(vectors, tmp_path):
    rows = EmbeddingRows(write_embeddings(tmp_path / "emb", vectors))
    expected = vectors.copy()
    expected[:1000] = vectors[:1000].astype(np.float16)  # the float16 shard
    assert len(rows) == 3000 and rows.dim == 16
    assert np.array_equal(rows.read(990, 1010), expected[990:1010])  # across a shard boundary
    assert np.array_equal(rows.take(np.array([2999, 0, 1500])), expected[[2999, 0, 1500]])
    assert list(rows.ids())[::1000] == ["p0", "p1000", "p2000"]
    queries = vectors[:7] + 0.1
    flat = DenseIndex.build(expected, [str(i) for i in range(3000)], "flat")
    want_scores, want_rows = flat.search(queries, 10)
    exact = queries.astype(np.float64) @ expected.T.astype(np.float64)
    for got in (exact_top_k(rows, queries, 10, chunk=256), exact_top_k(expected, queries, 10)):
        # the same top 10 as FAISS up to float rounding: each place's score, and the row wherever no neighbour (the
        # clustered vectors hold near-ties) lies within rounding of it, which BLAS kernels may order either way
        assert np.allclose(np.take_along_axis(exact, got, 1), want_scores, atol=1e-4)
        gaps = np.abs(np.diff(want_scores, axis=1))
        alone = np.ones_like(want_rows, dtype=bool)
        alone[:, :-1] &= gaps > 1e-4
        alone[:, 1:] &= gaps > 1e-4
        alone[:, -1] = False  # the 10th may tie with an 11th
        assert alone.any() and np.array_equal(got[alone], want_rows[alone])


def test_a_streamed_index_matches_the_in_memory_one(vectors, tmp_path):
    rows = EmbeddingRows(write_embeddings(tmp_path / "emb", vectors))
    built = build_streaming(rows, tmp_path / "flat", "flat", rows.meta, chunk=128, progress=False)
    assert built.meta["size"] == 3000 and built.meta["build_peak_rss_mb"] > 0
    streamed = DenseIndex.load(tmp_path / "flat")
    assert built.ids == streamed.ids and np.array_equal(built.search(vectors[:5], 20)[1], streamed.search(vectors[:5], 20)[1])
    in_memory = DenseIndex.build(rows.read(0, 3000), [f"p{i}" for i in range(3000)], "flat")
    assert streamed.ids == in_memory.ids
    assert np.array_equal(streamed.search(vectors[:5], 20)[1], in_memory.search(vectors[:5], 20)[1])
    build_streaming(rows, tmp_path / "sharded", "ivfsq8", rows.meta, shards=2, chunk=700, progress=False, nlist=16)
    sharded = DenseIndex.load(tmp_path / "sharded")
    assert len(sharded.parts) == 2 and sharded.index.ntotal == 3000


def _build(emb: str, out: str, env: dict) -> None:
    os.environ.update(env)
    rows = EmbeddingRows(emb)
    build_streaming(rows, out, "ivfopq", rows.meta, chunk=250, save_seconds=0, progress=False, nlist=16, pq_m=4)
    os._exit(0)


@pytest.mark.parametrize("kill_at", [1, 4, 9, 13])  # writing lists.npy, the first part; after progress at rows 0, 250
def test_a_killed_build_resumes_to_the_same_index_bytes(kill_at, vectors, tmp_path):
    emb = write_embeddings(tmp_path / "emb", vectors)
    assert run_forked(_build, str(emb), str(tmp_path / "ref"), {}, timeout=120) == 0  # trained on one thread, as below
    env = {KILL_AT: str(kill_at), WRITE_TRACE: str(tmp_path / "trace")}
    assert run_forked(_build, str(emb), str(tmp_path / "out"), env, timeout=120) == -9 and (tmp_path / ".build-out" / "progress.json").exists() == (kill_at > 6)
    assert run_forked(_build, str(emb), str(tmp_path / "out"), {}, timeout=120) == 0  # resumes (OPQ trains per thread count)
    assert (tmp_path / "out" / "index.faiss").read_bytes() == (tmp_path / "ref" / "index.faiss").read_bytes()
    assert not (tmp_path / ".build-out").exists()


def test_unusable_shards_are_refused_in_one_line(vectors, tmp_path):
    emb = write_embeddings(tmp_path / "emb", vectors)
    shard = emb / f"{shard_name(1, 3)}.npy"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(DenseprError, match="truncated"):
        EmbeddingRows(emb)
    shard.unlink()
    with pytest.raises(DenseprError, match="shard 1 of 3 is missing"):
        EmbeddingRows(emb)


@pytest.mark.parametrize("kind,encode_rows", [("ivfopq", None), ("ivfopq", 97), ("ivfsq8", None)])
def test_presized_ivf_lists_give_the_bytes_of_plain_adds(vectors, tmp_path, monkeypatch, kind, encode_rows):
    """Lists sized before they are filled: the same file as the trained quantiser's ``add`` of every row, per shard,
    also when the PQ codes are encoded in blocks smaller than a chunk (``encode_rows``)."""
    import faiss

    from densepr.index import presized_lists
    from densepr.index.faiss_index import build_faiss, shard_ranges

    if encode_rows:
        monkeypatch.setattr(presized_lists, "pq_block_rows", lambda m, ksub: encode_rows)
    rows = EmbeddingRows(write_embeddings(tmp_path / "emb", vectors))
    build_streaming(rows, tmp_path / "out", kind, rows.meta, shards=2, chunk=700, progress=False, nlist=16, pq_m=4)
    sample = rows.take(np.sort(np.random.default_rng(0).choice(3000, size=3000, replace=False)))
    template = build_faiss(sample, kind, add=False, total=3000, nlist=16, pq_m=4)
    for i, (a, b) in enumerate(shard_ranges(3000, 2)):
        plain = faiss.clone_index(template)
        plain.add(rows.read(a, b))
        assert (tmp_path / "out" / f"index-{i:03d}.faiss").read_bytes() == faiss.serialize_index(plain).tobytes()


def test_pq_rows_are_added_in_blocks_that_bound_faiss_encoding_table(vectors, monkeypatch):
    """IVF-PQ adds rows in blocks of ``pq_block_rows`` (FAISS's PQ table is rows x M x 256 floats): same index bytes."""
    import faiss

    from densepr.index import faiss_index

    assert faiss_index.pq_block_rows(24) * 24 * 256 * 4 <= faiss_index.PQ_TABLE_BYTES
    assert faiss_index.pq_block_rows(24) < 32_768 and faiss_index.pq_block_rows(10_000) == 1024
    whole = faiss_index.build_faiss(vectors, "ivfopq", nlist=16, pq_m=4)
    monkeypatch.setattr(faiss_index, "pq_block_rows", lambda m: 97)
    blocks = faiss_index.build_faiss(vectors, "ivfopq", nlist=16, pq_m=4)
    assert faiss.serialize_index(blocks).tobytes() == faiss.serialize_index(whole).tobytes()

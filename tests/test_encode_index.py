"""Sharded and resumable passage encoding; FAISS index build, save and load."""

from __future__ import annotations

import numpy as np
import pytest

from densepr.corpus.passages import PassageStore
from densepr.dense.biencoder import BiEncoder
from densepr.dense.passage_encoding import encode_passages, load_embeddings, shard_range
from densepr.errors import DenseprError
from densepr.index.faiss_index import INDEX_TYPES, DenseIndex, build_faiss


def test_shard_ranges_cover_rows_once():
    ranges = [shard_range(10, i, 3) for i in range(3)]
    assert ranges == [(0, 4), (4, 7), (7, 10)]
    with pytest.raises(DenseprError):
        shard_range(10, 3, 3)


def test_sharded_encoding_equals_single_run(tiny_bert, passages_tsv, tmp_path):
    store, model = PassageStore(passages_tsv), BiEncoder.load(tiny_bert)
    encode_passages(store, model, tmp_path / "one", bf16=False, progress=False)
    for shard in (1, 0):
        encode_passages(store, model, tmp_path / "two", shard, 2, chunk_size=2, bf16=False, progress=False)
    one, ids_one, _ = load_embeddings(tmp_path / "one")
    two, ids_two, _ = load_embeddings(tmp_path / "two")
    assert ids_one == ids_two == [p.id for p in store]
    np.testing.assert_allclose(one, two, atol=1e-5)


def test_torchrun_processes_encode_one_shard_each(tiny_bert, passages_tsv, tmp_path):
    import shutil
    import subprocess

    from conftest import free_port

    if shutil.which("torchrun") is None:
        pytest.skip("torchrun not on PATH")
    cmd = ["torchrun", "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "densepr",
           "-q", "encode", "--passages", str(passages_tsv), "--out", str(tmp_path / "emb"), "--model", str(tiny_bert), "--no-bf16",
           "--backend", "torch"]  # auto would pick ONNX Runtime int8 on a CPU without bf16 units; this compares torch fp32
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "emb").glob("*.npy")) == ["shard-000-of-002.npy", "shard-001-of-002.npy"]
    store = PassageStore(passages_tsv)
    encode_passages(store, BiEncoder.load(tiny_bert), tmp_path / "one", bf16=False, progress=False)
    merged, ids, _ = load_embeddings(tmp_path / "emb")
    assert ids == [p.id for p in store]
    np.testing.assert_allclose(merged, load_embeddings(tmp_path / "one")[0], atol=1e-5)


def test_shard_options_come_together_or_from_torchrun(tiny_bert, passages_tsv, tmp_path, monkeypatch):
    from densepr.pipeline import encode

    with pytest.raises(DenseprError, match="both --shard-id and --num-shards"):
        encode(passages=passages_tsv, out=tmp_path / "emb", model=tiny_bert, shard_id=1, progress=False)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert encode(passages=passages_tsv, out=tmp_path / "emb", model=tiny_bert, progress=False).name == "shard-001-of-003.npy"


def test_missing_shard_is_named(tiny_bert, passages_tsv, tmp_path):
    encode_passages(PassageStore(passages_tsv), BiEncoder.load(tiny_bert), tmp_path, 0, 2, progress=False)
    with pytest.raises(DenseprError, match="shard 1 of 2 is missing"):
        load_embeddings(tmp_path)


@pytest.mark.parametrize("by", ["count", "time"])
def test_killed_encoding_resumes_bit_identical(tiny_bert, passages_tsv, tmp_path, monkeypatch, by):
    store, model = PassageStore(passages_tsv), BiEncoder.load(tiny_bert)
    real = model.encode_passages
    calls = []

    def crash_on_third(batch, **kw):
        calls.append(len(batch))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(batch, **kw)

    chunking = {"chunk_size": 2} if by == "count" else {"chunk_size": 1000, "chunk_seconds": 1e-9}  # a chunk a window
    monkeypatch.setattr(model, "encode_passages", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        encode_passages(store, model, tmp_path / "e", window=2, bf16=False, progress=False, **chunking)
    assert not (tmp_path / "e" / "shard-000-of-001.npy").exists()
    assert len(list((tmp_path / "e" / "shard-000-of-001.parts").glob("*.npy"))) == 2
    calls.clear()
    encode_passages(store, model, tmp_path / "e", window=2, bf16=False, progress=False, **chunking)
    assert sum(calls) == len(store) - 4  # the two finished chunks were not encoded again
    resumed, ids, _ = load_embeddings(tmp_path / "e")
    monkeypatch.setattr(model, "encode_passages", real)
    encode_passages(store, model, tmp_path / "f", window=2, chunk_size=6, bf16=False, progress=False)  # other chunks
    uninterrupted, ids_f, _ = load_embeddings(tmp_path / "f")
    assert ids == ids_f and np.array_equal(resumed, uninterrupted)  # bit for bit: batches never depend on chunks
    assert not (tmp_path / "e" / "shard-000-of-001.parts").exists()


def test_embeddings_of_another_model_are_not_mixed(tiny_bert, tiny_dpr, passages_tsv, tmp_path):
    store = PassageStore(passages_tsv)
    encode_passages(store, BiEncoder.load(tiny_bert), tmp_path, 0, 2, progress=False)
    other = BiEncoder.load(question_model=tiny_dpr[0], passage_model=tiny_dpr[1])
    with pytest.raises(DenseprError, match="holds embeddings with model"):
        encode_passages(store, other, tmp_path, 1, 2, progress=False)


@pytest.mark.parametrize("kind", INDEX_TYPES)
def test_index_round_trip_and_recall(kind, tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((3000, 32)).astype(np.float32)
    ids = [f"p{i}" for i in range(len(vectors))]
    queries = vectors[:50] + 0.01 * rng.standard_normal((50, 32)).astype(np.float32)
    index = DenseIndex.build(vectors, ids, kind, meta={"model": "m"})
    index.configure(nprobe=16, ef_search=128)
    scores, rows = index.search(queries, 10)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    recall = np.mean([len(set(r) & set(e)) / 10 for r, e in zip(rows, exact)])
    assert recall == 1.0 if kind == "flat" else recall > 0.5
    assert (rows[:, 0] == np.arange(50)).mean() > 0.9
    index.save(tmp_path / kind)
    loaded = DenseIndex.load(tmp_path / kind)
    loaded.configure(nprobe=16, ef_search=128)
    assert loaded.ids == ids and loaded.meta["type"] == kind and loaded.meta["model"] == "m"
    scores2, rows2 = loaded.search(queries, 10)
    np.testing.assert_array_equal(rows, rows2)


def test_index_rejects_wrong_dimension_queries():
    index = DenseIndex.build(np.eye(4, dtype=np.float32), ["a", "b", "c", "d"], meta={"model": "m"})
    with pytest.raises(DenseprError, match="dimension 3, the index has 4"):
        index.search(np.ones((1, 3), np.float32), 2)
    scores, rows = index.search(np.eye(4, dtype=np.float32)[:1], 10)
    assert rows.shape == (1, 4) and rows[0, 0] == 0


@pytest.mark.kernels
@pytest.mark.parametrize("shards", [1, 3])
def test_flat_search_gives_faiss_rows_and_scores(shards, monkeypatch):
    """Exact search runs in numpy (index.exact); in small score blocks and across shards it returns FAISS's top k."""
    from densepr.index import exact

    monkeypatch.setattr(exact, "SCORE_BLOCK_BYTES", 4 * 5 * 700)  # 5 queries: blocks of 1,024 rows
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(2500, 16)).astype(np.float32)
    index = DenseIndex.build(vectors, [str(i) for i in range(2500)], kind="flat", shards=shards)
    queries = rng.normal(size=(5, 16)).astype(np.float32)
    for k in (1, 10, 1500, 2500, 9999):
        scores, rows = index.search(queries, k)
        want_scores, want_rows = index.index.search(queries, min(k, 2500))  # FAISS's own flat search
        assert rows.shape == want_rows.shape == (5, min(k, 2500)) and np.allclose(scores, want_scores, atol=1e-4)
        assert np.allclose(np.take_along_axis(queries @ vectors.T, rows, axis=1), scores, atol=1e-4)
        assert np.all(np.diff(scores, axis=1) <= 0) and all(len(set(r)) == len(r) for r in rows)
        if k <= 10:  # deeper down, scores a float rounding apart may swap
            assert np.array_equal(rows, want_rows)
    assert index.search(queries[:0], 3)[1].shape == (0, 3)
    assert exact.MAX_QUERIES > len(queries)  # so the numpy path is what ran
    ties = DenseIndex.build(rng.integers(0, 3, size=(2500, 4)).astype(np.float32), [str(i) for i in range(2500)], shards=shards)
    few = rng.integers(0, 3, size=(5, 4)).astype(np.float32)
    scores, rows = ties.search(few, 2500)  # equal scores abound: ordered by row, so any k gives a prefix of this
    assert all(np.all(np.diff(r[s == s[0]]) > 0) for s, r in zip(scores, rows))
    for k in (1, 7, 300):
        assert np.array_equal(ties.search(few, k)[1], rows[:, :k])
    assert exact.flat_vectors(build_faiss(vectors, "hnsw")) is None  # other index types search with FAISS

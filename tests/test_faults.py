"""Faults in artifacts end in one line naming the file (exit 2), never a traceback or a silently wrong index."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from densepr.cli.main import main
from densepr.errors import DenseprError
from densepr.vector_checks import check_vectors


@pytest.fixture
def embeddings(tiny_bert, passages_tsv, tmp_path):
    assert main(["-q", "encode", "--passages", str(passages_tsv), "--out", str(tmp_path / "emb"), "--model", str(tiny_bert)]) == 0
    return tmp_path / "emb"


def shard(emb):
    return next(emb.glob("shard-*.npy"))


def test_nan_or_inf_vectors_are_refused_and_norm_outliers_named(caplog):
    ids = [f"p{i}" for i in range(50)]
    vectors = np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    check_vectors(vectors, ids, "emb")  # unit vectors: nothing to say
    assert not caplog.records
    kept, vectors[7, 3] = vectors[7, 3], np.inf
    with pytest.raises(DenseprError, match=r"emb: 1 vector\(s\) hold NaN or Inf \(passages p7\)"):
        check_vectors(vectors, ids, "emb")
    vectors[7, 3], vectors[9, 0] = kept, 255.8  # a flipped exponent bit
    with caplog.at_level(logging.WARNING, logger="densepr"):
        check_vectors(vectors, ids, "emb")
    assert "passages p9" in caplog.text and "p7" not in caplog.text


def test_index_refuses_corrupt_embeddings_in_one_line(embeddings, tmp_path, capsys):
    vectors = np.load(shard(embeddings))
    vectors[1, 0] = np.nan
    np.save(shard(embeddings), vectors)
    assert main(["-q", "index", "--embeddings", str(embeddings), "--out", str(tmp_path / "flat")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("densepr: error: ") and "hold NaN or Inf" in err and err.count("\n") == 1
    assert not (tmp_path / "flat").exists()  # nothing a later command would load
    raw = shard(embeddings).read_bytes()
    shard(embeddings).write_bytes(raw[: len(raw) // 2])  # truncated
    assert main(["-q", "index", "--embeddings", str(embeddings), "--out", str(tmp_path / "flat")]) == 2
    assert "unreadable embeddings" in capsys.readouterr().err
    shard(embeddings).write_bytes(b"garbage" + raw[7:])  # corrupt header
    assert main(["-q", "index", "--embeddings", str(embeddings), "--out", str(tmp_path / "flat")]) == 2
    assert "unreadable embeddings" in capsys.readouterr().err
    shard(embeddings).write_bytes(raw)
    next(embeddings.glob("shard-*.ids.txt")).unlink()
    assert main(["-q", "index", "--embeddings", str(embeddings), "--out", str(tmp_path / "flat")]) == 2
    assert "ids.txt: missing" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_permission_denied_is_one_line(passages_tsv, tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    assert main(["-q", "bm25", "--passages", str(passages_tsv), "--out", str(locked / "bm25")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("densepr: error: ") and err.count("\n") == 1


def test_os_errors_end_in_one_line_naming_the_file(monkeypatch, tiny_bert, passages_tsv, tmp_path, capsys):
    from densepr import fileio

    def disk_full(fh, array, **kwargs):  # what numpy raises when the disk fills up mid-write
        raise OSError("153600 requested and 49120 written")

    monkeypatch.setattr(fileio.np, "save", disk_full)
    assert main(["-q", "encode", "--passages", str(passages_tsv), "--out", str(tmp_path / "emb"), "--model", str(tiny_bert)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"densepr: error: {tmp_path / 'emb'}") and err.endswith(".npy: 153600 requested and 49120 written\n")
    assert err.count("\n") == 1 and not list((tmp_path / "emb").rglob("*.tmp"))  # no half-written file left

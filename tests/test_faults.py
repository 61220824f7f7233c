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
    shard(embeddings).write_bytes(raw[: len(raw) // 2])  # truncated: its manifest says so
    assert main(["-q", "index", "--embeddings", str(embeddings), "--out", str(tmp_path / "flat")]) == 2
    assert "(truncated or replaced)" in capsys.readouterr().err
    manifest = next(embeddings.glob("*.manifest.json"))
    manifest.rename(manifest.with_suffix(".off"))  # a folder written before manifests: the header's shape says so
    assert main(["-q", "index", "--embeddings", str(embeddings), "--out", str(tmp_path / "flat")]) == 2
    assert "truncated (512 bytes for 7 rows)" in capsys.readouterr().err
    manifest.with_suffix(".off").rename(manifest)
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


@pytest.mark.parametrize("fault", ["ids shortened", "ids missing", "matrix truncated", "vocabulary truncated"])
def test_damaged_bm25_folders_are_refused_in_one_line(passages_tsv, questions_jsonl, tmp_path, capsys, fault):
    bm25 = tmp_path / "bm25"
    assert main(["-q", "bm25", "--passages", str(passages_tsv), "--out", str(bm25)]) == 0
    if fault == "ids shortened":
        (bm25 / "ids.txt").write_text("".join((bm25 / "ids.txt").read_text().splitlines(keepends=True)[:-1]))
    elif fault == "ids missing":
        (bm25 / "ids.txt").unlink()
    else:
        victim = next(p for p in bm25.iterdir() if p.suffix == (".npy" if fault == "matrix truncated" else ".json")
                      and p.name != "meta.json")
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    assert main(["-q", "retrieve", "--index", str(bm25), "--questions", str(questions_jsonl), "--out", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"densepr: error: {bm25}") and err.count("\n") == 1 and not (tmp_path / "r.json").exists()


def test_rebuilding_an_index_swaps_the_whole_folder(passages_tsv, tmp_path, monkeypatch):
    from densepr.sparse import bm25 as bm25_module

    out = tmp_path / "bm25"
    assert main(["-q", "bm25", "--passages", str(passages_tsv), "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_save = bm25_module.bm25s.BM25.save

    def killed_after_matrices(self, path, *args, **kwargs):  # the kill the issue saw: right after bm25s saves
        real_save(self, path, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(bm25_module.bm25s.BM25, "save", killed_after_matrices)
    assert main(["-q", "bm25", "--passages", str(passages_tsv), "--out", str(out), "--k1", "2.0"]) == 130
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old folder, whole


def test_a_same_size_edit_in_the_middle_of_the_passages_is_caught(tiny_indexes, questions_jsonl, tmp_path, capsys):
    import shutil

    from densepr.fileio import _legacy_fingerprint, fingerprint, same_file

    psgs = tmp_path / "psgs.tsv"
    shutil.copyfile(tiny_indexes / "psgs.tsv", psgs)
    assert main(["-q", "bm25", "--passages", str(psgs), "--out", str(tmp_path / "bm25")]) == 0
    recorded = fingerprint(psgs)
    data = bytearray(psgs.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 11] = b"x" * 11  # 11 bytes, same size
    psgs.write_bytes(bytes(data))
    assert not same_file(psgs, recorded) and same_file(psgs, fingerprint(psgs))
    assert main(["-q", "retrieve", "--index", str(tmp_path / "bm25"), "--questions", str(questions_jsonl),
                 "--out", str(tmp_path / "r.json")]) == 2
    assert "is not the corpus the index was built from" in capsys.readouterr().err
    assert same_file(psgs, _legacy_fingerprint(psgs))  # indexes of older versions still open


def test_a_fingerprint_is_hashed_once_even_where_its_folder_cannot_keep_the_cache(tmp_path, monkeypatch):
    from densepr import fileio

    psgs = tmp_path / "psgs.tsv"
    psgs.write_text("id\ttext\ttitle\n1\thello\tt\n")
    (tmp_path / ".psgs.tsv.fingerprint").mkdir()  # the sidecar cannot be written (as in a read-only folder)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    hashed = []
    real = fileio._blake2b
    monkeypatch.setattr(fileio, "_blake2b", lambda path: hashed.append(path) or real(path))
    first = fileio.fingerprint(psgs)
    assert fileio.fingerprint(psgs) == first and len(hashed) == 1  # the second call read the user cache
    assert list((tmp_path / "cache" / "densepr" / "fingerprints").glob("*.json"))
    before = psgs.stat().st_mtime_ns
    psgs.write_text("id\ttext\ttitle\n1\thellO\tt\n")
    os.utime(psgs, ns=(before + 10**9, before + 10**9))  # a later modification time, whatever the clock's grain
    assert fileio.fingerprint(psgs) != first and len(hashed) == 2


def test_a_flipped_byte_is_found_by_verify_and_by_loading_by_default(tiny_indexes, tmp_path, capsys):
    import shutil

    flat = tmp_path / "flat"
    shutil.copytree(tiny_indexes / "flat", flat)
    assert main(["verify", str(flat), str(tiny_indexes / "bm25")]) == 0
    assert capsys.readouterr().out.count("files match manifest.json") == 2
    data = bytearray((flat / "index.faiss").read_bytes())
    data[-5] ^= 0xFF  # same size: only the checksum tells
    (flat / "index.faiss").write_bytes(bytes(data))
    assert main(["-q", "verify", str(flat)]) == 2
    assert "index.faiss: its checksum differs from manifest.json" in capsys.readouterr().err
    questions = tmp_path / "q.jsonl"
    questions.write_text('{"question": "where was einstein born", "answer": ["Ulm"]}\n')
    retrieve = ["-q", "retrieve", "--index", str(flat), "--questions", str(questions), "--out", str(tmp_path / "r.json")]
    assert main(retrieve + ["--backend", "torch", "--no-verify"]) == 0  # sizes only: the flip goes unseen
    capsys.readouterr()
    for verify in ([], ["--verify"]):  # a small folder is checksummed on every load; --verify checks any folder
        assert main(retrieve + ["--backend", "torch", *verify]) == 2
        assert "index.faiss: its checksum differs from manifest.json" in capsys.readouterr().err
    (flat / "index.faiss").write_bytes(bytes(data[:-8]))  # truncated: every load refuses it
    from densepr.index.faiss_index import DenseIndex

    with pytest.raises(DenseprError, match="bytes where manifest.json says"):
        DenseIndex.load(flat)
    (flat / "manifest.json").unlink()
    assert main(["-q", "verify", str(flat)]) == 2
    assert "no manifest.json" in capsys.readouterr().err

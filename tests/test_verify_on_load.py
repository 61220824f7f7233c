"""Indexes are verified by default: checksums on load where cheap, in the background in ``serve`` where not, and the
stored vectors checked (finite) on load, which catches what checksums cannot."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest

from densepr import fileio
from densepr.cli.main import main
from densepr.errors import DenseprError
from densepr.fileio import write_manifest
from densepr.index.faiss_index import DenseIndex


def flip(path, at: int | None = None) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2 if at is None else at] ^= 0x10
    path.write_bytes(bytes(raw))


@pytest.fixture
def copied(tiny_indexes, tmp_path):
    for name in ("flat", "bm25"):
        shutil.copytree(tiny_indexes / name, tmp_path / name)
    shutil.copyfile(tiny_indexes / "psgs.tsv", tmp_path / "psgs.tsv")
    return tmp_path


def test_a_flipped_byte_is_refused_without_verify_and_no_verify_says_it_skips(copied, questions_jsonl, capsys, caplog):
    flip(copied / "flat" / "index.faiss")
    argv = ["retrieve", "--index", str(copied / "flat"), "--questions", str(questions_jsonl), "--out",
            str(copied / "r.json"), "--passages", str(copied / "psgs.tsv")]
    assert main(argv) == 2
    assert "index.faiss: its checksum differs" in capsys.readouterr().err
    assert main([*argv, "--no-verify"]) == 0  # the user's choice, said in one log line
    assert "--no-verify: index files are not checksummed on load" in caplog.text


def test_an_index_of_bad_vectors_is_refused_on_load(copied):
    index = DenseIndex.load(copied / "flat")
    vectors = index.vectors(range(len(index.ids)))
    at = (copied / "flat" / "index.faiss").read_bytes().find(vectors[2].tobytes())
    assert at > 0
    raw = bytearray((copied / "flat" / "index.faiss").read_bytes())
    raw[at : at + 4] = np.array([np.nan], dtype=np.float32).tobytes()
    (copied / "flat" / "index.faiss").write_bytes(bytes(raw))
    (copied / "flat" / "manifest.json").unlink()
    write_manifest(copied / "flat")  # checksums that match the bad file: only the vector check can tell
    with pytest.raises(DenseprError, match="NaN or Inf"):
        DenseIndex.load(copied / "flat")


def test_serve_checksums_large_folders_in_the_background_and_refuses_a_bad_one(copied, monkeypatch):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    from fastapi.testclient import TestClient

    from densepr.serve import create_app

    monkeypatch.setattr(fileio, "AUTO_VERIFY_BYTES", 0)  # every folder counts as large: none checksummed on load
    with TestClient(create_app(index=str(copied / "flat"), bm25_index=str(copied / "bm25"))) as client:
        for _ in range(100):
            if client.get("/health").json()["verified"] != "verifying":
                break
            time.sleep(0.05)
        assert client.get("/health").json()["verified"] == "ok"
        assert client.post("/search", json={"question": "einstein", "k": 1}).status_code == 200
    flip(copied / "bm25" / "data.csc.index.npy")  # a score changes; the folder still loads
    with TestClient(create_app(index=str(copied / "flat"), bm25_index=str(copied / "bm25"))) as client:
        for _ in range(100):
            if client.get("/health").json()["verified"] != "verifying":
                break
            time.sleep(0.05)
        assert client.get("/health").json()["verified"].startswith("failed: ")
        refused = client.post("/search", json={"question": "einstein", "k": 1})
        assert refused.status_code == 503 and "checksum" in refused.json()["detail"]

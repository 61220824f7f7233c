"""The lean install: in a virtual environment without torch or transformers (``pip install densepr``), ``ask``,
``retrieve``, ``encode`` and ``serve`` work, and asking for torch is one line naming ``densepr[train]``.

``.ci/run`` makes that environment and points ``DENSEPR_LEAN_PYTHON`` at its interpreter; elsewhere these tests skip,
saying so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import free_port

LEAN = os.environ.get("DENSEPR_LEAN_PYTHON", "")
pytestmark = pytest.mark.skipif(not LEAN, reason="no lean environment: .ci/run makes one (DENSEPR_LEAN_PYTHON)")


def lean(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([LEAN, *args], capture_output=True, text=True, timeout=timeout)


def densepr(*args: str) -> subprocess.CompletedProcess:
    return lean("-m", "densepr", "-q", *args)


def test_the_lean_environment_has_no_torch():
    out = lean("-c", "import importlib.util as u; print([m for m in ('torch', 'transformers') if u.find_spec(m)])")
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stderr


def test_ask_retrieve_and_encode_without_torch(tiny_indexes, tiny_bert, questions_jsonl, tmp_path):
    reader = tmp_path / "reader"
    from densepr.read.model import Reader

    Reader.from_pretrained(str(tiny_bert)).save(reader)  # written here, read there
    index = str(tiny_indexes / "flat")
    asked = densepr("ask", "where was einstein born", "--index", index, "--reader", str(reader), "--json")
    assert asked.returncode == 0, asked.stderr
    assert set(json.loads(asked.stdout)) >= {"answer", "passages"}
    out = tmp_path / "res.json"
    found = densepr("retrieve", "--index", index, "--questions", str(questions_jsonl), "--out", str(out), "--top-k", "3")
    assert found.returncode == 0, found.stderr
    assert all(len(e["ctxs"]) == 3 for e in json.loads(out.read_text()))
    encoded = densepr("encode", "--passages", str(tiny_indexes / "psgs.tsv"), "--out", str(tmp_path / "emb"), "--model",
                      str(tiny_bert))
    assert encoded.returncode == 0, encoded.stderr
    assert (tmp_path / "emb" / "meta.json").is_file()
    refused = densepr("retrieve", "--index", index, "--questions", str(questions_jsonl), "--out", str(out), "--backend", "torch")
    assert refused.returncode == 2 and "densepr[train]" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [["train", "--train", "t.json", "--out", "run"],
                                     ["train-reader", "--results", "r.json", "--out", "run"],
                                     ["export", "--model", "default", "--out", "onnx"]])
def test_training_without_torch_is_one_line_naming_the_extra(command, tmp_path):
    out = subprocess.run([LEAN, "-m", "densepr", "-q", *command], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 2 and "pip install 'densepr[train]'" in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_serve_answers_without_torch(tiny_indexes, tiny_bert, tmp_path):
    import httpx

    from densepr.read.model import Reader

    Reader.from_pretrained(str(tiny_bert)).save(tmp_path / "reader")
    port = free_port()
    server = subprocess.Popen([LEAN, "-m", "densepr", "-q", "serve", "--index", str(tiny_indexes / "flat"), "--reader",
                               str(tmp_path / "reader"), "--port", str(port)], stderr=subprocess.PIPE, text=True)
    try:
        deadline, health = time.monotonic() + 120, None
        while time.monotonic() < deadline and health is None:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).json()
            except httpx.TransportError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                time.sleep(0.5)
        assert health is not None and health["backends"]["question_encoder"].startswith("onnx")
        answer = httpx.post(f"http://127.0.0.1:{port}/ask", json={"question": "where was einstein born", "k": 2}, timeout=60)
        assert answer.status_code == 200 and "answer" in answer.json()["answers"][0]
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_lean_install_ships_the_default_encoder():
    out = lean("-c", "from densepr.dense.loading import packaged_default_model as p; print(p())")
    assert out.returncode == 0 and Path(out.stdout.strip()).name == "encoder", out.stderr


def test_sharded_search_over_ray_without_torch(tiny_indexes, questions_jsonl, tmp_path, monkeypatch):
    """``retrieve --ray-address local`` in the lean environment: Ray actors on its interpreter (no torch) search the
    shards, and the result file is the one-process search's."""
    if lean("-c", "import ray").returncode != 0:
        pytest.skip("ray is not in the lean environment (pip install '.[ray]' there)")
    from densepr import pipeline

    sharded = tmp_path / "sharded"
    pipeline.build_index(embeddings=tiny_indexes / "emb", out=sharded, shards=2)
    ray_temp = tempfile.mkdtemp(prefix="ray")  # a short path: Ray's socket paths must fit in 107 bytes
    monkeypatch.setenv("RAY_TMPDIR", ray_temp)
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # no token written to ~/.ray
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    retrieve = ["retrieve", "--index", str(sharded), "--questions", str(questions_jsonl), "--top-k", "5"]
    try:
        remote = densepr(*retrieve, "--out", str(tmp_path / "remote.json"), "--ray-address", "local")
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)
    assert remote.returncode == 0, remote.stderr
    local = densepr(*retrieve, "--out", str(tmp_path / "local.json"))
    assert local.returncode == 0, local.stderr
    got, want = (json.loads((tmp_path / name).read_text()) for name in ("remote.json", "local.json"))
    assert [[c["id"] for c in r["ctxs"]] for r in got] == [[c["id"] for c in r["ctxs"]] for r in want]
    assert [c["score"] for r in got for c in r["ctxs"]] == pytest.approx([c["score"] for r in want for c in r["ctxs"]], abs=1e-5)


def test_a_collection_without_torch_and_without_the_formats_extra(tiny_bert, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "paris.md").write_text("# Paris\n\nParis is the capital of France on the river Seine.", encoding="utf-8")
    (docs / "ulm.txt").write_text("Einstein was born in Ulm in Germany.", encoding="utf-8")
    (docs / "page.html").write_text("<title>London</title><p>London is on the Thames.</p>", encoding="utf-8")
    made = densepr("collection", "create", str(docs), "--out", str(tmp_path / "kb"), "--model", str(tiny_bert))
    assert made.returncode == 0, made.stderr
    has_bs4 = lean("-c", "import bs4").returncode == 0
    assert has_bs4 or "page.html: skipped: reading it needs BeautifulSoup" in made.stderr
    found = densepr("ask", "--collection", str(tmp_path / "kb"), "--passages-only", "--json", "--retriever", "bm25",
                    "born in ulm")
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["passages"][0]["id"] == "ulm.txt#1"

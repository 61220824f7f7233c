"""Collections: a folder of files becomes an askable collection, syncs rank exactly as a fresh build, bad files are
skipped in one line each, and one writer at a time."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from densepr import collection as kb
from densepr.cli.main import main
from densepr.collection.build import locked
from densepr.errors import DenseprError
from densepr.retrieve.collection import current_version, read_version
from densepr.retrieve.searcher import open_collection
from densepr.retrieve.spec import SearchSpec

WORDS = ("einstein ulm paris france seine london thames river city king war music song album year born capital "
         "physicist germany mountain century first album record england").split()


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def rankings(folder: Path, questions: list[str], model=None) -> dict[str, list[list[tuple[str, float]]]]:
    """Top-100 (id, score) per question for BM25, dense and hybrid over the collection's published version."""
    out = {}
    for kind in ("bm25", "dense", "hybrid"):
        searcher = open_collection(SearchSpec(collection=str(folder), kind=kind).resolved(), model=model)
        out[kind] = [[(searcher.ids[h.row], h.score) for h in hits] for hits in searcher.search(questions, 100)]
    return out


def same_rankings(a: dict, b: dict) -> None:
    for kind in a:
        for qa, qb in zip(a[kind], b[kind], strict=True):
            assert [i for i, _ in qa] == [i for i, _ in qb], kind
            assert np.allclose([s for _, s in qa], [s for _, s in qb], atol=1e-5, rtol=0), kind


def test_twenty_rounds_of_syncs_rank_exactly_as_a_fresh_build(tmp_path, tiny_bert):
    rng = random.Random(7)
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(12):
        (docs / f"doc{i}.{'md' if i % 3 else 'txt'}").write_text(text(rng, rng.randint(5, 260)), encoding="utf-8")
    kb.create([str(docs)], tmp_path / "kb", model=str(tiny_bert), words=40, progress=False)
    questions = [text(rng, 4) for _ in range(12)]
    model = open_collection(SearchSpec(collection=str(tmp_path / "kb"), kind="dense").resolved()).dense.model
    merged = 0
    for round_ in range(20):
        files = sorted(docs.glob("*"))
        for _ in range(rng.randint(1, 3)):  # new documents, one of them sometimes a copy of another
            name = docs / f"new{round_}_{rng.randint(0, 10**6)}.txt"
            name.write_text(files[0].read_text() if rng.random() < 0.2 else text(rng, rng.randint(1, 200)), encoding="utf-8")
        for path in rng.sample(files, min(2, len(files))):  # edits, one keeping its mtime
            stat = path.stat()
            path.write_text(text(rng, rng.randint(3, 200)), encoding="utf-8")
            if rng.random() < 0.5:
                os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        if len(files) > 4:
            rng.choice(files).unlink()
        report = kb.sync(tmp_path / "kb", progress=False)
        merged += "merged" in report
        fresh = tmp_path / f"fresh{round_}"
        kb.create([str(docs)], fresh, model=str(tiny_bert), words=40, progress=False)
        same_rankings(rankings(tmp_path / "kb", questions, model), rankings(fresh, questions, model))
        assert read_version(tmp_path / "kb")["counts"] == read_version(fresh)["counts"]
        shutil.rmtree(fresh)
    assert merged >= 1  # the rounds went past the segment limit, so a merge was checked too
    assert len(list((tmp_path / "kb" / "segments").iterdir())) <= 10


def test_a_sync_encodes_only_what_changed(tmp_path, tiny_bert, caplog):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(5):
        (docs / f"d{i}.txt").write_text(text(random.Random(i), 120), encoding="utf-8")
    kb.create([str(docs)], docs / "kb", model=str(tiny_bert), progress=False)  # the collection inside its own source
    shutil.move(docs / "kb", tmp_path / "moved")  # a collection folder can move: it names its sources absolutely
    shutil.move(tmp_path / "moved", docs / "kb")
    assert kb.sync(docs / "kb", progress=False)["up_to_date"]  # its own files (passages.tsv...) are not documents
    shutil.move(docs / "kb", tmp_path / "kb")
    before = read_version(tmp_path / "kb")
    (docs / "d2.txt").write_text("a new text about the river seine in paris", encoding="utf-8")
    (docs / "d4.txt").unlink()
    report = kb.sync(tmp_path / "kb", progress=False)
    after = read_version(tmp_path / "kb")
    assert (report["new"], report["changed"], report["removed"]) == (0, 1, 1)
    assert after["files"]["d0.txt"] == before["files"]["d0.txt"]  # unchanged: same ids, same segment rows
    assert after["segments"]["s000002"] == 1  # only the edited document's one passage was written
    assert kb.sync(tmp_path / "kb", progress=False)["up_to_date"]


def minimal_pdf(text_layer: str | None, title: str = "") -> bytes:
    """A one-page PDF whose page shows ``text_layer`` (none: a page without text, as a scan without OCR)."""
    stream = f"BT /F1 12 Tf 72 720 Td ({text_layer}) Tj ET".encode() if text_layer else b""
    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
               b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
               b"/Resources << /Font << /F1 5 0 R >> >> >>",
               b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
               b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
               f"<< /Title ({title}) >>".encode()]
    out, offsets = bytearray(b"%PDF-1.4\n"), []
    for i, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1) + b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info 6 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


@pytest.fixture
def every_format(tmp_path) -> Path:
    """A folder with a document of every format collections read, and the bad files they must skip."""
    import docx
    import pypdf

    d = tmp_path / "docs"
    (d / "sub").mkdir(parents=True)
    (d / "plain.txt").write_text("The Seine river flows through Paris.", encoding="utf-8")
    (d / "notes.md").write_text("Intro line\n\n## Thames notes\n\nThe Thames flows through London.", encoding="utf-8")
    (d / "page.html").write_text("<html><head><title>Ulm page</title><script>var x = 'noise';</script></head><body>"
                                 "<nav>Home | About</nav><main><p>Einstein was born in Ulm.</p></main></body></html>")
    (d / "sub" / "report.pdf").write_bytes(minimal_pdf("Mountains of France are high", title="Mountain report"))
    word = docx.Document()
    word.add_heading("Music history", level=1)
    word.add_paragraph("The first album was recorded in England.")
    word.save(d / "sub" / "history.docx")
    (d / "records.jsonl").write_text(json.dumps({"_id": "r1", "title": "King", "text": "The king of England."}) + "\n"
                                     + json.dumps({"_id": "r2", "title": "War", "text": "A war of a century."}) + "\n")
    (d / "list.json").write_text(json.dumps([{"id": "a", "title": "Capital", "text": "Paris is the capital."}]))
    (d / "psgs.tsv").write_text("id\ttext\ttitle\n7\tLondon is a city on the Thames.\tLondon\n", encoding="utf-8")
    # the bad ones
    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(d / "sub" / "report.pdf"))
    writer.encrypt(user_password="secret", algorithm="RC4-128")
    writer.write(d / "locked.pdf")
    (d / "scan.pdf").write_bytes(minimal_pdf(None))
    (d / "binary.txt").write_bytes(bytes(range(256)) * 8)
    (d / "latin1.txt").write_bytes("Caf\xe9 cr\xe8me in Paris, a city of France, pr\xe8s de la Seine".encode("latin-1"))
    (d / "empty.md").write_bytes(b"")
    with open(d / "huge.txt", "wb") as fh:  # 1 GB, sparse: over the size limit, so never opened
        fh.truncate(1 << 30)
    (d / "loop").mkdir()
    os.symlink("..", d / "loop" / "up")
    os.symlink("missing.txt", d / "dangling.txt")
    (d / "copy.txt").write_text("The Seine river flows through Paris.", encoding="utf-8")
    (d / "locked.txt").write_text("no one may read this", encoding="utf-8")
    os.chmod(d / "locked.txt", 0)
    (d / "picture.png").write_bytes(b"\x89PNG")
    return d


def test_every_format_is_read_and_every_bad_file_is_one_line(every_format, tmp_path, tiny_bert, capsys):
    run = subprocess.run([sys.executable, "-m", "densepr", "collection", "create", str(every_format), "--out",
                          str(tmp_path / "kb"), "--model", str(tiny_bert), "--words", "20"], capture_output=True, text=True)
    out, err = run.stdout, run.stderr
    assert run.returncode == 0 and "Traceback" not in err, err
    record = read_version(tmp_path / "kb")
    titles = {key: [d["title"] for d in f["documents"]] for key, f in record["files"].items() if "documents" in f}
    assert titles["copy.txt"] == ["copy"] and titles["notes.md"] == ["Thames notes"]
    assert titles["page.html"] == ["Ulm page"] and titles["sub/report.pdf"] == ["Mountain report"]
    assert titles["sub/history.docx"] == ["Music history"] and titles["records.jsonl"] == ["King", "War"]
    assert titles["list.json"] == ["Capital"] and titles["psgs.tsv"] == ["London"] and "latin1.txt" in titles
    skipped = {s["path"]: s["reason"] for s in record["skipped"]}
    assert "encrypted" in skipped["locked.pdf"] and "text layer" in skipped["scan.pdf"]
    assert "binary" in skipped["binary.txt"] and "empty" in skipped["empty.md"] and "limit" in skipped["huge.txt"]
    assert "loop" in skipped["loop/up"] and "broken" in skipped["dangling.txt"]
    if not os.access(every_format / "locked.txt", os.R_OK):  # root reads it anyway
        assert "permission" in skipped["locked.txt"]
    assert record["files"]["plain.txt"] == {**record["files"]["plain.txt"], "duplicate_of": "copy.txt"}
    for path in skipped:
        assert sum(path in line for line in err.splitlines()) == 1, path  # one line each, naming the file
    assert "not UTF-8" in err and "1 of other types ignored" in out
    # a hit names its source: path, place and title
    ask = main(["-q", "ask", "--collection", str(tmp_path / "kb"), "--passages-only", "--json", "Einstein born Ulm"])
    hits = json.loads(capsys.readouterr().out)["passages"]
    assert ask == 0 and hits[0]["id"] == "page.html#1" and hits[0]["title"] == "Ulm page"


def test_nothing_readable_exits_2_and_the_formats_extra_is_named(tmp_path, capsys, caplog, monkeypatch):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_bytes(b"\x00\x01" * 50)
    (tmp_path / "docs" / "b.pdf").write_bytes(minimal_pdf("text"))
    monkeypatch.setitem(sys.modules, "pypdf", None)  # an install without densepr[formats]
    code = main(["collection", "create", str(tmp_path / "docs"), "--out", str(tmp_path / "kb")])
    err = capsys.readouterr().err
    assert code == 2 and "nothing could be read" in err.splitlines()[-1]
    assert "b.pdf: skipped: reading it needs pypdf: pip install 'densepr[formats]'" in caplog.text
    assert current_version(tmp_path / "kb") is None


def test_a_second_writer_is_refused_in_one_line(tmp_path, tiny_bert, capsys):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text("the river seine", encoding="utf-8")
    kb.create([str(tmp_path / "docs")], tmp_path / "kb", model=str(tiny_bert), progress=False)
    with locked(tmp_path / "kb"):
        code = main(["collection", "sync", str(tmp_path / "kb")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "another create or sync is running" in err[0]
    with pytest.raises(DenseprError, match="another create or sync"), locked(tmp_path / "kb"):
        kb.sync(tmp_path / "kb", progress=False)


def test_add_remove_and_info(tmp_path, tiny_bert, capsys):
    docs, other = tmp_path / "docs", tmp_path / "other"
    docs.mkdir()
    other.mkdir()
    (docs / "a.txt").write_text("paris is the capital of france", encoding="utf-8")
    (docs / "b.txt").write_text("london is on the thames", encoding="utf-8")
    (other / "c.md").write_text("# Ulm\n\neinstein was born in ulm", encoding="utf-8")
    folder = str(tmp_path / "kb")
    assert main(["collection", "create", str(docs), "--out", folder, "--model", str(tiny_bert)]) == 0
    assert main(["collection", "add", folder, str(other / "c.md")]) == 0
    assert main(["collection", "remove", folder, str(docs / "b.txt")]) == 0
    assert main(["collection", "sync", folder]) == 0  # b.txt stays out: it was removed by name
    capsys.readouterr()
    assert main(["collection", "info", folder, "--json"]) == 0
    about = json.loads(capsys.readouterr().out)
    assert about["counts"]["files"] == 2 and about["version"] == 3
    assert set(read_version(folder)["files"]) == {"a.txt", str(other / "c.md")}
    assert main(["collection", "remove", folder, str(tmp_path / "nowhere.txt")]) == 2
    assert "not in the collection" in capsys.readouterr().err


def test_a_served_collection_switches_to_each_synced_version_without_failing_a_request(tmp_path, tiny_bert):
    pytest.importorskip("fastapi", reason="the serve extra is not installed")
    import threading
    import time

    from fastapi.testclient import TestClient

    from densepr.serve import create_app

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(6):
        (docs / f"d{i}.txt").write_text(text(random.Random(i), 80), encoding="utf-8")
    kb.create([str(docs)], tmp_path / "kb", model=str(tiny_bert), progress=False)
    statuses: list[int] = []
    stop = threading.Event()
    with TestClient(create_app(collection=str(tmp_path / "kb"))) as client:
        def load() -> None:
            while not stop.is_set():
                statuses.append(client.post("/search", json={"question": "river seine", "k": 5}).status_code)

        threads = [threading.Thread(target=load) for _ in range(2)]
        for t in threads:
            t.start()
        for round_ in range(3):
            (docs / f"zebra{round_}.txt").write_text(f"zebrafish{round_} live in the river seine", encoding="utf-8")
            (docs / f"d{round_}.txt").unlink()
            kb.sync(tmp_path / "kb", progress=False)
            synced, found = time.monotonic(), False
            while not found and time.monotonic() - synced < 10:
                hits = client.post("/search", json={"question": f"zebrafish{round_}", "k": 1, "retriever": "bm25"}).json()
                found = [p["id"] for p in hits["results"][0]["passages"]] == [f"zebra{round_}.txt#1"]
            assert found, f"round {round_}: the new document was not searchable 10 s after the sync"
        stop.set()
        for t in threads:
            t.join()
        health = client.get("/health").json()
    assert health["collection"] == {"path": "kb", "version": 4, "load_error": None}
    assert len(statuses) > 10 and set(statuses) == {200}


def test_a_file_that_vanishes_or_is_denied_between_scan_and_read_is_one_skip(tmp_path, monkeypatch):
    from densepr.collection.scan import Found, Skipped, read, walk

    (tmp_path / "gone.txt").write_text("soon gone", encoding="utf-8")
    (tmp_path / "denied.txt").write_text("not for you", encoding="utf-8")
    found = {f.key: f for f in walk([tmp_path], tmp_path) if isinstance(f, Found)}
    (tmp_path / "gone.txt").unlink()
    assert read(found["gone.txt"], 1 << 20) == Skipped("gone.txt", "vanished during the scan")
    real_open = open

    def deny(path, *args, **kwargs):
        if str(path).endswith("denied.txt"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", deny)
    assert read(found["denied.txt"], 1 << 20) == Skipped("denied.txt", "permission denied")


def test_term_bm25_scores_as_the_bm25_index_does(tiny_indexes):
    from densepr.corpus.passages import PassageStore
    from densepr.sparse.bm25 import BM25Retriever
    from densepr.sparse.terms import TermBM25, TermCounts

    passages = list(PassageStore(tiny_indexes / "psgs.tsv"))
    counts = TermCounts.count([f"{p.title} {p.text}" for p in passages])
    ours, theirs = TermBM25(counts, [p.id for p in passages]), BM25Retriever.load(tiny_indexes / "bm25")
    for question in ("where was einstein born", "capital of france river", "song album reba"):
        rows = np.arange(len(passages))
        assert np.allclose(ours.scores(question, rows), theirs.scores(question, rows), atol=1e-5)
    # rows picked and the matrix read by column agree with a dense copy of it
    dense = np.zeros(counts.matrix.shape)
    for r in range(counts.matrix.shape[0]):
        a, z = counts.matrix.indptr[r], counts.matrix.indptr[r + 1]
        dense[r, counts.matrix.indices[a:z]] = counts.matrix.data[a:z]
    picked = counts.matrix[np.array([3, 0, 3])]
    again = np.zeros(picked.shape)
    for r in range(3):
        again[r, picked.indices[picked.indptr[r] : picked.indptr[r + 1]]] = picked.data[picked.indptr[r] : picked.indptr[r + 1]]
    assert np.array_equal(again, dense[[3, 0, 3]])
    indptr, rows, data = counts.matrix.columns()
    for c in range(dense.shape[1]):
        assert np.array_equal(rows[indptr[c] : indptr[c + 1]], np.flatnonzero(dense[:, c]))
        assert np.array_equal(data[indptr[c] : indptr[c + 1]], dense[dense[:, c] > 0, c])

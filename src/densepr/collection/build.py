"""Creating and keeping a collection current: scan the sources, read what is new or changed, write one segment for
it, publish a version that points at the segments' live rows, then drop what no version in use needs.

A sync's cost follows the change: every file is read and hashed (its content decides, not its mtime), but only new
and changed files are cut, counted and encoded. A version is published by replacing ``CURRENT``: a kill at any step
leaves the old version or the new one, and the same command run again completes the work. One writer at a time
holds ``.lock``; a second is refused in one line. Files with identical content are indexed once, under the first
path in path order; the others are listed as its duplicates.

>>> report = create(["notes/"], "kb/")                     # doctest: +SKIP
>>> report = sync("kb/")                                   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import logging
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from densepr.collection.formats import Unreadable, read_file_noting
from densepr.collection.scan import Found, Read, Skipped, key_of, read, walk
from densepr.corpus.passages import Passage, split_words
from densepr.dense.loading import DEFAULT_MODEL
from densepr.errors import DenseprError
from densepr.fileio import atomic_open, read_json, write_json
from densepr.retrieve.collection import (
    CURRENT,
    FORMAT,
    LOCK,
    SEGMENTS,
    VERSIONS,
    Segment,
    current_version,
    live_documents,
    read_version,
    version_path,
)

log = logging.getLogger("densepr")
SHIPPED_SEARCH = Path(__file__).resolve().parents[1] / "default" / "search.json"  # the default model's hybrid settings
REPORT = "report.json"


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the collection's write lock, or refuse in one line while another create or sync holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / LOCK, "a+", encoding="utf-8") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            pid = fh.read().strip()
            raise DenseprError(f"{folder}: another create or sync is running{f' (pid {pid})' if pid else ''}; "
                               "run this again when it has ended") from None
        fh.truncate(0)
        fh.write(str(os.getpid()))
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def create(docs: Sequence[str], out: str | os.PathLike, *, model: str | None = None, words: int = 100,
           max_file_mb: float = 100.0, progress: bool = True) -> dict[str, Any]:
    """Make ``out`` a collection of the files under ``docs`` (folders or files). Run on a collection of the same
    sources (one a kill interrupted, or already made), it syncs it."""
    if not docs:
        raise DenseprError("give the folders or files to make the collection of")
    if words < 1 or not max_file_mb > 0:
        raise DenseprError(f"--words must be >= 1 and --max-file-mb > 0 (got {words}, {max_file_mb})")
    folder, sources = Path(out), [os.path.abspath(d) for d in docs]
    for source in sources:
        if not os.path.exists(source):
            raise DenseprError(f"{source}: no such file or folder")
    with locked(folder):
        if current_version(folder) is not None:
            record = read_version(folder)
            if sorted(record["sources"]) != sorted(sources):
                raise DenseprError(f"{folder} is already a collection of other sources: sync it ('densepr collection sync "
                                   f"{folder}') or add to it ('densepr collection add'), or create into a new folder")
            log.info("%s is already a collection of these sources: syncing it", folder)
            return _update(folder, record, None, progress)
        model = model or DEFAULT_MODEL
        shipped = model in (DEFAULT_MODEL, "default") and SHIPPED_SEARCH.is_file()
        search = read_json(SHIPPED_SEARCH) if shipped else {}
        bases = [s if os.path.isdir(s) else os.path.dirname(s) for s in sources]
        settings = {"model": model, "words": words, "k1": 0.9, "b": 0.4, "stemmer": "english", "stopwords": "en",
                    "max_file_mb": max_file_mb, "base": os.path.commonpath(bases), "search": search,
                    "backend": None, "precision": None}
        record = {"format": FORMAT, "version": 0, "settings": settings, "sources": sources, "excluded": [], "files": {},
                  "skipped": [], "segments": {}}
        return _update(folder, record, None, progress)


def sync(folder: str | os.PathLike, *, rehash: bool = False, progress: bool = True) -> dict[str, Any]:
    """Bring the collection up to date with its sources. A file whose size, mtime, ctime and inode are as last seen
    keeps its hash (ctime changes with any write, and cannot be set back); ``rehash`` reads and hashes every file."""
    folder = Path(folder)
    with locked(folder):
        return _update(folder, read_version(folder), None, progress, rehash=rehash)


def add(folder: str | os.PathLike, files: Sequence[str], *, progress: bool = True) -> dict[str, Any]:
    """Index ``files`` (files or folders) now, and keep them in the collection's sources; nothing else is scanned."""
    folder, paths = Path(folder), _named(files)
    with locked(folder):
        record = read_version(folder)
        for path in paths:
            if not os.path.exists(path):
                raise DenseprError(f"{path}: no such file or folder")
        before = (list(record["sources"]), list(record["excluded"]))
        record["sources"] += [p for p in paths if not any(_under(p, s) for s in record["sources"])]
        record["excluded"] = [e for e in record["excluded"] if not any(_under(e, p) for p in paths)]
        changed = before != (record["sources"], record["excluded"])
        return _update(folder, record, paths, progress, sources_changed=changed)


def remove(folder: str | os.PathLike, files: Sequence[str], *, progress: bool = True) -> dict[str, Any]:
    """Drop ``files`` (files or folders) from the collection; they are left out of later syncs too."""
    folder, paths = Path(folder), _named(files)
    with locked(folder):
        record = read_version(folder)
        base = Path(record["settings"]["base"])
        known = set(record["files"]) | {s["path"] for s in record["skipped"]}
        for path in paths:
            key = key_of(Path(path), base)
            if not any(k == key or k.startswith(key + "/") for k in known) and path not in record["sources"]:
                raise DenseprError(f"{path}: not in the collection {folder}")
        record["sources"] = [s for s in record["sources"] if not any(_under(s, p) for p in paths)]
        record["excluded"] += [p for p in paths if any(_under(p, s) for s in record["sources"])]
        return _update(folder, record, paths, progress, sources_changed=True, rescan=False)


def info(folder: str | os.PathLike) -> dict[str, Any]:
    """The published version: its number, sources, settings and counts."""
    record = read_version(folder)
    keys = ("version", "published", "sources", "excluded", "counts", "settings")
    return {**{k: record.get(k) for k in keys}, "skipped": len(record["skipped"]), "segments": len(record["segments"])}


def _named(files: Sequence[str]) -> list[str]:
    if not files:
        raise DenseprError("name the files or folders")
    return [os.path.abspath(f) for f in files]


def _under(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _update(folder: Path, record: dict, scope: list[str] | None, progress: bool, sources_changed: bool = False,
            rescan: bool = True, rehash: bool = False) -> dict[str, Any]:
    """Scan (all sources, or the ``scope`` paths; with ``rescan`` off, drop them), publish a new version if anything
    changed, report."""
    start = time.perf_counter()
    settings, old_files = record["settings"], record["files"]
    base = Path(settings["base"])
    scope_keys = None if scope is None else [key_of(Path(p), base) for p in scope]

    def in_scope(key: str) -> bool:
        return scope_keys is None or any(key == s or key.startswith(s + "/") for s in scope_keys)

    ignored: list[str] = []
    roots = [Path(p) for p in (scope if scope is not None else record["sources"])
             if rescan and not any(_under(p, e) for e in record["excluded"])]
    left_out = [*record["excluded"], os.path.abspath(folder)]  # and the collection itself, when it lies among its sources
    reads: dict[str, Read] = {}
    skipped = {s["path"]: s["reason"] for s in record["skipped"] if not in_scope(s["path"])}
    max_bytes = int(settings["max_file_mb"] * 1e6)
    entries = {k: v for k, v in old_files.items() if not in_scope(k)}
    for item in tqdm(list(walk(roots, base, ignored)), disable=not progress, unit="file", desc="scan"):
        if isinstance(item, Found) and any(_under(os.path.abspath(item.path), e) for e in left_out):
            continue
        old = old_files.get(item.key, {})
        if isinstance(item, Found) and not rehash and old.get("stat") == list(item.stat) and "hash" in old:
            entries[item.key] = old  # size, mtime, ctime and inode unchanged: its last hash stands
            continue
        got = read(item, max_bytes) if isinstance(item, Found) else item
        if isinstance(got, Skipped):
            skipped[got.key] = got.reason
        else:
            reads[got.key] = got
            entries[got.key] = {"hash": got.hash, "size": len(got.data), "stat": list(item.stat)}
    paths_of: dict[str, list[str]] = {}
    for key in sorted(entries):
        paths_of.setdefault(entries[key]["hash"], []).append(key)
    files: dict[str, dict] = {}
    to_read = []
    for key in sorted(entries):
        first = paths_of[entries[key]["hash"]][0]
        old = old_files.get(key, {})
        if first != key:
            files[key] = {k: entries[key][k] for k in ("hash", "size", "stat") if k in entries[key]} | {"duplicate_of": first}
        elif old.get("hash") == entries[key]["hash"] and "documents" in old:
            files[key] = dict(old, stat=entries[key].get("stat", old.get("stat")))
        else:
            to_read.append(key)
    version = record["version"] + 1
    name = f"s{version:06d}"
    passages: list[Passage] = []
    warnings = 0
    for key in tqdm(to_read, disable=not progress or len(to_read) < 50, unit="file", desc="read"):
        got = reads.get(key) or read(Found(key, base / key if not key.startswith("/") else Path(key)), max_bytes)
        try:
            if isinstance(got, Skipped):
                raise Unreadable(got.reason)
            docs, warning = read_file_noting(got.path, got.data)
        except Unreadable as exc:
            skipped[key] = str(exc)
            continue
        if warning:
            warnings += 1
            log.warning("%s: %s", key, warning)
        documents: list[dict[str, Any]] = []
        cut: list[Passage] = []
        for doc in docs:
            title = " ".join(doc.title.split())
            chunks = split_words(doc.text, settings["words"])
            if chunks:
                doc_id = f"{key}:{doc.id}" if doc.id else key
                documents.append({"id": doc_id, "title": title, "segment": name, "row": len(passages) + len(cut),
                                  "count": len(chunks)})
                cut += [Passage(f"{doc_id}#{n}", chunk, title) for n, chunk in enumerate(chunks, 1)]
        if not cut:
            skipped[key] = "no text (an empty file)"
            continue
        passages += cut
        files[key] = {"hash": got.hash, "size": len(got.data), "stat": entries.get(key, {}).get("stat"),
                      "documents": documents}
    for key, entry in list(files.items()):  # a copy of a file that could not be read is skipped with it
        if entry.get("duplicate_of") in skipped:
            skipped[key] = f"same content as {entry['duplicate_of']}, skipped: {skipped[entry['duplicate_of']]}"
            del files[key]
    for key, reason in sorted(skipped.items()):
        if in_scope(key):
            log.warning("%s: skipped: %s", key, reason)
    new = dict(record, version=version, files=files, skipped=[{"path": k, "reason": r} for k, r in sorted(skipped.items())])
    report = _changes(old_files, files, skipped, ignored, warnings)
    if not any(f.get("documents") for f in files.values()):
        _write_report(folder, report, start)
        raise DenseprError(f"{folder}: nothing could be read ({len(skipped)} files skipped: see {folder / REPORT})")
    if files == old_files and new["skipped"] == record["skipped"] and not sources_changed and record["version"] > 0:
        report.update(version=record["version"], up_to_date=True)
        return _write_report(folder, report, start)
    segments = _live_segments(new)
    carried: list[tuple[Segment, Any]] = []
    if _needs_merge(new, segments, len(passages)):  # many dead rows or segments: carry every live row into the new one
        new["files"] = copy.deepcopy(files)
        plan = _carry_plan(new)
        offset = sum(len(rows) for _, rows in plan)
        for entry in live_documents(new):
            if entry["segment"] == name:
                entry["row"] += offset
        carried = _carry(folder, new, name, plan)
        report["merged"] = len(segments)
    from densepr.collection.segments import PassageEncoder, write_segment  # the model and its engine: only to write

    size = write_segment(folder / SEGMENTS / name, carried, passages, PassageEncoder(settings), settings, progress) \
        if passages or carried else 0
    new["segments"] = {s: record["segments"][s] for s in _live_segments(new) if s != name}
    if size:
        new["segments"][name] = size
    new["published"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    new["counts"] = {"files": sum(1 for f in files.values() if "documents" in f),
                     "documents": sum(len(f.get("documents", [])) for f in files.values()),
                     "passages": sum(d["count"] for d in live_documents(new)), "skipped": len(skipped),
                     "duplicates": sum(1 for f in files.values() if "duplicate_of" in f)}
    write_json(version_path(folder, version), new, indent=None)  # one line: the C encoder (20k files: 0.9 s with indent)
    with atomic_open(folder / CURRENT, "w", encoding="utf-8") as fh:
        fh.write(f"{version}\n")
    (folder / SEGMENTS).mkdir(exist_ok=True)
    _collect_garbage(folder, keep={*new["segments"], *record["segments"]}, oldest=record["version"])
    report.update(version=version, **new["counts"])
    return _write_report(folder, report, start)


def _live_segments(record: dict) -> list[str]:
    return sorted({d["segment"] for d in live_documents(record)})


def _needs_merge(record: dict, segments: list[str], new_rows: int) -> bool:
    """Merge when dead rows outnumber live ones in the segments kept, or more than 8 segments would be searched."""
    held = sum(record["segments"].get(s, 0) for s in segments)
    live = sum(d["count"] for d in live_documents(record)) - new_rows
    return len(segments) > 8 or (held > 2 * max(live, 1) and held - live > 1000)


def _carry_plan(record: dict) -> list[tuple[str, list[int]]]:
    plan: dict[str, list[int]] = {}
    name = f"s{record['version']:06d}"
    for doc in live_documents(record):
        if doc["segment"] != name:
            plan.setdefault(doc["segment"], []).extend(range(doc["row"], doc["row"] + doc["count"]))
    return sorted(plan.items())


def _carry(folder: Path, record: dict, name: str, plan: list[tuple[str, list[int]]]) -> list[tuple[Segment, Any]]:
    """The live rows of older segments (``plan``), in segment order, repointed to their places in segment ``name``."""
    import numpy as np

    carried, offset, moved = [], 0, {}
    for segment, rows in plan:
        carried.append((Segment.open(folder / SEGMENTS / segment), np.asarray(rows, dtype=np.int64)))
        moved[segment] = {row: offset + i for i, row in enumerate(rows)}
        offset += len(rows)
    for doc in live_documents(record):
        if doc["segment"] in moved:
            doc["row"], doc["segment"] = moved[doc["segment"]][doc["row"]], name
    return carried


def _changes(old: dict, new: dict, skipped: dict, ignored: list[str], warnings: int) -> dict[str, Any]:
    live_old = {k for k, v in old.items() if "documents" in v}
    live_new = {k for k, v in new.items() if "documents" in v}
    changed = sum(1 for k in live_old & live_new if old[k]["hash"] != new[k]["hash"])
    kinds: dict[str, int] = {}
    for suffix in ignored:
        kinds[suffix] = kinds.get(suffix, 0) + 1
    return {"new": len(live_new - live_old), "changed": changed, "removed": len(live_old - live_new),
            "skipped_files": [{"path": k, "reason": r} for k, r in sorted(skipped.items())], "ignored": kinds,
            "warnings": warnings, "up_to_date": False}


def _write_report(folder: Path, report: dict, start: float) -> dict[str, Any]:
    report["seconds"] = round(time.perf_counter() - start, 2)
    write_json(folder / REPORT, report)
    return report


def _collect_garbage(folder: Path, keep: set[str], oldest: int) -> None:
    """Drop segments no version in use names (the new one and the one before it, which a server may still be
    reading), versions older than that, and what a killed run left half-written."""
    for path in (folder / SEGMENTS).iterdir():
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
    for path in (folder / VERSIONS).iterdir():
        stem = path.name.split(".")[0]
        if path.name.startswith(".") or (stem.isdigit() and int(stem) < oldest):
            path.unlink(missing_ok=True)

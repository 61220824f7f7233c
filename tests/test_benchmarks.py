"""Every maintained benchmark suite runs at its smallest size (``python -m benchmarks SUITE --smoke``) and writes its
results and report; publishing replaces a suite's own section of a results page and keeps the others."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from benchmarks.__main__ import SUITES
from benchmarks.__main__ import main as run_suite
from benchmarks.harness import write_section

from conftest import SHARED_DATA

pytestmark = [pytest.mark.suites,
              pytest.mark.skipif(not (SHARED_DATA / "squad").is_dir(), reason=f"needs the shared data in {SHARED_DATA}")]
HEADINGS = {"retrieval": "## Retrieval on the mini-Wikipedia", "backends": "## Passage encoding", "serve": "## `densepr serve`",
            "training": "## Training on SQuAD articles", "qa": "## Open-domain QA", "planner": "## Index planner",
            "peers": "## densepr vs peers", "collections": "## collections"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """The retrieval suite's smallest corpus (its output), which the other suites read."""
    out = tmp_path_factory.mktemp("bench") / "retrieval"
    run_suite(["retrieval", "--smoke", "--out", str(out)])
    return out


def report(out: Path) -> tuple[dict, str]:
    return json.loads((out / "results.json").read_text()), (out / "report.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("suite", SUITES)
def test_suite_runs_at_its_smallest_size(suite, corpus, tmp_path):
    out = corpus if suite == "retrieval" else tmp_path / suite
    extra = {"retrieval": [], "collections": ["--work", str(tmp_path / "work")],
             "peers": ["--corpus", str(corpus), "--train-file", str(corpus.parent / "training" / "train.json")]}
    if suite != "retrieval":
        run_suite([suite, "--smoke", "--out", str(out), *extra.get(suite, ["--corpus", str(corpus)])])
    if suite == "training":  # the peers suite trains on this suite's training file
        (corpus.parent / "training").mkdir(exist_ok=True)
        (corpus.parent / "training" / "train.json").write_bytes((out / "train.json").read_bytes())
    results, text = report(out)
    assert HEADINGS[suite] in text and "CPU:" in text
    assert results["machine"]["cores"] >= 1 and results["command"].startswith(f"python -m benchmarks {suite} ")
    if suite == "retrieval":
        assert results["passages"] > 0 and all(0 <= e["top_k"]["100"] <= 100 for e in results["sets"].values())
    if suite == "backends":
        assert report(out / "ask")[0]["paths"]["lean (auto: ONNX graphs)"]["stdin_questions"] == 2


def test_publishing_replaces_only_its_own_section(tmp_path):
    page = tmp_path / "page.md"
    write_section(page, "a", "first a")
    write_section(page, "b", "first b")
    write_section(page, "a", "second a")
    text = page.read_text()
    assert "second a" in text and "first a" not in text and "first b" in text
    assert text.index("second a") < text.index("first b")

"""The reader's calibrated confidence: the model, the selective-QA measures, abstention in ask, serve and qa."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from densepr.cli.main import main
from densepr.errors import DenseprError
from densepr.quickstart import default_reader
from densepr.read.confidence import (
    FEATURES,
    ConfidenceModel,
    calibration_error,
    coverage_curve_area,
    features,
    reliability,
    selective,
)
from densepr.read.inference import PassageReading
from densepr.read.spans import MASKED, best_spans, span_certainty


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Features whose first column decides P(right) = sigmoid(2 x0 - 1); the others are noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, len(FEATURES)))
    return x, (rng.random(n) < 1 / (1 + np.exp(-(2 * x[:, 0] - 1)))).astype(float)


def test_a_fitted_model_is_calibrated_on_fresh_data_and_round_trips():
    model = ConfidenceModel.fit(*synthetic(4000, 0))
    x, y = synthetic(4000, 1)
    p = model.probability(x)
    assert calibration_error(p, y) < 0.03
    assert coverage_curve_area(p, y) > coverage_curve_area(x[:, 1], y) + 10  # ranks by what decides, not by noise
    again = ConfidenceModel.from_dict(json.loads(json.dumps(model.to_dict())))
    assert np.allclose(again.probability(x), p)
    with pytest.raises(DenseprError, match="another version"):
        ConfidenceModel.from_dict(dict(model.to_dict(), version=0))
    with pytest.raises(DenseprError, match="at least 10"):
        ConfidenceModel.fit(x[:5], y[:5])


def test_selective_measures_by_hand():
    confidence, correct = np.array([0.9, 0.8, 0.35, 0.1]), np.array([1.0, 0.0, 1.0, 0.0])
    s = selective(confidence, correct, threshold=0.5)
    assert (s["em_always"], s["coverage"], s["em_answered"]) == (50.0, 50.0, 50.0)
    assert s["area"] == pytest.approx(100 * (1 + 0.5 + 2 / 3 + 0.5) / 4)
    # bins: 0.1 -> [0.1, 0.2): conf 0.1, acc 0; 0.35: acc 1; 0.8: acc 0; 0.9: acc 1
    assert calibration_error(confidence, correct) == pytest.approx((0.1 + 0.65 + 0.8 + 0.1) / 4)
    bins = reliability(confidence, correct)
    assert [b["count"] for b in bins] == [0, 1, 0, 1, 0, 0, 0, 0, 1, 1] and math.isnan(bins[0]["accuracy"])


def test_features_pool_the_evidence_of_passages_giving_the_same_answer():
    readings = [PassageReading(0, 2.0, 5.0, 0, 0, "Ulm"), PassageReading(1, 1.0, 4.0, 0, 0, "ulm."),
                PassageReading(2, 0.0, 3.0, 0, 0, "Paris")]
    x = dict(zip(FEATURES, features(readings, readings[0], [30.0, 20.0, 10.0])))
    probs = np.exp([2.0, 1.0, 0.0]) / np.exp([2.0, 1.0, 0.0]).sum()
    assert x["selection_prob"] == pytest.approx(probs[0]) and x["answer_prob"] == pytest.approx(probs[0] + probs[1])
    assert x["agreeing_share"] == pytest.approx(2 / 3) and x["chosen_rank"] == 1
    assert x["retrieval_margin"] == pytest.approx(1 / 3) and x["answer_words"] == 1
    assert x["selection_logit"] == 2.0 and x["selection_logit_margin"] == pytest.approx(1.0)
    chosen = PassageReading(0, 2.0, 5.0, 3, 4, "Ulm", 7, span_logprob=-0.25, span_margin=6.0)
    x = dict(zip(FEATURES, features([chosen, *readings[1:]], chosen, [30.0, 20.0, 10.0])))
    assert (x["span_logprob"], x["span_margin"]) == (-0.25, 6.0)


def test_span_certainty_matches_every_span_counted_by_hand():
    rng = np.random.default_rng(3)
    start, end = rng.normal(size=(6, 12)) * 3, rng.normal(size=(6, 12)) * 3
    start[:, :2] = end[:, :2] = MASKED  # the question's tokens: never part of a span
    starts, ends, _ = best_spans(start, end, max_answer_len=4)
    logprob, margin = span_certainty(start, end, starts, ends, max_answer_len=4)
    for row in range(6):
        s, e = int(starts[row]), int(ends[row])
        log_softmax = [v - np.log(np.exp(v - v.max()).sum()) - v.max() for v in (start[row], end[row])]
        assert logprob[row] == pytest.approx(log_softmax[0][s] + log_softmax[1][e])
        others = [start[row, i] + end[row, j] for i in range(12) for j in range(i, min(i + 4, 12)) if j < s or i > e]
        assert margin[row] == pytest.approx(min(start[row, s] + end[row, e] - max(others), 15.0))
        assert logprob[row] <= 0 and margin[row] >= 0
    _, alone = span_certainty(np.array([[0.0, 2.0]]), np.array([[0.0, 2.0]]), np.array([0]), np.array([1]))
    assert alone[0] == 15.0  # no span outside the chosen one: the cap


@pytest.fixture(scope="module")
def calibrated_reader(tmp_path_factory) -> Path:
    """The shipped reader with a confidence model fitted on synthetic features (threshold set per test)."""
    shipped = default_reader()
    if shipped is None:
        pytest.skip("this install has no default reader")
    folder = tmp_path_factory.mktemp("calibrated_reader")
    for path in shipped.iterdir():
        (folder / path.name).symlink_to(path)
    (folder / "confidence.json").unlink(missing_ok=True)
    return folder


def with_threshold(folder: Path, threshold: float) -> None:
    model = ConfidenceModel.fit(*synthetic(500, 2))
    model.threshold = threshold
    model.save(folder)


def test_ask_abstains_below_the_threshold_and_always_answer_overrides(calibrated_reader, tiny_indexes, capsys):
    index = ["--index", str(tiny_indexes / "flat"), "--bm25-index", str(tiny_indexes / "bm25"), "--reader",
             str(calibrated_reader)]
    with_threshold(calibrated_reader, 1.0)  # no confidence reaches 1: always abstains
    assert main(["-q", "ask", "where was einstein born", "--json", *index]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["abstained"] is True and 0 <= found["confidence"] <= 1 and found["answer"]
    assert main(["-q", "ask", "where was einstein born", *index]) == 0
    assert capsys.readouterr().out.startswith("No confident answer (confidence ")
    assert main(["-q", "ask", "where was einstein born", "--always-answer", "--json", *index]) == 0
    answered = json.loads(capsys.readouterr().out)
    assert answered["abstained"] is False and answered["confidence"] == found["confidence"]
    assert main(["-q", "ask", "where was einstein born", "--min-confidence", "0", "--json", *index]) == 0
    assert json.loads(capsys.readouterr().out)["abstained"] is False
    assert main(["-q", "ask", "x", "--min-confidence", "1.5", *index]) == 2
    assert "--min-confidence is a probability" in capsys.readouterr().err


def test_min_confidence_needs_a_calibrated_reader(tiny_indexes, tmp_path, capsys):
    shipped = default_reader()
    bare = tmp_path / "bare"
    bare.mkdir()
    for path in shipped.iterdir():
        if path.name != "confidence.json":
            (bare / path.name).symlink_to(path)
    code = main(["-q", "ask", "where was einstein born", "--min-confidence", "0.5", "--reader", str(bare), "--index",
                 str(tiny_indexes / "flat"), "--bm25-index", str(tiny_indexes / "bm25")])
    assert code == 2 and "needs a reader with a confidence model" in capsys.readouterr().err


def test_qa_reports_selective_measures_with_a_calibrated_reader(calibrated_reader, tiny_indexes, tmp_path, capsys):
    with_threshold(calibrated_reader, 0.5)
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in
                                 [("where was einstein born", ["Ulm"]), ("what river flows through paris", ["Seine"])]))
    assert main(["-q", "retrieve", "--index", str(tiny_indexes / "flat"), "--bm25-index", str(tiny_indexes / "bm25"),
                 "--questions", str(questions), "--out", str(tmp_path / "r.json"), "--top-k", "5"]) == 0
    assert main(["-q", "qa", "--results", str(tmp_path / "r.json"), "--reader", str(calibrated_reader), "--out",
                 str(tmp_path / "p.json"), "--ks", "1,5", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["threshold"] == 0.5 and set(summary["selective"]) == {"1", "5"}
    for k, s in summary["selective"].items():
        assert s["em_always"] == summary["exact_match"][k] and 0 <= s["coverage"] <= 100 and 0 <= s["ece"] <= 1
    predictions = json.loads((tmp_path / "p.json").read_text())
    assert all(0 <= p["confidence"] <= 1 for e in predictions for p in e["predictions"])


def test_the_shipped_reader_abstains_by_default_at_its_fitted_threshold(tiny_indexes, capsys):
    shipped = default_reader()
    if shipped is None:
        pytest.skip("this install has no default reader")
    model = ConfidenceModel.load(shipped)  # refuses a model of another version or other features
    assert model is not None and 0 < model.threshold < 1
    assert {"squad-heldout", "nq-heldout", "efficientqa-heldout"} <= set(model.card["heldout"])
    index = ["--index", str(tiny_indexes / "flat"), "--bm25-index", str(tiny_indexes / "bm25")]
    assert main(["-q", "ask", "where was einstein born", "--json", *index]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["abstained"] == (found["confidence"] < model.threshold) and found["answer"]

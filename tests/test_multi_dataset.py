"""Several training sets in one run: epoch composition, per-set batches, build-train over several files, the card."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import shared
from densepr.errors import DenseprError
from densepr.train import read_training_data
from densepr.train.sampling import epoch_order, source_shares
from test_train_data import squad_corpus  # noqa: F401  (fixture)

SOURCES = np.array([0] * 60 + [1] * 20 + [2] * 10)  # 90 examples of three sets


def composition(order: np.ndarray) -> list[int]:
    return np.bincount(SOURCES[order], minlength=3).tolist()


def test_proportional_epoch_is_a_permutation_and_uniform_gives_equal_shares():
    order = epoch_order(SOURCES, block=10, steps=9, sampling="proportional", batching="per-source", seed=1, epoch=0)
    assert sorted(order.tolist()) == list(range(90))  # every example once
    uniform = epoch_order(SOURCES, block=10, steps=9, sampling="uniform", batching="per-source", seed=1, epoch=0)
    assert composition(uniform) == [30, 30, 30]  # the 10-example set repeats, the 60-example set is subsampled
    tempered = composition(epoch_order(SOURCES, block=10, steps=9, sampling="temperature", seed=1, epoch=0, temperature=2))
    assert 30 < tempered[0] < 60 and 10 < tempered[2] < 30  # between proportional and uniform


def test_per_source_batches_hold_one_set_and_mixed_batches_mix():
    order = epoch_order(SOURCES, block=10, steps=9, batching="per-source", seed=0, epoch=0)
    assert all(len(set(SOURCES[batch])) == 1 for batch in order.reshape(9, 10))
    assert all(len(set(batch.tolist())) == 10 for batch in order.reshape(9, 10))  # no example twice in a batch
    mixed = epoch_order(SOURCES, block=10, steps=9, batching="mixed", seed=0, epoch=0)
    assert sorted(mixed.tolist()) == list(range(90))
    assert any(len(set(SOURCES[batch])) > 1 for batch in mixed.reshape(9, 10))


def test_epoch_order_is_seeded_and_changes_with_the_epoch():
    a = epoch_order(SOURCES, block=10, steps=9, seed=3, epoch=0)
    assert np.array_equal(a, epoch_order(SOURCES, block=10, steps=9, seed=3, epoch=0))
    assert not np.array_equal(a, epoch_order(SOURCES, block=10, steps=9, seed=3, epoch=1))
    single = np.zeros(7, dtype=int)
    assert np.array_equal(epoch_order(single, 2, 3, seed=5, epoch=2), np.random.default_rng([5, 2]).permutation(7))


def test_bad_sampling_options_fail_clearly():
    with pytest.raises(DenseprError, match="fewer than one global batch"):
        epoch_order(SOURCES, block=16, steps=5, batching="per-source")
    with pytest.raises(DenseprError, match="unknown sampling"):
        source_shares(np.array([3, 4]), "square")
    with pytest.raises(DenseprError, match="> 0"):
        source_shares(np.array([3, 4]), "temperature", 0)


def test_build_train_several_files_each_with_its_match_mode(squad_corpus, tmp_path):  # noqa: F811
    from densepr.training import build_train

    path, store, _ = squad_corpus
    trec = tmp_path / "trec.txt"
    trec.write_text(json.dumps({"question": "what river is in Ulm?", "answer": ["Danub(e|ia)"]}) + "\n"
                    + json.dumps({"question": "who wrote faust?", "answer": ["Goethe"]}) + "\n")
    report = build_train(questions=[path, trec], match=["string", "regex"], passages=store.path, bm25=tmp_path / "bm25",
                         out=tmp_path / "train.json", words=8)
    assert report == {"squad": {"gold": 3, "distant": 0, "via_dense": 0, "dropped": 0},
                      "trec": {"gold": 0, "distant": 1, "via_dense": 0, "dropped": 1}}
    examples = read_training_data(tmp_path / "train.json")
    assert [ex.dataset for ex in examples] == ["squad"] * 3 + ["trec"]
    assert "Danube" in examples[-1].positives[0].text  # the regex matched; as a string the pattern would not
    with pytest.raises(DenseprError, match="one per question file"):
        build_train(questions=[path, trec], match=["string", "regex", "string"], passages=store.path,
                    bm25=tmp_path / "bm25", out=tmp_path / "x.json", words=8)


def test_train_on_two_files_records_the_sets_in_the_training_card(tiny_bert, tmp_path):
    from densepr.cli.main import main

    sample = [{k: v for k, v in ex.items() if k != "dataset"} for ex in json.loads(shared("dpr-format/nq-dev-sample.json").read_text())]
    (tmp_path / "nq.json").write_text(json.dumps(sample))  # sets are named by their "dataset" field, else by file
    (tmp_path / "other.json").write_text(json.dumps(sample[:3]))
    assert main(["-q", "train", "--train", str(tmp_path / "nq.json"), str(tmp_path / "other.json"), "--out",
                 str(tmp_path / "run"), "--model", str(tiny_bert), "--batch-size", "2", "--max-steps", "3", "--no-bf16",
                 "--sampling", "uniform"]) == 0
    card = json.loads((tmp_path / "run" / "final" / "training_card.json").read_text())
    assert card["datasets"] == {"nq": {"examples": 5, "share": 0.5}, "other": {"examples": 3, "share": 0.5}}
    assert (card["sampling"], card["batching"], card["examples"]) == ("uniform", "per-source", 8)
    assert main(["-q", "train", "--train", str(tmp_path / "nq.json"), str(tmp_path / "nq.json"), "--out",
                 str(tmp_path / "r2"), "--model", str(tiny_bert)]) == 2
    combined = [dict(ex, dataset="a" if i < 3 else "b") for i, ex in enumerate(sample)]  # build-train's several-file output
    (tmp_path / "combined.json").write_text(json.dumps(combined))
    assert main(["-q", "train", "--train", str(tmp_path / "combined.json"), "--out", str(tmp_path / "r3"), "--model",
                 str(tiny_bert), "--batch-size", "2", "--max-steps", "1", "--no-bf16"]) == 0
    card = json.loads((tmp_path / "r3" / "final" / "training_card.json").read_text())
    assert {name: d["examples"] for name, d in card["datasets"].items()} == {"a": 3, "b": 2}


def test_help_shows_defaults(capsys):
    from densepr.cli.main import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 16)" in text and "(default: 2e-05)" in text and "(default: per-source)" in text
    with pytest.raises(SystemExit):
        main(["build-train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "kept per question (default: 30)" in text and "(default: 10)" in text

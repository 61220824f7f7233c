"""Self-training in one command: train, encode, index, mine with a false-negative audit, train again; resumable."""

from __future__ import annotations

import json

from densepr.train import read_training_data
from test_train_data import squad_corpus  # noqa: F401  (fixture)


def test_self_train_runs_every_stage_and_resumes_where_it_stopped(tiny_bert, squad_corpus, tmp_path, capsys):  # noqa: F811
    from densepr.cli.main import main

    path, store, _ = squad_corpus
    assert main(["-q", "build-train", "--questions", str(path), "--passages", str(store.path), "--bm25", str(tmp_path / "bm25"),
                 "--out", str(tmp_path / "train.json"), "--words", "8"]) == 0
    run = tmp_path / "run"
    argv = ["-q", "self-train", "--train", str(tmp_path / "train.json"), "--passages", str(store.path), "--rounds", "1",
            "--out", str(run), "--model", str(tiny_bert), "--batch-size", "1", "--max-steps", "2", "--no-bf16", "--keep", "2"]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip() == str(run / "round-1" / "model" / "final")
    for stage in ("round-0/model/final/training_card.json", "round-0/index/meta.json", "round-0/mined.json",
                  "round-0/mine_audit.json", "round-1/model/final/training_card.json", "self_train.json"):
        assert (run / stage).is_file(), stage
    audit = json.loads((run / "round-0" / "mine_audit.json").read_text())
    mined = read_training_data(run / "round-0" / "mined.json")
    assert audit["examples"] == len(mined) == 3
    before = read_training_data(tmp_path / "train.json")
    renewed = [ex for ex, old in zip(mined, before) if ex.hard_negatives != old.hard_negatives]
    assert audit["kept"] == sum(len(ex.hard_negatives) for ex in renewed)
    assert len(mined) - len(renewed) == audit["examples_unchanged"]  # none left after the audit: old negatives stay
    report = json.loads((run / "self_train.json").read_text())
    assert [r["round"] for r in report["rounds"]] == [0, 1] and report["rounds"][0]["mine_audit"] == audit

    # killed after round 0's training: the index and the mined file are gone; the model stays
    trained = (run / "round-0" / "model" / "final" / "training_card.json").stat().st_mtime_ns
    final = (run / "round-1" / "model" / "final" / "training_card.json").stat().st_mtime_ns
    for gone in ("round-0/mined.json", "round-0/mine_audit.json"):
        (run / gone).unlink()
    import shutil
    shutil.rmtree(run / "round-0" / "index")
    assert main(argv) == 0
    assert (run / "round-0" / "model" / "final" / "training_card.json").stat().st_mtime_ns == trained  # not retrained
    assert (run / "round-1" / "model" / "final" / "training_card.json").stat().st_mtime_ns == final
    assert read_training_data(run / "round-0" / "mined.json") == mined  # mined again, the same
    assert main(["-q", "self-train", "--train", str(tmp_path / "train.json"), "--passages", str(tmp_path / "none.tsv"),
                 "--out", str(run)]) == 2

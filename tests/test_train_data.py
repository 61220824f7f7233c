"""Training data: DPR JSON format, SQuAD gold positives, distant supervision, hard negatives, mining."""

from __future__ import annotations

import dataclasses
import json

import pytest

from conftest import free_port, shared
from densepr.corpus.passages import PassageStore
from densepr.errors import DenseprError
from densepr.evaluate.answers import has_answer
from densepr.pipeline import build_bm25, make_passages
from densepr.questions import Question, read_questions
from densepr.retrieve.searcher import open_searcher
from densepr.train import TrainingExample, build_training_data, read_training_data, squad_gold_rows, write_training_data

SQUAD = {"data": [
    {"title": "Ulm_City", "paragraphs": [
        {"context": "Ulm is a city in Germany on the river Danube. It has a tall minster.",
         "qas": [{"id": "q1", "question": "Which river runs through Ulm?", "answers": [{"text": "Danube", "answer_start": 38}]}]},
        {"context": "Albert Einstein was born in Ulm in 1879 and later lived in Bern.",
         "qas": [{"id": "q2", "question": "When was Einstein born?", "answers": [{"text": "1879", "answer_start": 35}]}]}]},
    {"title": "Paris", "paragraphs": [
        {"context": "Paris is the capital of France. The Seine flows through Paris.",
         "qas": [{"id": "q3", "question": "What river flows through Paris?", "answers": [{"text": "Seine", "answer_start": 36}]}]}]},
]}


@pytest.fixture
def squad_corpus(tmp_path):
    path = tmp_path / "squad.json"
    path.write_text(json.dumps(SQUAD))
    make_passages(inputs=[str(path)], out=tmp_path / "psgs.tsv", words=8)
    build_bm25(passages=tmp_path / "psgs.tsv", out=tmp_path / "bm25", progress=False)
    return path, PassageStore(tmp_path / "psgs.tsv"), open_searcher(index=str(tmp_path / "bm25"))


def test_reads_dpr_training_json_as_shipped():
    examples = read_training_data(shared("dpr-format/nq-dev-sample.json"))
    assert len(examples) == 5
    ex = examples[0]
    assert ex.answers == ["Linda Davis"] and ex.positives[0].id == "11828866" and ex.hard_negatives


def test_training_json_round_trip_and_errors(tmp_path):
    examples = read_training_data(shared("dpr-format/nq-dev-sample.json"))
    write_training_data(tmp_path / "t.json", examples)
    assert read_training_data(tmp_path / "t.json") == examples
    (tmp_path / "bad.json").write_text('[{"question": "q", "positive_ctxs": [{"title": "t"}]}]')
    with pytest.raises(DenseprError, match="positive_ctxs\\[0\\] needs a string 'text'"):
        read_training_data(tmp_path / "bad.json")
    (tmp_path / "none.json").write_text('[{"question": "q", "positive_ctxs": []}]')
    with pytest.raises(DenseprError, match="no example has a positive"):
        read_training_data(tmp_path / "none.json")
    for text, message in (('{"question": "q"}', "expected a JSON list"), ("", "empty file"), ("[]", "no example has"),
                          ('[{"question": "q"},\n {"question": }]', "json:2: malformed JSON: Expecting value"),
                          ('[{"question": "q"} {"question": "r"}]', "expected ',' or ']'"),
                          ('[{"question": "q"}] x', "extra data after the list")):
        (tmp_path / "e.json").write_text(text)
        with pytest.raises(DenseprError, match=message):
            read_training_data(tmp_path / "e.json")


def test_training_json_is_read_in_chunks_of_any_size():
    from densepr.fileio import iter_json_list

    sample = shared("dpr-format/nq-dev-sample.json")
    expected = json.loads(sample.read_text())
    for chunk in (5, 999, 1 << 20):  # elements and strings cut anywhere by a chunk's end
        assert list(iter_json_list(sample, chunk=chunk)) == expected


def test_a_passage_met_again_is_one_object(tmp_path):
    ctx = {"title": "T", "text": "shared negative", "passage_id": "7"}
    data = [{"question": f"q{i}", "answers": ["a"], "positive_ctxs": [{"title": "P", "text": f"a {i}", "passage_id": str(i)}],
             "hard_negative_ctxs": [ctx]} for i in range(3)]
    (tmp_path / "t.json").write_text(json.dumps(data, indent=2))
    examples = read_training_data(tmp_path / "t.json")
    assert len({id(ex.hard_negatives[0]) for ex in examples}) == 1 and examples[2].hard_negatives[0].text == "shared negative"


def test_squad_gold_rows_hold_the_answer_span(squad_corpus):
    path, store, _ = squad_corpus
    gold = squad_gold_rows(path, store, words_per_passage=8)
    assert set(gold) == {"q1", "q2", "q3"}
    assert store[gold["q1"]].title == "Ulm City" and "Danube" in store[gold["q1"]].text
    assert "1879" in store[gold["q2"]].text and "Seine" in store[gold["q3"]].text


def test_build_training_data_gold_distant_and_dropped(squad_corpus):
    path, store, bm25 = squad_corpus
    questions = read_questions(path) + [Question("minster in ulm", ["minster"]), Question("unanswerable", ["zzz"])]
    examples, stats = build_training_data(questions, bm25, squad_gold_rows(path, store, 8), hard_negatives=3,
                                          random_negatives=2, progress=False)
    assert stats == {"gold": 3, "distant": 1, "via_dense": 0, "dropped": 1}
    for ex in examples:
        assert has_answer(ex.answers, ex.positives[0].text)
        assert all(not has_answer(ex.answers, p.text) for p in ex.hard_negatives + ex.negatives)
        assert ex.positives[0].id not in {p.id for p in ex.hard_negatives}


def test_a_dense_index_finds_positives_bm25_missed(tiny_bert, squad_corpus, tmp_path):
    from densepr.pipeline import build_index, encode

    path, store, bm25 = squad_corpus
    encode(passages=store.path, out=tmp_path / "emb", model=str(tiny_bert), progress=False)
    build_index(embeddings=tmp_path / "emb", out=tmp_path / "idx")
    dense = open_searcher(index=str(tmp_path / "idx"))
    # no word of the question is in the corpus, so BM25 scores nothing; the dense top-len(store) is the whole corpus
    questions = [Question("qqq xyz?", ["Seine"]), Question("minster in ulm", ["minster"]), Question("qqq", ["zzz"])]
    alone, stats = build_training_data(questions, bm25, depth=len(store), progress=False)
    assert stats == {"gold": 0, "distant": 1, "via_dense": 0, "dropped": 2}
    examples, stats = build_training_data(questions, bm25, depth=len(store), dense=dense, progress=False)
    assert stats == {"gold": 0, "distant": 2, "via_dense": 1, "dropped": 1}
    assert [ex.question for ex in examples] == ["qqq xyz?", "minster in ulm"]
    assert "Seine" in examples[0].positives[0].text and examples[1].positives == alone[0].positives
    assert all(not has_answer(ex.answers, p.text) for ex in examples for p in ex.hard_negatives + ex.negatives)


def test_mined_negatives_come_from_the_dense_retriever(tiny_bert, squad_corpus, tmp_path):
    from densepr.pipeline import build_index, encode
    from densepr.train import mine_hard_negatives

    path, store, bm25 = squad_corpus
    examples, _ = build_training_data(read_questions(path), bm25, squad_gold_rows(path, store, 8), progress=False)
    encode(passages=store.path, out=tmp_path / "emb", model=str(tiny_bert), progress=False)
    build_index(embeddings=tmp_path / "emb", out=tmp_path / "idx")
    dense = open_searcher(index=str(tmp_path / "idx"))
    mined, audit = mine_hard_negatives(examples, dense, keep=2, margin=None, progress=False)
    assert audit["examples"] == len(examples) and audit["kept"] == 2 * len(examples) and audit["skipped_margin"] == 0
    for before, after in zip(examples, mined):
        assert after.positives == before.positives and len(after.hard_negatives) == 2
        assert all(not has_answer(after.answers, p.text) and p.id != after.positives[0].id for p in after.hard_negatives)

    # the false-negative audit: nothing the model scores above the positive (+ margin) stays a negative
    row_of = {pid: row for row, pid in enumerate(dense.ids)}
    for margin in (0.0, 0.05):
        mined, audit = mine_hard_negatives(examples, dense, keep=5, margin=margin, progress=False)
        assert audit["kept"] == sum(len(ex.hard_negatives) for ex, old in zip(mined, examples) if ex.hard_negatives != old.hard_negatives)
        for ex, old in zip(mined, examples):
            if ex.hard_negatives == old.hard_negatives:
                continue  # nothing left after the audit: the old negatives stay
            q = dense.encode([ex.question])[0]
            positive = float(q @ dense.dense.index.vectors([row_of[ex.positives[0].id]])[0])
            scores = dense.dense.index.vectors([row_of[p.id] for p in ex.hard_negatives]) @ q
            assert all(score <= positive + margin + 1e-5 for score in scores)
    mined, audit = mine_hard_negatives(examples, dense, keep=2, margin=-1e9, progress=False)  # every passage is above
    assert audit["kept"] == 0 and audit["examples_unchanged"] == len(examples) and audit["skipped_margin"] > 0
    assert [ex.hard_negatives for ex in mined] == [ex.hard_negatives for ex in examples]  # old negatives kept

    # keep_old: the mined negatives come first, then the old ones not mined again, each once
    only, _ = mine_hard_negatives(examples, dense, keep=2, margin=None, progress=False)
    both, _ = mine_hard_negatives(examples, dense, keep=2, margin=None, progress=False, keep_old=True)
    for before, new, after in zip(examples, only, both):
        mined = [p.id for p in new.hard_negatives]
        assert [p.id for p in after.hard_negatives] == mined + [p.id for p in before.hard_negatives if p.id not in mined]


def test_mining_matches_answers_as_each_example_says(tiny_bert, squad_corpus, tmp_path):
    """A regex-matched set (CuratedTREC) is mined with regex even when the call's default is string matching."""
    from densepr.pipeline import build_index, encode
    from densepr.train import mine_hard_negatives

    path, store, bm25 = squad_corpus
    encode(passages=store.path, out=tmp_path / "emb", model=str(tiny_bert), progress=False)
    build_index(embeddings=tmp_path / "emb", out=tmp_path / "idx")
    dense = open_searcher(index=str(tmp_path / "idx"))
    regex = r"Dan[a-z]be"  # matches "Danube" as a pattern, never as a string
    holders = {store[r].id for r in range(len(store)) if has_answer([regex], store[r].text, "regex")}
    assert holders
    positive = store[0] if store[0].id not in holders else store[1]
    as_string = TrainingExample("which river?", [regex], [positive])
    as_regex = dataclasses.replace(as_string, match="regex")
    (by_string, by_regex), audit = mine_hard_negatives([as_string, as_regex], dense, keep=len(store), margin=None,
                                                       progress=False)
    assert holders & {p.id for p in by_string.hard_negatives}
    assert not holders & {p.id for p in by_regex.hard_negatives} and audit["skipped_answer"] == len(holders - {positive.id})


def test_build_train_records_each_examples_answer_match(squad_corpus, tmp_path):
    _, _, bm25 = squad_corpus
    examples, _ = build_training_data([Question("minster in ulm", [r"minst[a-z]r"])], bm25, match="regex", progress=False)
    assert [ex.match for ex in examples] == ["regex"]
    write_training_data(tmp_path / "t.json", examples)
    assert json.loads((tmp_path / "t.json").read_text())[0]["answer_match"] == "regex"
    assert read_training_data(tmp_path / "t.json")[0].match == "regex"
    entry = {**examples[0].to_dpr(), "answer_match": "fuzzy"}
    (tmp_path / "bad.json").write_text(json.dumps([entry]))
    with pytest.raises(DenseprError, match="answer_match must be one of string, regex"):
        read_training_data(tmp_path / "bad.json")


def test_cli_build_train_train_and_encode_with_checkpoint(tiny_bert, squad_corpus, tmp_path, capsys):
    from densepr.cli.main import main

    path, store, _ = squad_corpus
    assert main(["-q", "build-train", "--questions", str(path), "--passages", str(store.path), "--bm25", str(tmp_path / "bm25"),
                 "--out", str(tmp_path / "train.json"), "--words", "8"]) == 0
    assert len(read_training_data(tmp_path / "train.json")) == 3
    assert main(["-q", "train", "--train", str(tmp_path / "train.json"), "--out", str(tmp_path / "run"), "--model", str(tiny_bert),
                 "--batch-size", "1", "--max-steps", "2", "--no-bf16", "--dev", str(tmp_path / "train.json")]) == 0
    assert (tmp_path / "run" / "final" / "question_encoder" / "config.json").is_file()
    assert main(["-q", "encode", "--passages", str(store.path), "--out", str(tmp_path / "emb"), "--model", str(tmp_path / "run" / "final")]) == 0
    assert main(["-q", "train", "--train", str(tmp_path / "missing.json"), "--out", str(tmp_path / "r2"), "--model", str(tiny_bert)]) == 2
    assert "missing.json: no such file" in capsys.readouterr().err


def test_torchrun_two_processes_train(tiny_bert, tmp_path):
    import shutil
    import subprocess

    if shutil.which("torchrun") is None:
        pytest.skip("torchrun not on PATH")
    sample = shared("dpr-format/nq-dev-sample.json")
    cmd = ["torchrun", "--nproc-per-node", "2", "--master-addr", "127.0.0.1", "--master-port", str(free_port()), "-m", "densepr", "-q", "train",
           "--train", str(sample), "--out", str(tmp_path / "run"), "--model", str(tiny_bert), "--batch-size", "1",
           "--max-steps", "2", "--no-bf16"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    state = __import__("torch").load(tmp_path / "run" / "final" / "training_state.pt", weights_only=True)
    assert state["world_size"] == 2 and state["progress"]["global_step"] == 2

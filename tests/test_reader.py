"""The extractive reader: answer spans in tokens, loss, span decoding, save/load, EM, CLI qa/train-reader/ask."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from densepr.cli.main import main
from densepr.errors import DenseprError
from densepr.evaluate.answers import has_answer
from densepr.evaluate.exact_match import exact_match, exact_match_score, normalize_answer
from densepr.loop import TrainingLoop
from densepr.read import Reader, ReaderConfig, ReaderExample, ReaderTask, best_spans, find_answer_spans
from densepr.read.data import answer_token_ids, passage_spans, reader_examples
from densepr.read.inference import answer_results, choose, read_passages

EINSTEIN = {"id": "1", "title": "Albert Einstein", "text": "Albert Einstein was born in Ulm in Germany. Ulm is a city."}
PARIS = {"id": "2", "title": "Paris", "text": "Paris is the capital of France and the Seine river flows through the city."}
LONDON = {"id": "3", "title": "London", "text": "London is the capital of England on the river Thames."}
SONG = {"id": "4", "title": "Ulm", "text": "A song recorded by Reba and Linda Davis, first on the album."}


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main(["-q", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def bert(tmp_path_factory, tiny_bert) -> Path:
    """``tiny_bert`` with a working word-piece tokenizer rebuilt from its vocab.txt.

    (The fixture's own tokenizer, made with ``BertTokenizerFast(vocab_file=...)``, holds only its 5 special tokens
    under transformers 5, so every word becomes [UNK]: useless for finding answer spans.)
    """
    from transformers import BertTokenizer

    folder = tmp_path_factory.mktemp("reader_bert")
    for name in ("config.json", "model.safetensors", "vocab.txt"):
        shutil.copy(tiny_bert / name, folder / name)
    BertTokenizer.from_pretrained(folder, do_lower_case=True).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def reader(bert) -> Reader:
    torch.manual_seed(0)
    return Reader.from_pretrained(str(bert), max_answer_len=10)


def results_file(path, with_answers: bool = True):
    ctxs = [EINSTEIN, PARIS, LONDON, SONG]
    entries = [("where was einstein born", ["Ulm"]), ("what river flows through paris", ["Seine", "the Seine river"]),
               ("who recorded the song with reba", ["Linda Davis"])]
    results = [{"question": q, "answers": a if with_answers else ["Tokyo"], "qid": str(i),
                "ctxs": [dict(c, score=1.0, has_answer=with_answers and has_answer(a, c["text"])) for c in ctxs]}
               for i, (q, a) in enumerate(entries)]
    path.write_text(json.dumps(results), encoding="utf-8")
    return path


def test_find_answer_spans_in_token_ids():
    assert find_answer_spans([5, 7, 8, 5, 7, 5], [[5, 7]]) == [(0, 1), (3, 4)]
    assert find_answer_spans([5, 7, 8, 5, 7, 5], [[5, 7], [8], [5, 7]]) == [(0, 1), (2, 2), (3, 4)]
    assert find_answer_spans([5, 7, 8], [[9]]) == [] and find_answer_spans([5, 7], [[5, 7, 8]]) == []
    assert find_answer_spans([5, 7, 8, 5, 7], [[5, 7]], start=2) == [(3, 4)]
    assert find_answer_spans([5, 7, 8, 5, 7], [[5, 7]], start=0, end=3) == [(0, 1)]  # the span must end by `end`
    assert find_answer_spans([1, 2], [[]]) == []


def test_answer_spans_are_found_in_the_passage_text_only(reader):
    batch = reader.encode(["where was einstein born"] * 2, [EINSTEIN, SONG])
    ulm = answer_token_ids(reader.tokenizer, ["Ulm"])
    spans = passage_spans(batch, 0, ulm)
    assert len(spans) == 2  # "Ulm" twice in the text (and not counted in the question or title)
    assert [batch.span_text(0, s, e) for s, e in spans] == ["Ulm", "Ulm"]
    assert all(batch.text_start[0] <= s <= e <= batch.text_end[0] for s, e in spans)
    assert passage_spans(batch, 1, ulm) == []  # "Ulm" is SONG's title, not in its text
    assert passage_spans(batch, 1, answer_token_ids(reader.tokenizer, ["linda davis", "Reba"])) != []
    assert answer_token_ids(reader.tokenizer, ["", "  "]) == []


def test_span_text_widens_word_pieces_to_whole_words(reader):
    batch = reader.encode(["who sang it"], [SONG])
    first, last = passage_spans(batch, 0, answer_token_ids(reader.tokenizer, ["recorded"]))[0]
    assert last - first >= 2  # "recorded" is letter pieces in the tiny vocabulary
    pieces = [batch.span_text(0, first, first), batch.span_text(0, first + 1, last - 1), batch.span_text(0, last, last)]
    assert pieces == ["recorded"] * 3
    assert batch.span_text(0, first - 1, first) == "song recorded"  # a whole word before it stays as it is


def test_reader_examples_skip_and_count(reader, tmp_path):
    entries = json.loads(results_file(tmp_path / "r.json").read_text())
    entries[2]["ctxs"][0]["has_answer"] = True  # marked, but "Linda Davis" is not in the Einstein passage: still fine
    entries.append({"question": "q", "answers": ["nowhere"], "ctxs": [dict(PARIS, has_answer=True)]})
    entries.append({"question": "q2", "answers": ["x"], "ctxs": [dict(PARIS, has_answer=False)]})
    examples, stats = reader_examples(entries, reader.tokenizer, reader.max_length)
    assert stats == {"questions": 5, "gold": 0, "no_positive": 1, "no_answer_span": 1, "examples": 3}
    assert [e.positives[0]["id"] for e in examples] == ["1", "2", "4"]
    assert [len(e.negatives) for e in examples] == [3, 3, 2]


def test_reader_examples_take_gold_passages_and_their_pages_only(reader):
    ulm_city = {"id": "9", "title": "Albert Einstein", "text": "Einstein lived in Ulm as a child."}
    elsewhere = {"id": "8", "title": "Ulm Minster", "text": "Ulm Minster is a church in Ulm."}
    entry = {"question": "where was einstein born", "answers": ["Ulm"],
             "ctxs": [dict(elsewhere, has_answer=True), dict(PARIS, has_answer=False), dict(ulm_city, has_answer=True)]}
    plain, _ = reader_examples([entry], reader.tokenizer)
    assert [c["id"] for c in plain[0].positives] == ["8", "9"]  # any retrieved passage holding "Ulm"
    examples, stats = reader_examples([entry], reader.tokenizer, gold={"where was einstein born": [EINSTEIN]})
    assert stats == {"questions": 1, "gold": 1, "no_positive": 0, "no_answer_span": 0, "examples": 1}
    assert [c["id"] for c in examples[0].positives] == ["1", "9"]  # gold first, then its page; Ulm Minster is neither
    assert [c["id"] for c in examples[0].negatives] == ["2"]  # an answer passage of another page is no negative either
    no_answer = {"id": "7", "title": "Albert Einstein", "text": "Einstein was a physicist."}
    examples, _ = reader_examples([entry], reader.tokenizer, gold={"where was einstein born": [no_answer]})
    assert [c["id"] for c in examples[0].positives] == ["9"]  # a gold passage without the answer: its page's others
    _, stats = reader_examples([dict(entry, ctxs=entry["ctxs"][:2])], reader.tokenizer,
                               gold={"where was einstein born": [no_answer]})
    assert stats["no_answer_span"] == 1 and stats["examples"] == 0


def test_best_span_respects_order_and_length():
    start = torch.tensor([[0.0, 5.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 9.0, 0.0]])
    end = torch.tensor([[0.0, 0.0, 0.0, 0.0, 8.0], [0.0, 7.0, 0.0, 0.0, 1.0]])
    s, e, score = best_spans(start, end, max_answer_len=10)
    assert (s.tolist(), e.tolist()) == ([1, 3], [4, 4])  # row 2: end 1 is before the best start: never chosen
    assert score.tolist() == [13.0, 10.0]
    s, e, score = best_spans(start, end, max_answer_len=3)  # span 1..4 is 4 tokens: too long
    assert (s.tolist(), e.tolist(), score.tolist()) == ([2, 3], [4, 4], [8.0, 10.0])  # ties: the earliest start
    s, e, score = best_spans(torch.tensor([[0.0, 0.0, 3.0]]), torch.tensor([[4.0, 0.0, 0.0]]), max_answer_len=1)
    assert (int(s[0]), int(e[0]), float(score[0])) == (0, 0, 4.0)  # one-token spans only


def test_reader_loss_decreases_when_overfitting_two_questions(bert, tmp_path):
    examples = [ReaderExample("where was einstein born", ["Ulm"], [EINSTEIN], [PARIS, LONDON]),
                ReaderExample("what river flows through paris", ["Seine"], [PARIS], [LONDON, SONG])]
    torch.manual_seed(0)
    model = Reader.from_pretrained(str(bert))
    config = ReaderConfig(out=str(tmp_path), passages_per_question=3, batch_size=2, epochs=12, lr=1e-2, warmup_steps=0,
                          bf16=False, save_every=0)
    loop = TrainingLoop(ReaderTask(model, examples, config))
    losses = [loop.step(torch.arange(2).numpy(), epoch=0) for _ in range(12)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.3 * losses[0], losses
    readings = read_passages(model, "where was einstein born", [PARIS, EINSTEIN, LONDON], bf16=False)
    assert choose(readings).index == 1 and "Ulm" in choose(readings).answer


def test_gradient_accumulation_matches_one_larger_batch(bert, tmp_path):
    examples = [ReaderExample("where was einstein born", ["Ulm"], [EINSTEIN], [PARIS, LONDON]),
                ReaderExample("what river flows through paris", ["Seine"], [PARIS], [LONDON, SONG])]
    grads = []
    for batch_size, accumulation in ((2, 1), (1, 2)):
        torch.manual_seed(0)
        model = Reader.from_pretrained(str(bert)).eval()  # no dropout: both runs see the same forward passes
        config = ReaderConfig(out=str(tmp_path / f"b{batch_size}"), passages_per_question=3, batch_size=batch_size,
                              grad_accumulation=accumulation, warmup_steps=0, bf16=False, max_grad_norm=1e9)
        loop = TrainingLoop(ReaderTask(model, examples, config))
        assert loop.steps_per_epoch == 1
        loop.step(torch.arange(2).numpy(), epoch=0)
        grads.append({name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    for name, grad in grads[0].items():
        assert torch.allclose(grad, grads[1][name], atol=1e-6), name
    assert any(g.abs().sum() > 0 for g in grads[0].values())


def test_hugging_face_dpr_reader_gives_its_own_logits_and_best_span(tmp_path):
    from transformers import DPRConfig, DPRReader, DPRReaderTokenizer

    from conftest import _bert_config, _tokenizer

    folder = tmp_path / "dpr-reader"  # a tiny random DPRReader in the Hugging Face layout
    tokenizer = _tokenizer(folder)
    torch.manual_seed(3)
    dpr = DPRReader(DPRConfig(**{k: v for k, v in _bert_config().to_dict().items() if k in DPRConfig().to_dict()})).eval()
    dpr.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    question, ctxs = "where was einstein born", [EINSTEIN, PARIS, LONDON, SONG]
    dpr_tokenizer = DPRReaderTokenizer.from_pretrained(folder)
    enc = dpr_tokenizer(questions=[question] * len(ctxs), titles=[c["title"] for c in ctxs], texts=[c["text"] for c in ctxs],
                        padding=True, return_tensors="pt")
    with torch.no_grad():
        theirs = dpr(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"])

    reader = Reader.load(folder)
    assert reader.input_format == "dpr"
    batch = reader.encode([question] * len(ctxs), ctxs)
    with torch.no_grad():
        start, end, select = reader(**batch.tensors)
    for i in range(len(ctxs)):
        n = int(enc["attention_mask"][i].sum())
        assert batch.tensors["input_ids"][i, :n].tolist() == enc["input_ids"][i, :n].tolist()
        assert torch.allclose(start[i, :n], theirs.start_logits[i, :n], atol=1e-5)
        assert torch.allclose(end[i, :n], theirs.end_logits[i, :n], atol=1e-5)
    assert torch.allclose(select, theirs.relevance_logits, atol=1e-5)

    best = choose(read_passages(reader, question, ctxs, bf16=False))
    top = dpr_tokenizer.decode_best_spans(enc, theirs, num_spans=1, max_answer_length=reader.max_answer_len)[0]
    assert (best.index, best.start, best.end) == (top.doc_id, top.start_index, top.end_index)
    assert best.answer.lower().split() == top.text.split()

    reader.save(tmp_path / "saved")  # a DPR reader saved by densepr keeps DPR's input format
    again = Reader.load(tmp_path / "saved")
    assert again.input_format == "dpr"
    with torch.no_grad():
        assert torch.allclose(again(**batch.tensors)[2], select, atol=1e-6)


def test_save_and_load_give_identical_outputs(reader, tmp_path):
    reader.save(tmp_path / "final")
    loaded = Reader.load(tmp_path)  # a train-reader output folder: its final/ is found
    assert loaded.max_length == reader.max_length and loaded.max_answer_len == 10
    batch = reader.encode(["where was einstein born"] * 3, [EINSTEIN, PARIS, SONG])
    reader.eval()
    with torch.inference_mode():
        for a, b in zip(reader(**batch.tensors), loaded(**batch.tensors)):
            assert torch.equal(a, b)
    first = read_passages(reader, "who recorded the song with reba", [SONG, PARIS], bf16=False)
    assert read_passages(loaded, "who recorded the song with reba", [SONG, PARIS], bf16=False) == first
    assert not list(tmp_path.glob(".tmp-*"))
    with pytest.raises(DenseprError, match="not a reader folder"):
        Reader.load(tmp_path / "nothing")


def test_answer_results_reads_only_the_top_k(reader, tmp_path):
    entries = json.loads(results_file(tmp_path / "r.json").read_text())
    predictions, summary = answer_results(reader, entries, ks=[1, 2, 100], bf16=False)
    assert summary["questions"] == 3 and set(summary["exact_match"]) == {"1", "2", "100"}
    for p in predictions:
        assert [x["k"] for x in p["predictions"]] == [1, 2, 100]
        assert p["predictions"][0]["passage_id"] == "1"  # k=1: only the first passage is read
        assert p["prediction"] == p["predictions"][-1]["answer"]


def test_exact_match_normalisation():
    assert normalize_answer("The  Seine River!") == "seine river"
    assert exact_match("the Seine", ["Seine"]) and exact_match("an apple.", ["Apple"]) and exact_match("Ulm,", ["ulm"])
    assert not exact_match("Seine river", ["Seine"]) and not exact_match("", ["Seine"])
    assert exact_match("Café", ["Café"]) and exact_match("theatre", ["theatre"])  # "the" only as a whole word
    assert normalize_answer("A") == "" and exact_match("a", ["the"])  # articles alone normalise to nothing
    assert exact_match("September", [r"Sept?(ember)?"], match="regex") and not exact_match("Sep 1", [r"Sep"], match="regex")
    assert exact_match_score(["Ulm", "Paris"], [["ulm"], ["Seine"]]) == 50.0
    with pytest.raises(DenseprError):
        exact_match_score(["a"], [])


def test_cli_train_reader_qa_and_ask(tmp_path, capsys, bert, docs_jsonl):
    results = results_file(tmp_path / "results.json")
    code, _, err = run(capsys, "train-reader", "--results", results, "--out", tmp_path / "reader", "--model", bert,
                       "--passages-per-question", 3, "--batch-size", 2, "--epochs", 2, "--max-steps", 2, "--warmup-steps", 1,
                       "--no-bf16")
    assert code == 0, err
    assert (tmp_path / "reader" / "final" / "reader_heads.safetensors").is_file()
    assert (tmp_path / "reader" / "checkpoint-0000002" / "training_state.pt").is_file()
    code, out, err = run(capsys, "qa", "--results", results, "--reader", tmp_path / "reader", "--out", tmp_path / "preds.json",
                         "--ks", "1,4", "--no-bf16")
    assert code == 0, err
    assert "3 questions" in out and "k=1    exact match" in out and "k=4    exact match" in out
    preds = json.loads((tmp_path / "preds.json").read_text())
    assert len(preds) == 3 and preds[0]["qid"] == "0"
    assert {"answer", "passage_id", "exact_match"} <= set(preds[0]["predictions"][0])

    # resume: a second run with more steps continues from the last checkpoint
    from densepr.training import train_reader

    config = ReaderConfig(out=str(tmp_path / "reader"), passages_per_question=3, batch_size=2, epochs=2, max_steps=3,
                          warmup_steps=1, bf16=False)
    stats = train_reader(results=results, config=config, model=str(bert))
    assert stats["steps"] == 1
    gold = tmp_path / "gold.json"  # DPR training JSON: the gold passage of question 0 only
    gold.write_text(json.dumps([{"question": "where was einstein born", "answers": ["Ulm"], "positive_ctxs": [EINSTEIN]}]))
    code, _, err = run(capsys, "train-reader", "--results", results, "--gold", gold, "--out", tmp_path / "gold-reader",
                       "--model", bert, "--passages-per-question", 3, "--max-steps", 1, "--no-bf16")
    assert code == 0 and (tmp_path / "gold-reader" / "final" / "reader_heads.safetensors").is_file(), err

    from densepr import pipeline

    pipeline.make_passages(inputs=[str(docs_jsonl)], out=tmp_path / "psgs.tsv", words=12)
    pipeline.encode(passages=tmp_path / "psgs.tsv", out=tmp_path / "emb", model=str(bert), bf16=False, progress=False)
    pipeline.build_index(embeddings=tmp_path / "emb", out=tmp_path / "flat")
    code, out, err = run(capsys, "ask", "where was einstein born", "--index", tmp_path / "flat", "--top-k", 2,
                         "--reader", tmp_path / "reader")
    assert code == 0, err
    assert out.startswith("Answer: ") and "  from: " in out and "other passages read:" in out
    answer = out.split("\n")[0].removeprefix("Answer: ").split("   (")[0]
    assert f"**{answer}**" in out  # the span is marked in its passage
    code, out, err = run(capsys, "ask", "where was einstein born", "--index", tmp_path / "flat", "--top-k", 2,
                         "--reader", tmp_path / "reader", "--json")
    found = json.loads(out)
    assert found["answer"] == answer and len(found["passages"]) == 2
    assert found["passage"]["text"][found["answer_start"]:].startswith(answer)
    code, out, err = run(capsys, "ask", "where was einstein born", "--index", tmp_path / "flat", "--top-k", 2, "--passages-only")
    assert code == 0 and out.startswith("1. [") and "2. [" in out and "Answer" not in out

    # no question: one a line from stdin, models loaded once; a bad line is one error line, the rest still answered
    import io
    import sys
    stdin = io.StringIO("where was einstein born\n\n" + "x" * 2000 + "\nwhat river flows through paris\n")
    stdin.isatty = lambda: False  # type: ignore[method-assign]
    old, sys.stdin = sys.stdin, stdin
    try:
        code, out, err = run(capsys, "ask", "--index", tmp_path / "flat", "--top-k", 2, "--reader", tmp_path / "reader",
                             "--json")
    finally:
        sys.stdin = old
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [a["question"] for a in lines] == ["where was einstein born", "what river flows through paris"]
    assert err.count("\n") == 1 and "2,000 characters" in err


def test_cli_reader_errors_are_one_line(tmp_path, capsys, bert):
    no_positive = results_file(tmp_path / "none.json", with_answers=False)
    good = results_file(tmp_path / "good.json")
    cases = [
        (["train-reader", "--results", no_positive, "--out", tmp_path / "r", "--model", bert], "nothing to train on"),
        (["qa", "--results", good, "--reader", tmp_path / "no-reader", "--out", tmp_path / "p.json"], "not a reader folder"),
        (["qa", "--results", good, "--reader", bert, "--out", tmp_path / "p.json"], "not a reader folder"),
        (["ask", "q", "--index", tmp_path, "--reader", tmp_path / "no-reader"], "not a reader folder"),
        (["ask", "  ", "--index", tmp_path], "the question is empty"),
        (["qa", "--results", tmp_path / "missing.json", "--reader", tmp_path, "--out", tmp_path / "p.json"], "no such file"),
        (["train-reader", "--results", good, "--out", tmp_path / "r", "--model", tmp_path / "no-model"], "not a model folder"),
        (["train-reader", "--results", good, "--out", tmp_path / "r", "--model", bert, "--gold", good],
         "no example has a positive passage"),  # a results file is no DPR training JSON
    ]
    for argv, message in cases:
        code, _, err = run(capsys, *argv)
        assert code == 2 and message in err and err.count("\n") == 1, (argv, err)
    assert not (tmp_path / "p.json").exists() and not (tmp_path / "r" / "final").exists()

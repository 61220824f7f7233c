"""The one training loop: AdamW with linear warm-up/decay, bf16 autocast, accumulation, clipping, checkpoints
with exact resume, validation, an atomic ``final/`` folder, progress and logging. A model plugs in a :class:`Task`.

A run is deterministic in ``(seed, epoch, step)``: the example order of an epoch comes from the seed, and
the RNG state, optimiser and schedule are saved with each checkpoint, so a killed run resumed from its last
checkpoint ends with the same weights as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import shutil
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from densepr.errors import DenseprError
from densepr.fileio import atomic_folder, check_manifest, write_manifest
from densepr.hardware import cpu_supports_bf16, peak_rss_mb, use_bf16
from densepr.loop import distributed as dist
from densepr.loop.config import LoopConfig

log = logging.getLogger("densepr")
STATE_FILE = "training_state.pt"


class Task(Protocol):
    """What a model gives the loop: its parameters, how to turn example indices into a loss, how to save."""

    @property
    def name(self) -> str:
        """For log lines, e.g. "reader"."""

    @property
    def config(self) -> LoopConfig: ...

    @property
    def module(self) -> torch.nn.Module: ...

    @property
    def drop_last(self) -> bool:
        """Steps need full global batches (in-batch negatives); else the last batch may be short."""

    @property
    def gradients(self) -> str:
        """Across processes: "sum" (a global loss, each process holds its slice) or "mean"."""

    def __len__(self) -> int: ...

    def epoch_order(self, epoch: int, block: int, steps: int) -> np.ndarray:
        """The example indices of an epoch's ``steps`` global batches of ``block`` (:func:`epoch_order` for a seeded
        permutation of all examples; the dual encoder's can keep one training set per batch)."""

    def backward(self, indices: np.ndarray, epoch: int, autocast: AbstractContextManager, scale: float) -> float:
        """Forward and backward on this process's examples ``indices`` (loss times ``scale``); returns the loss."""

    def validate(self) -> float | None:
        """A validation score, lower is better (``None``: no validation)."""

    def save(self, folder: Path) -> None:
        """Write the model into ``folder`` (an empty temp folder)."""

    def load(self, folder: Path) -> None:
        """Copy the weights saved in ``folder`` into the model."""


def epoch_order(n: int, seed: int, epoch: int) -> np.ndarray:
    """The example order of one epoch."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def list_checkpoints(out_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    return sorted(p for p in out_dir.glob("checkpoint-*") if (p / STATE_FILE).is_file())


def linear_schedule(warmup: int, total: int):
    """Linear warm-up over ``warmup`` steps, then linear decay to 0 at ``total``."""
    return lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup))


class TrainingLoop:
    """Trains a :class:`Task`; one instance per process under torchrun. Resumes from ``out/checkpoint-*``.

    >>> report = TrainingLoop(DualEncoderTask(model, examples, TrainConfig(out="run/"))).train()   # doctest: +SKIP
    """

    def __init__(self, task: Task, progress: bool = False):
        cfg = task.config
        if len(task) == 0:
            raise DenseprError(f"no {task.name} training examples")
        if cfg.batch_size < 1 or cfg.grad_accumulation < 1:
            raise DenseprError("--batch-size and --grad-accumulation must be >= 1")
        self.task, self.config, self.progress = task, cfg, progress
        self.rank, self.world = dist.init_from_env()
        self.out = Path(cfg.out)
        self.examples_per_step = cfg.batch_size * self.world * cfg.grad_accumulation
        split = math.floor if task.drop_last else math.ceil
        self.steps_per_epoch = split(len(task) / self.examples_per_step)
        if self.steps_per_epoch == 0:
            raise DenseprError(f"{len(task)} examples are fewer than one global batch of {self.examples_per_step}")
        self.total_steps = self.steps_per_epoch * cfg.epochs
        if cfg.max_steps:
            self.total_steps = min(self.total_steps, cfg.max_steps)
        params = [p for p in task.module.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, linear_schedule(cfg.warmup_steps, self.total_steps))
        device = next(task.module.parameters()).device
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16(device.type, cfg.bf16))
        if cfg.bf16 and device.type == "cpu" and not cpu_supports_bf16():
            log.warning("--bf16 on a CPU without bf16 units (avx512_bf16, amx_bf16): emulated, slower than fp32 here")
        self.state: dict[str, Any] = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "best": None}

    def step(self, indices: np.ndarray, epoch: int) -> float:
        """One optimiser step over the global batch ``indices`` (this process takes its slices); returns the loss."""
        cfg = self.config
        self.optimizer.zero_grad(set_to_none=True)
        losses = []
        for micro in np.array_split(indices, cfg.grad_accumulation):
            mine = np.array_split(micro, self.world)[self.rank] if len(micro) else micro
            if len(mine):
                losses.append(self.task.backward(mine, epoch, self.autocast, 1.0 / cfg.grad_accumulation))
        params = [p for p in self.task.module.parameters() if p.requires_grad]
        dist.reduce_gradients(params, mean=self.task.gradients == "mean")
        torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        return float(np.mean(losses)) if losses else 0.0

    def train(self) -> dict[str, Any]:
        """Run (or resume) training; returns loss, throughput and memory figures."""
        cfg, task = self.config, self.task
        self.out.mkdir(parents=True, exist_ok=True)
        self._resume()
        s = self.state
        task.module.train()
        if self.rank == 0:
            log.info("training %s on %d examples: %d steps an epoch x %d epoch(s) = %d steps of %d examples%s", task.name,
                     len(task), self.steps_per_epoch, cfg.epochs, self.total_steps, self.examples_per_step,
                     f", from step {s['global_step']}" if s["global_step"] else "")
        start, steps_done, losses = time.perf_counter(), 0, []
        bar = tqdm(total=self.total_steps, initial=s["global_step"], desc=f"training {task.name}", unit="step",
                   disable=not self.progress or self.rank != 0)
        while s["global_step"] < self.total_steps:
            order = task.epoch_order(s["epoch"], self.examples_per_step, self.steps_per_epoch)
            while s["step_in_epoch"] < self.steps_per_epoch and s["global_step"] < self.total_steps:
                first = s["step_in_epoch"] * self.examples_per_step
                losses.append(self.step(order[first : first + self.examples_per_step], s["epoch"]))
                s["step_in_epoch"] += 1
                s["global_step"] += 1
                steps_done += 1
                bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
                bar.update()
                if s["global_step"] % cfg.log_every == 0 and self.rank == 0:
                    per_step = (time.perf_counter() - start) / steps_done
                    log.info("%s epoch %d step %d/%d loss %.4f lr %.2e (%.2f questions/s, %.0f s left)", task.name,
                             s["epoch"], s["global_step"], self.total_steps, np.mean(losses[-cfg.log_every:]),
                             self.scheduler.get_last_lr()[0], self.examples_per_step / per_step,
                             per_step * (self.total_steps - s["global_step"]))
                if cfg.save_every and s["global_step"] % cfg.save_every == 0:
                    self._save_checkpoint()
            if s["step_in_epoch"] >= self.steps_per_epoch:
                s["epoch"], s["step_in_epoch"] = s["epoch"] + 1, 0
                self._validate()
        bar.close()
        self._save_checkpoint()
        task.module.eval()
        self._save(self.out / "final", self._training_state())
        seconds = time.perf_counter() - start
        window = max(1, min(cfg.log_every, len(losses) // 2 or 1))
        return {"steps": steps_done, "seconds": seconds, "examples": len(task),
                "loss_first": float(np.mean(losses[:window])) if losses else None,
                "loss_last": float(np.mean(losses[-window:])) if losses else None,
                "questions_per_second": steps_done * self.examples_per_step / max(seconds, 1e-9),
                "peak_rss_mb": peak_rss_mb(), "best": s["best"]}

    def _save(self, path: Path, state: dict[str, Any]) -> None:
        """Rank 0 writes ``path``; the others wait."""
        if self.rank == 0:
            self._write(path, state)
        dist.barrier()

    def _write(self, path: Path, state: dict[str, Any]) -> None:
        """``path`` as a whole: the model and ``training_state.pt``."""
        with atomic_folder(path) as tmp:
            self.task.save(tmp)
            with open(tmp / STATE_FILE, "wb") as fh:  # Python's file object: a full disk raises OSError
                torch.save(state, fh)
            write_manifest(tmp)

    def _training_state(self) -> dict[str, Any]:
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "rng": torch.get_rng_state(), "progress": dict(self.state), "world_size": self.world,
                "config": dataclasses.asdict(self.config)}

    def _save_checkpoint(self) -> None:
        self._save(self.out / f"checkpoint-{self.state['global_step']:07d}", self._training_state())
        if self.rank == 0 and self.config.keep_checkpoints > 0:
            for old in list_checkpoints(self.out)[: -self.config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)

    def _resume(self) -> None:
        checkpoints = list_checkpoints(self.out)
        if not checkpoints:
            return
        check_manifest(checkpoints[-1], checksums=True)  # rarely done and cheap next to training: contents too
        try:
            state = torch.load(checkpoints[-1] / STATE_FILE, weights_only=True)
        except (RuntimeError, OSError, EOFError, ValueError) as exc:
            raise DenseprError(f"{checkpoints[-1] / STATE_FILE}: unreadable ({str(exc).splitlines()[0][:200]}); delete "
                               "this checkpoint to resume from the one before") from None
        defaults = {f.name: f.default for f in dataclasses.fields(self.config)}
        for key in type(self.config).RESUME_KEYS:
            saved = state["config"].get(key, defaults[key])  # a key added since the checkpoint: its default
            if saved != getattr(self.config, key):
                raise DenseprError(f"{checkpoints[-1]} was trained with {key}={saved}, not "
                                   f"{getattr(self.config, key)}; use the same options to resume, or another --out")
        if state["world_size"] != self.world:
            raise DenseprError(f"{checkpoints[-1]} was trained on {state['world_size']} processes, not {self.world}")
        self.task.load(checkpoints[-1])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        self.state = {"best": state["progress"].get("best_rank"), **state["progress"]}  # best_rank: older checkpoints
        log.info("resumed %s training from %s at epoch %d, step %d", self.task.name, checkpoints[-1],
                 self.state["epoch"], self.state["global_step"])

    def _validate(self) -> None:
        """Rank 0 validates; a better score than any before is saved as ``best/``."""
        if self.rank == 0:
            self.task.module.eval()
            score = self.task.validate()
            self.task.module.train()
            if score is not None:
                log.info("step %d: %s validation %.3f", self.state["global_step"], self.task.name, score)
                if self.state["best"] is None or score < self.state["best"]:
                    self.state["best"] = score
                    self._write(self.out / "best", {"validation": score, "global_step": self.state["global_step"]})
        dist.barrier()

"""Reader training (DPR section 6.1): per question 1 positive + (m−1) retrieved negatives, span MML + selection loss.

AdamW with linear warm-up/decay and clipping, bf16 autocast where the CPU has bf16 units, atomic
checkpoints (``checkpoint-*/``: reader folder + ``training_state.pt``) and exact resume; ``final/`` at the end.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import resource
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from densepr.dense.encoder import cpu_supports_bf16
from densepr.errors import DenseprError
from densepr.read.data import PassageBatch, ReaderExample, Span, answer_token_ids, passage_spans
from densepr.read.model import Reader, masked, reader_loss
from densepr.train.batches import epoch_order
from densepr.train.checkpoints import STATE_FILE, list_checkpoints, prune_checkpoints

log = logging.getLogger("densepr")


@dataclass
class ReaderConfig:
    """Reader training options; ``batch_size`` is questions per step, each with ``passages_per_question`` passages."""

    out: str
    passages_per_question: int = 24
    batch_size: int = 16
    epochs: int = 1
    lr: float = 2e-5
    warmup_steps: int = 100
    weight_decay: float = 0.0
    max_grad_norm: float = 2.0
    bf16: bool | None = None
    seed: int = 42
    save_every: int = 500
    keep_checkpoints: int = 2
    max_steps: int = 0
    log_every: int = 20


class ReaderTrainer:
    """Trains a :class:`Reader` on :class:`ReaderExample` s (resumes from ``out/checkpoint-*`` if present)."""

    def __init__(self, reader: Reader, examples: list[ReaderExample], config: ReaderConfig):
        if not examples:
            raise DenseprError("no reader training examples")
        if config.passages_per_question < 1 or config.batch_size < 1:
            raise DenseprError("--passages-per-question and --batch-size must be >= 1")
        self.reader, self.examples, self.config, self.out = reader, examples, config, Path(config.out)
        self.steps_per_epoch = math.ceil(len(examples) / config.batch_size)
        self.total_steps = self.steps_per_epoch * config.epochs
        if config.max_steps:
            self.total_steps = min(self.total_steps, config.max_steps)
        self.optimizer = torch.optim.AdamW(reader.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        warmup, total = config.warmup_steps, self.total_steps
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: (s + 1) / max(1, warmup) if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))
        device = reader.device
        bf16 = (device.type == "cuda" or cpu_supports_bf16()) if config.bf16 is None else config.bf16
        self.autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
        self.state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0}
        self._answer_ids = [answer_token_ids(reader.tokenizer, ex.answers) for ex in examples]

    def make_batch(self, indices: np.ndarray, epoch: int) -> tuple[PassageBatch, list[tuple[int, int, list[Span]]]]:
        """Sample each question's positive and negatives (seeded by question and epoch); tokenise them together."""
        m = self.config.passages_per_question
        questions, ctxs, sizes = [], [], []
        for idx in indices:
            ex = self.examples[int(idx)]
            rng = np.random.default_rng([self.config.seed, epoch, int(idx)])
            chosen = [ex.positives[int(rng.integers(len(ex.positives)))]]
            if ex.negatives and m > 1:
                picks = rng.choice(len(ex.negatives), size=min(m - 1, len(ex.negatives)), replace=False)
                chosen += [ex.negatives[int(j)] for j in picks]
            questions += [ex.question] * len(chosen)
            ctxs += chosen
            sizes.append(len(chosen))
        batch = self.reader.encode(questions, ctxs)
        groups, first = [], 0
        for idx, size in zip(indices, sizes):
            spans = passage_spans(batch, first, self._answer_ids[int(idx)])
            if spans:  # always, as examples keep only positives holding a span at this length
                groups.append((first, size, spans))
            first += size
        return batch, groups

    def step(self, indices: np.ndarray, epoch: int) -> float:
        """One optimisation step on the questions ``indices``; returns the loss."""
        batch, groups = self.make_batch(indices, epoch)
        self.optimizer.zero_grad(set_to_none=True)
        device = self.reader.device
        with self.autocast:
            start, end, select = self.reader(**{k: v.to(device) for k, v in batch.tensors.items()})
        loss = reader_loss(masked(start, batch.text_mask), masked(end, batch.text_mask), select, groups)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.reader.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        return float(loss.detach())

    def _order(self, epoch: int) -> np.ndarray:
        return epoch_order(len(self.examples), self.config.seed, epoch)

    def _save(self) -> None:
        state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                 "rng": torch.get_rng_state(), "progress": dict(self.state), "config": dataclasses.asdict(self.config)}
        self.reader.save(self.out / f"checkpoint-{self.state['global_step']:07d}", state)
        prune_checkpoints(self.out, self.config.keep_checkpoints)

    def _resume(self) -> None:
        checkpoints = list_checkpoints(self.out)
        if not checkpoints:
            return
        state = torch.load(checkpoints[-1] / STATE_FILE, weights_only=True)
        for key in ("batch_size", "seed", "passages_per_question", "epochs"):
            if state["config"][key] != getattr(self.config, key):
                raise DenseprError(f"{checkpoints[-1]} was trained with {key}={state['config'][key]}, not "
                                   f"{getattr(self.config, key)}; use the same options to resume, or another --out")
        self.reader.load_state_dict(Reader.load(checkpoints[-1]).state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
        self.state = state["progress"]
        log.info("resumed reader training from %s at step %d", checkpoints[-1], self.state["global_step"])

    def train(self) -> dict:
        """Run (or resume) training; returns loss, throughput and memory figures."""
        cfg = self.config
        self.out.mkdir(parents=True, exist_ok=True)
        self._resume()
        s = self.state
        self.reader.train()
        start, steps_done, losses = time.perf_counter(), 0, []
        while s["global_step"] < self.total_steps:
            order = self._order(s["epoch"])
            while s["step_in_epoch"] < self.steps_per_epoch and s["global_step"] < self.total_steps:
                indices = order[s["step_in_epoch"] * cfg.batch_size : (s["step_in_epoch"] + 1) * cfg.batch_size]
                losses.append(self.step(indices, s["epoch"]))
                s["step_in_epoch"] += 1
                s["global_step"] += 1
                steps_done += 1
                if s["global_step"] % cfg.log_every == 0:
                    qps = steps_done * cfg.batch_size / (time.perf_counter() - start)
                    log.info("reader epoch %d step %d/%d loss %.4f lr %.2e (%.2f questions/s)", s["epoch"], s["global_step"],
                             self.total_steps, np.mean(losses[-cfg.log_every:]), self.scheduler.get_last_lr()[0], qps)
                if cfg.save_every and s["global_step"] % cfg.save_every == 0:
                    self._save()
            if s["step_in_epoch"] >= self.steps_per_epoch:
                s["epoch"], s["step_in_epoch"] = s["epoch"] + 1, 0
        self._save()
        self.reader.eval()
        self.reader.save(self.out / "final")
        seconds = time.perf_counter() - start
        window = max(1, min(cfg.log_every, len(losses) // 2 or 1))
        return {"steps": steps_done, "seconds": seconds, "examples": len(self.examples),
                "loss_first": float(np.mean(losses[:window])) if losses else None,
                "loss_last": float(np.mean(losses[-window:])) if losses else None,
                "questions_per_second": steps_done * cfg.batch_size / max(seconds, 1e-9),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}

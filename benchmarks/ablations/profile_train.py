"""Where a densepr training step spends its time: torch profiler over a few steps, by operator and by phase.

    python -m benchmarks.ablations.profile_train [--train-file benchmarks/out/train/train.json] [--steps 6] [--batch-size 32]

Phases (tokenise, forward, backward, clip + AdamW) are timed per step with ``time.perf_counter`` (medians after
one warm-up step); the operator table is torch.profiler's self CPU time over the same steps. Writes ``results.json``
and ``report.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from densepr.dense.biencoder import BiEncoder
from densepr.fileio import write_json
from densepr.loop import TrainingLoop, epoch_order
from densepr.train import DualEncoderModel, DualEncoderTask, TrainConfig, read_training_data
from densepr.train.batches import make_batch


def timed_step(trainer: TrainingLoop, examples, indices, phases: dict[str, list[float]]) -> None:
    """One optimisation step as :meth:`TrainingLoop.step` does it for the dual encoder, with a clock between phases."""
    cfg, model = trainer.config, trainer.task.module
    t0 = time.perf_counter()
    q, p = make_batch(examples, indices, model.question_encoder, model.passage_encoder, cfg.hard_negatives, cfg.seed, 0)
    t1 = time.perf_counter()
    trainer.optimizer.zero_grad(set_to_none=True)
    with trainer.autocast:
        loss = model(q, p)
    t2 = time.perf_counter()
    loss.backward()
    t3 = time.perf_counter()
    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
    trainer.optimizer.step()
    trainer.scheduler.step()
    t4 = time.perf_counter()
    for name, seconds in zip(("tokenise", "forward", "backward", "clip+optimizer"), (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
        phases[name].append(seconds)
    phases["passage_tokens"].append(float(p["attention_mask"].numel()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-file", default="benchmarks/out/train/train.json")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast (as on CPUs without bf16 units)")
    parser.add_argument("--out", default="benchmarks/out/profile_train")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    examples = read_training_data(args.train_file)[: (args.steps + 1) * args.batch_size]
    config = TrainConfig(out=tempfile.mkdtemp(), batch_size=args.batch_size, save_every=0, warmup_steps=2,
                         bf16=False if args.fp32 else None)
    trainer = TrainingLoop(DualEncoderTask(DualEncoderModel(BiEncoder.load("default")), examples, config))
    trainer.task.module.train()
    order = epoch_order(len(examples), config.seed, 0)
    batches = [order[s * args.batch_size : (s + 1) * args.batch_size] for s in range(args.steps + 1)]
    phases: dict[str, list[float]] = {k: [] for k in ("tokenise", "forward", "backward", "clip+optimizer", "passage_tokens")}
    timed_step(trainer, examples, batches[0], {k: [] for k in phases})  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for indices in batches[1:]:
            timed_step(trainer, examples, indices, phases)
    medians = {k: statistics.median(v) for k, v in phases.items()}
    step = sum(v for k, v in medians.items() if k != "passage_tokens")
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=20)
    write_json(out / "results.json", {"median_s": medians, "step_s": step, "questions_per_s": args.batch_size / step,
                                      "threads": torch.get_num_threads(), "steps": args.steps})
    lines = ["# densepr training step profile", "",
             f"{args.steps} steps of {args.batch_size} questions (1 hard negative), {torch.get_num_threads()} threads; "
             f"median step {step:.2f} s = {args.batch_size / step:.1f} questions/s (profiler on: it adds some overhead).", "",
             "| phase | median s | share |", "|---|---|---|"]
    lines += [f"| {k} | {v:.3f} | {100 * v / step:.0f}% |" for k, v in medians.items() if k != "passage_tokens"]
    lines += ["", f"Passage tensor: {medians['passage_tokens']:.0f} token slots per step (padded).", "",
              "## Operators by self CPU time", "", "```", table, "```"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[:12 + len(medians)]))
    print(table)


if __name__ == "__main__":
    main()

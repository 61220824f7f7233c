"""What each training-speed choice buys: median dual-encoder step time per setting, interleaved in one process.

    python -m benchmarks.ablations.train_step_ablation [--train-file benchmarks/out/train/train.json] [--steps 8] [--fp32]

Settings, one step of each in turn (the same model; every setting runs the same batches):

- ``old``: attention-probability dropout 0.1 (as the hidden dropouts), transformers' ``sdpa`` attention, the passages
  of a step padded as one batch;
- ``no attention dropout``: 0 there, so CPU attention takes the fused (flash) kernel;
- ``fp32 attention``: that, plus fused attention in fp32 under bf16 autocast (:mod:`densepr.train.attention`);
- ``densepr``: that, plus the passages encoded in ``LENGTH_GROUPS`` groups of similar length (the default).

Medians skip each setting's first step. Writes ``results.json`` and ``report.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.ablations._report import cpu
from densepr.dense.biencoder import BiEncoder
from densepr.fileio import write_json
from densepr.hardware import use_bf16
from densepr.loop import TrainingLoop, epoch_order
from densepr.train import DualEncoderModel, DualEncoderTask, TrainConfig, read_training_data
from densepr.train.attention import NAME
from densepr.train.model import LENGTH_GROUPS
from densepr.train.task import set_dropout

SETTINGS = {"old": (0.1, "sdpa", 1), "no attention dropout": (0.0, "sdpa", 1), "fp32 attention": (0.0, NAME, 1),
            "densepr": (0.0, NAME, LENGTH_GROUPS)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-file", default="benchmarks/out/train/train.json")
    parser.add_argument("--steps", type=int, default=8, help="steps per setting")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--fp32", action="store_true", help="no bf16 autocast (as on CPUs without bf16 units)")
    parser.add_argument("--out", default="benchmarks/out/train_step_ablation")
    args = parser.parse_args()
    batch, rounds = args.batch_size, args.steps
    examples = read_training_data(args.train_file)[: rounds * batch]
    model = DualEncoderModel(BiEncoder.load("default"))
    config = TrainConfig(out=tempfile.mkdtemp(), batch_size=batch, save_every=0, warmup_steps=2, bf16=False if args.fp32 else None)
    trainer = TrainingLoop(DualEncoderTask(model, examples, config))
    model.train()
    configs = list({id(m.config): m.config for m in model.modules() if hasattr(m, "config")}.values())
    order = epoch_order(len(examples), config.seed, 0)
    times: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for step in range(len(SETTINGS) * rounds):
        name = list(SETTINGS)[step % len(SETTINGS)]
        attention_dropout, implementation, groups = SETTINGS[name]
        set_dropout(model, config.dropout, attention_dropout)
        model.length_groups = groups
        for c in configs:
            c._attn_implementation = implementation
        start = time.perf_counter()
        first = (step // len(SETTINGS)) * batch  # every setting runs the same batches
        trainer.step(order[first : first + batch], 0)
        times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(ts[1:]) for name, ts in times.items()}
    precision = "bf16" if use_bf16("cpu", config.bf16) else "fp32"
    result = {"median_step_s": medians, "speedup_over_old": {n: medians["old"] / m for n, m in medians.items()},
              "precision": precision, "cpu": cpu(), "steps": rounds,
              "torch_cpu_capability": torch.backends.cpu.get_cpu_capability()}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", result)
    lines = ["# Training step: what each speed choice buys", "",
             f"MiniLM dual encoder, batch {batch} (1 hard negative), {precision}; CPU {result['cpu']['model']}, flags "
             f"{' '.join(result['cpu']['flags'])} (torch capability {result['torch_cpu_capability']}), "
             f"{result['cpu']['threads']} threads; {rounds} steps of each setting, interleaved.", "",
             "| setting | median step s | questions/s | × old |", "|---|---|---|---|"]
    lines += [f"| {n} | {m:.2f} | {batch / m:.1f} | {medians['old'] / m:.2f} |" for n, m in medians.items()]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

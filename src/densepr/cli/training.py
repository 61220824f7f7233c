"""Training commands: ``build-train``, ``train`` (torchrun-ready) and ``mine``."""

from __future__ import annotations

import argparse

from densepr.evaluate.answers import MATCH_MODES
from densepr.train.model import SIMILARITIES


def _cmd_build_train(a: argparse.Namespace) -> None:
    from densepr.pipeline import build_train

    build_train(a.questions, a.passages, a.bm25, a.out, a.match, a.hard_negatives, a.random_negatives, a.depth, a.words)


def _cmd_train(a: argparse.Namespace) -> None:
    from densepr.pipeline import train

    options = {k: getattr(a, k) for k in ("batch_size", "hard_negatives", "epochs", "lr", "warmup_steps", "weight_decay",
                                           "max_grad_norm", "dropout", "similarity", "temperature", "shared", "grad_cache_chunk", "bf16",
                                           "seed", "save_every", "max_steps")}
    train(a.train, a.out, a.model, a.dev, **options)


def _cmd_mine(a: argparse.Namespace) -> None:
    from densepr.pipeline import mine

    mine(a.train, a.index, a.out, a.model, a.depth, a.keep, a.match)


def add_training_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("build-train", help="DPR training JSON: gold/distant positives, BM25 hard negatives")
    p.add_argument("--questions", required=True, help="SQuAD JSON (gold positives) or any question file (distant supervision)")
    p.add_argument("--passages", required=True)
    p.add_argument("--bm25", required=True, help="BM25 index folder over --passages")
    p.add_argument("--out", required=True)
    p.add_argument("--match", choices=MATCH_MODES, default="string")
    p.add_argument("--hard-negatives", type=int, default=30, help="BM25 hard negatives kept per question")
    p.add_argument("--random-negatives", type=int, default=10)
    p.add_argument("--depth", type=int, default=100, help="BM25 depth searched for positives and negatives")
    p.add_argument("--words", type=int, default=100, help="words per passage the corpus was split with")
    p.set_defaults(func=_cmd_build_train)

    p = sub.add_parser("train", help="train the dual encoder (run under torchrun for several processes)")
    p.add_argument("--train", required=True, help="DPR training JSON")
    p.add_argument("--dev", help="DPR training JSON for validation (average rank)")
    p.add_argument("--out", required=True, help="output folder: checkpoint-*/, best/, final/")
    p.add_argument("--model", help="starting model (default: offline all-MiniLM-L6-v2)")
    p.add_argument("--batch-size", type=int, default=16, help="questions per process per step")
    p.add_argument("--hard-negatives", type=int, default=1, help="hard negatives per question (paper: 1)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--max-grad-norm", type=float, default=2.0)
    p.add_argument("--dropout", type=float, default=0.1)
    p.add_argument("--similarity", choices=SIMILARITIES, default="dot")
    p.add_argument("--temperature", type=float, help="score divisor (default: 1, or 0.05 for unit-length vectors)")
    p.add_argument("--shared", action="store_true", help="one tower for questions and passages")
    p.add_argument("--grad-cache-chunk", type=int, default=0, help="gradient caching with this sub-batch size (0: off)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--save-every", type=int, default=500, help="checkpoint every N steps")
    p.add_argument("--max-steps", type=int, default=0, help="stop after N steps (0: all epochs)")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("mine", help="re-mine hard negatives with a dense index of the (trained) model")
    p.add_argument("--train", required=True, help="DPR training JSON")
    p.add_argument("--index", required=True, help="dense index built with the model to mine with")
    p.add_argument("--out", required=True)
    p.add_argument("--model", help="question encoder (default: the index's model)")
    p.add_argument("--depth", type=int, default=100)
    p.add_argument("--keep", type=int, default=30)
    p.add_argument("--match", choices=MATCH_MODES, default="string")
    p.set_defaults(func=_cmd_mine)

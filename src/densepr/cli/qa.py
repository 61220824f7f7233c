"""Open-domain QA commands: ``train-reader``, ``qa``, ``tune-hybrid``, and the hybrid options of ``retrieve``."""

from __future__ import annotations

import argparse
import json

from densepr.errors import DenseprError
from densepr.evaluate.answers import MATCH_MODES
from densepr.retrieve.hybrid import FUSIONS, NORMALIZATIONS


def _numbers(text: str, kind: type, flag: str) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DenseprError(f"{flag}: expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise DenseprError(f"{flag}: give at least one number")
    return values


def add_hybrid_options(p: argparse.ArgumentParser) -> None:
    """``--bm25-index``, ``--lam``, ``--depth``, ``--fusion``, ``--normalize`` (for ``--retriever hybrid``)."""
    p.add_argument("--bm25-index", help="BM25 index folder (hybrid: --index is then the dense index)")
    p.add_argument("--lam", type=float, help="hybrid: weight λ of the dense score in BM25 + λ·dense (default 1.1)")
    p.add_argument("--depth", type=int, help="hybrid: candidates taken from each retriever (default 2000)")
    p.add_argument("--fusion", choices=FUSIONS, help="hybrid: linear score fusion (default) or reciprocal rank fusion")
    p.add_argument("--normalize", choices=NORMALIZATIONS, help="hybrid: normalise each list's scores before linear fusion")


def hybrid_options(a: argparse.Namespace) -> dict:
    """The hybrid options given on the command line (checked against ``--retriever``)."""
    given = {k: getattr(a, k, None) for k in ("lam", "depth", "fusion", "normalize")}
    if a.retriever != "hybrid" and (a.bm25_index or any(v is not None for v in given.values())):
        raise DenseprError("--bm25-index, --lam, --depth, --fusion and --normalize need --retriever hybrid")
    return {"bm25_index": a.bm25_index, "hybrid": given} if a.retriever == "hybrid" else {}


def _cmd_tune_hybrid(a: argparse.Namespace) -> None:
    from densepr.pipeline import tune_hybrid

    lams, ks = _numbers(a.lams, float, "--lams"), _numbers(a.ks, int, "--ks")
    report = tune_hybrid(a.index, a.bm25_index, a.questions, lams, ks, a.passages, a.match,
                         {"depth": a.depth, "normalize": a.normalize}, model=a.model)
    if a.json:
        print(json.dumps({"questions": report["questions"], "best": report["best"],
                          "accuracy": {str(lam): acc for lam, acc in report["accuracy"].items()}}))
        return
    print(f"{report['questions']} questions, BM25 + λ·dense over the top {a.depth} of each")
    print("λ        " + "".join(f"top-{k:<6}" for k in ks))
    for lam, acc in report["accuracy"].items():
        print(f"{lam:<9g}" + "".join(f"{acc[str(k)]:<10.2f}" for k in ks))
    print(f"best λ = {report['best']:g}")


def _cmd_train_reader(a: argparse.Namespace) -> None:
    from densepr.pipeline import train_reader

    options = {k: getattr(a, k) for k in ("passages_per_question", "batch_size", "epochs", "lr", "warmup_steps",
                                           "weight_decay", "max_grad_norm", "bf16", "seed", "save_every", "max_steps")}
    train_reader(a.results, a.out, a.model, a.max_length, a.max_answer_len, a.depth, a.match, a.gold, **options)


def _cmd_qa(a: argparse.Namespace) -> None:
    from densepr.pipeline import answer

    summary = answer(a.results, a.reader, a.out, _numbers(a.ks, int, "--ks"), a.batch_size, a.match, a.bf16,
                     progress=not a.quiet)
    if a.json:
        print(json.dumps(summary))
        return
    print(f"{summary['questions']} questions ({summary['seconds_per_question']:.2f} s per question)")
    for k, em in summary["exact_match"].items():
        print(f"k={k:<4} exact match  {em:6.2f}")


def add_qa_commands(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune-hybrid", help="top-k accuracy of BM25 + λ·dense for several λ on dev questions")
    p.add_argument("--index", required=True, help="dense index folder")
    p.add_argument("--bm25-index", required=True, help="BM25 index folder over the same passages")
    p.add_argument("--questions", required=True, help="dev questions with answers")
    p.add_argument("--lams", default="0.1,0.3,0.5,0.7,0.9,1.1,1.5,2,3,5", help="comma-separated λ values")
    p.add_argument("--depth", type=int, default=2000, help="candidates taken from each retriever")
    p.add_argument("--normalize", choices=NORMALIZATIONS)
    p.add_argument("--ks", default="20,100", help="comma-separated k values (the best λ maximises the first)")
    p.add_argument("--model", help="question encoder (default: the index's model)")
    p.add_argument("--passages", help="passages TSV (default: the one the indexes were built from)")
    p.add_argument("--match", choices=MATCH_MODES, default="string")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_tune_hybrid)

    p = sub.add_parser("train-reader", help="train the extractive reader on DPR retrieval results")
    p.add_argument("--results", required=True, help="DPR result JSON of the training questions (from 'densepr retrieve')")
    p.add_argument("--out", required=True, help="output folder: checkpoint-*/ and final/")
    p.add_argument("--model", help="encoder to start from (default: offline all-MiniLM-L6-v2)")
    p.add_argument("--gold", help="DPR training JSON whose positive_ctxs are the questions' gold passages (from "
                   "'densepr build-train' on SQuAD): positives are then those and the answer passages of their pages")
    p.add_argument("--passages-per-question", type=int, default=24, help="m: 1 positive + m-1 sampled negatives (paper: 24)")
    p.add_argument("--depth", type=int, default=100, help="retrieved passages the positive and negatives come from")
    p.add_argument("--batch-size", type=int, default=16, help="questions per step")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=2e-5)
    p.add_argument("--warmup-steps", type=int, default=100)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--max-grad-norm", type=float, default=2.0)
    p.add_argument("--max-length", type=int, default=256, help="tokens per question + passage input")
    p.add_argument("--max-answer-len", type=int, default=10, help="longest answer span in tokens at inference")
    p.add_argument("--match", choices=MATCH_MODES, default="string", help="answer matching where ctxs lack has_answer")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--save-every", type=int, default=500, help="checkpoint every N steps")
    p.add_argument("--max-steps", type=int, default=0, help="stop after N steps (0: all epochs)")
    p.set_defaults(func=_cmd_train_reader)

    p = sub.add_parser("qa", help="answer questions from their retrieved passages; exact match at each k")
    p.add_argument("--results", required=True, help="DPR result JSON (from 'densepr retrieve')")
    p.add_argument("--reader", required=True, help="reader folder (from 'densepr train-reader')")
    p.add_argument("--out", required=True, help="predictions JSON")
    p.add_argument("--ks", default="1,5,10,20,50,100", help="numbers of top passages the reader sees")
    p.add_argument("--batch-size", type=int, default=32, help="passages per forward pass")
    p.add_argument("--match", choices=MATCH_MODES, default="string", help="regex: answers are patterns (CuratedTREC)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_qa)

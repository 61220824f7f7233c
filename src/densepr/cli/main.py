"""``densepr`` command line: each command's parser is generated from its options dataclass; the work is the
pipeline's. Building the parser imports no torch, transformers or faiss."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from densepr.cli import ask as ask_command
from densepr.cli import commands as c
from densepr.cli import options as o
from densepr.errors import DenseprError
from densepr.options import add_options, from_namespace, given
from densepr.read.config import ReaderConfig
from densepr.retrieve.spec import HYBRID_ONLY, SearchSpec
from densepr.train.config import TrainConfig


@dataclass(frozen=True)
class Command:
    """A subcommand: its options, what runs it, and whether it searches (``spec``) or trains (``config``)."""

    help: str
    options: type
    run: Callable[..., None]
    spec: bool = False
    config: type | None = None
    spec_exclude: tuple[str, ...] = ()  # search options a command leaves to --spec (its own option has the name)


TRAIN_MODULES = ("torch", "transformers", "accelerate", "sentence_transformers")  # what densepr[train] installs
COMMANDS = {
    "passages": Command("split documents into DPR psgs_w100.tsv passages", o.PassagesOptions, c.passages),
    "collection": Command("your documents as one askable folder: create DOCS --out KB, then sync, add, remove, info",
                          o.CollectionOptions, c.collection),
    "bm25": Command("build a BM25 index (Lucene scoring, k1=0.9, b=0.4)", o.BM25Options, c.bm25),
    "encode": Command("embed passages with the passage encoder (sharded, resumable)", o.EncodeOptions, c.encode),
    "index": Command("build a FAISS index from embedding shards", o.IndexOptions, c.index),
    "retrieve": Command("top-k passages for a question file, as DPR result JSON", o.RetrieveOptions, c.retrieve, spec=True),
    "verify": Command("check index folders file by file against their manifest (sizes and checksums)", o.VerifyOptions,
                      c.verify),
    "evaluate": Command("top-k accuracy of a DPR result file", o.EvaluateOptions, c.evaluate),
    "ask": Command("answer a question (default: the wiki-vital corpus, hybrid retrieval, the shipped reader)",
                   o.AskOptions, ask_command.run, spec=True),
    "serve": Command("HTTP search service (dense, BM25, hybrid) with a search page at /", o.ServeOptions, c.serve, spec=True),
    "build-train": Command("DPR training JSON: gold/distant positives, BM25 hard negatives", o.BuildTrainOptions,
                           c.build_train),
    "train": Command("train the dual encoder (run under torchrun for several processes)", o.TrainOptions, c.train,
                     config=TrainConfig),
    "self-train": Command("train, then mine hard negatives with the model's own index and train again (resumable)",
                          o.SelfTrainOptions, c.self_train, config=TrainConfig),
    "mine": Command("re-mine hard negatives with a dense index of the (trained) model", o.MineOptions, c.mine, spec=True,
                    spec_exclude=("depth",)),
    "tune-hybrid": Command("top-k accuracy of BM25 + λ·dense for several λ on dev questions", o.TuneHybridOptions,
                           c.tune_hybrid, spec=True),
    "train-reader": Command("train the extractive reader on DPR retrieval results", o.TrainReaderOptions, c.train_reader,
                            config=ReaderConfig),
    "qa": Command("answer questions from their retrieved passages; exact match at each k", o.QAOptions, c.qa),
    "export": Command("write a model (or --reader) as an ONNX folder that runs without torch (needs densepr[train])",
                      o.ExportOptions, c.export),
}


def _add_spec_options(p: argparse.ArgumentParser, exclude: Sequence[str]) -> None:
    p.add_argument("--spec", dest="spec_file", help="search spec JSON (e.g. from tune-hybrid --save-spec); "
                                                    "the options below override its fields")
    group = p.add_argument_group("retriever (also read from --spec; the options typed override it)")
    add_options(group, SearchSpec, suppress=(SearchSpec,), exclude=exclude)


def spec_from(ns: argparse.Namespace) -> SearchSpec:
    """The search spec of a command line: ``--spec`` (or the defaults), overridden by the options typed."""
    base = SearchSpec.load(ns.spec_file) if ns.spec_file else SearchSpec()
    typed = given(SearchSpec, ns)
    if typed.get("kind") in ("bm25", "dense") and base.index and base.bm25_index:
        base = base.part(typed["kind"])  # --retriever dense|bm25 over a hybrid spec: that half of it
    spec = dataclasses.replace(base, **typed)
    kind = spec.kind or ("hybrid" if spec.index and spec.bm25_index else None)
    hybrid_typed = [k for k in HYBRID_ONLY if k in typed and k != "bm25_index"]
    if kind != "hybrid" and (hybrid_typed or (kind and "bm25_index" in typed and kind != "bm25")):
        raise DenseprError("--bm25-index, --lam, --depth, --fusion, --normalize and --rrf-k need --retriever hybrid "
                           "(or both --index and --bm25-index)")
    return spec


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="densepr", description="Dense Passage Retrieval: passages, BM25, dense "
                                     "encoders, FAISS, hybrid retrieval, evaluation, training, reading.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        add_options(p, command.options)
        if command.config is not None:
            add_options(p.add_argument_group("training"), command.config)
        if command.spec:
            _add_spec_options(p, command.spec_exclude)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if ns.quiet else logging.INFO, format="densepr: %(message)s")
    for name in ("transformers", "sentence_transformers", "huggingface_hub", "bm25s", "faiss", "faiss.loader"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    if getattr(ns, "top_k", 1) < 1:
        print("densepr: error: --top-k must be >= 1", file=sys.stderr)
        return 2
    command = COMMANDS[ns.command]
    try:
        args: list[object] = [from_namespace(command.options, ns)]
        if command.spec:
            args.append(spec_from(ns))
        if command.config is not None:
            args.append(from_namespace(command.config, ns))
        command.run(*args, quiet=ns.quiet)
    except DenseprError as exc:
        print(f"densepr: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the output went to `head` or the like, which stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ModuleNotFoundError as exc:  # a lean install (no torch): training and the torch backends need the extra
        if (exc.name or "").split(".")[0] not in TRAIN_MODULES:
            raise
        print(f"densepr: error: 'densepr {ns.command}' needs {exc.name}: pip install 'densepr[train]'", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("densepr: interrupted (long jobs resume where they stopped when run again)", file=sys.stderr)
        return 130
    except OSError as exc:  # disk full, permission denied, a vanished file: one line naming the file
        where = next((str(f) for f in (exc.filename, exc.filename2) if f), "")
        reason = exc.strerror or str(exc).splitlines()[0]
        print(f"densepr: error: {where + ': ' if where else ''}{reason}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

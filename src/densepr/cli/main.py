"""``densepr`` command line: a thin layer over :mod:`densepr.pipeline` and friends."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import textwrap
from collections.abc import Sequence

from densepr.cli.qa import add_hybrid_options, add_qa_commands, hybrid_options
from densepr.cli.training import add_training_commands
from densepr.corpus.documents import FORMATS
from densepr.errors import DenseprError
from densepr.evaluate.answers import MATCH_MODES
from densepr.index.faiss_index import INDEX_TYPES


def _cmd_passages(a: argparse.Namespace) -> None:
    from densepr.pipeline import make_passages

    make_passages(a.inputs, a.out, words=a.words, fmt=a.format)


def _cmd_bm25(a: argparse.Namespace) -> None:
    from densepr.pipeline import build_bm25

    build_bm25(a.passages, a.out, k1=a.k1, b=a.b, progress=not a.quiet)


def _cmd_encode(a: argparse.Namespace) -> None:
    from densepr.pipeline import encode

    encode(a.passages, a.out, a.model, a.shard_id, a.num_shards, batch_size=a.batch_size, bf16=a.bf16, progress=not a.quiet)


def _cmd_index(a: argparse.Namespace) -> None:
    from densepr.pipeline import build_index

    build_index(a.embeddings, a.out, a.type, hnsw_m=a.hnsw_m, nlist=a.nlist, pq_m=a.pq_m)


def _cmd_retrieve(a: argparse.Namespace) -> None:
    from densepr.pipeline import retrieve

    dense = {} if a.retriever == "bm25" else {"model": a.model, "allow_model_mismatch": a.allow_model_mismatch}
    retrieve(a.index, a.questions, a.out, a.retriever, a.top_k, a.passages, a.match, a.nprobe, a.ef_search,
             **hybrid_options(a), **dense)


def _cmd_evaluate(a: argparse.Namespace) -> None:
    from densepr.evaluate.metrics import beir_metrics, read_qrels, top_k_accuracy
    from densepr.retrieve.results import read_results

    results = read_results(a.results)
    ks = [int(k) for k in a.ks.split(",")]
    report: dict = {"top_k_accuracy": top_k_accuracy(results, ks, a.match), "questions": len(results)}
    if a.qrels:
        run = {str(e.get("qid")): [c["id"] for c in e["ctxs"]] for e in results}
        report["beir"] = beir_metrics(run, read_qrels(a.qrels))
    if a.json:
        print(json.dumps(report))
        return
    print(f"{len(results)} questions")
    for k, acc in report["top_k_accuracy"].items():
        print(f"top-{k:<4} accuracy  {acc:6.2f}")
    for name, value in report.get("beir", {}).items():
        print(f"{name:<18} {value:6.2f}" if name != "queries" else f"{name:<18} {value}")


def _cmd_ask(a: argparse.Namespace) -> None:
    from densepr.quickstart import ask, read_answer
    from densepr.read import Reader

    reader = Reader.load(a.reader) if a.reader else None  # a bad reader folder fails before retrieval
    hits = ask(a.question, a.index, a.top_k, a.model)
    if reader is not None:
        found = read_answer(a.question, hits, reader)
        passage = found["passage"]
        print(f"Answer: {found['answer'] or '(no span found)'}")
        print(f"  from: {passage['title']} (passage {passage['id']}, rank {found['passage_index'] + 1})")
        print(textwrap.indent(textwrap.fill(passage["text"], 100), "   ") + "\n")
    for rank, hit in enumerate(hits, 1):
        print(f"{rank}. [{hit['score']:.3f}] {hit['title']} (passage {hit['id']})")
        print(textwrap.indent(textwrap.fill(hit["text"], 100), "   "))
    if reader is None:
        print("(no reader configured: these are the retrieved passages; pass --reader DIR, trained with "
              "'densepr train-reader', to extract an answer)")


def _cmd_serve(a: argparse.Namespace) -> None:
    try:
        import uvicorn

        from densepr.serve.app import create_app
    except ImportError as exc:
        raise DenseprError(f"'densepr serve' needs the serve extra ({exc.name} is missing): pip install 'densepr[serve]'") from None
    if not a.index and not a.bm25_index:
        raise DenseprError("give a dense index (--index DIR), a BM25 index (--bm25-index DIR), or both")
    app = create_app(a.index, a.bm25_index, model=a.model, passages=a.passages, reader=a.reader)
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning" if a.quiet else "info")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="densepr", description="Dense Passage Retrieval: passages, BM25, dense encoders, FAISS, evaluation.")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or info messages")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("passages", help="split documents into DPR psgs_w100.tsv passages")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="JSONL/BEIR corpus, DPR TSV, SQuAD JSON, or the name wiki-vital")
    p.add_argument("--out", required=True, help="output passages TSV")
    p.add_argument("--words", type=int, default=100, help="words per passage (default 100)")
    p.add_argument("--format", choices=FORMATS, help="input format (default: from the file extension)")
    p.set_defaults(func=_cmd_passages)

    p = sub.add_parser("bm25", help="build a BM25 index (Lucene scoring, k1=0.9, b=0.4)")
    p.add_argument("--passages", required=True)
    p.add_argument("--out", required=True, help="index folder")
    p.add_argument("--k1", type=float, default=0.9)
    p.add_argument("--b", type=float, default=0.4)
    p.set_defaults(func=_cmd_bm25)

    p = sub.add_parser("encode", help="embed passages with the passage encoder (sharded, resumable)")
    p.add_argument("--passages", required=True)
    p.add_argument("--out", required=True, help="embeddings folder")
    p.add_argument("--model", help="model folder or hub name (default: offline all-MiniLM-L6-v2)")
    p.add_argument("--shard-id", type=int, help="this process's shard (default: torchrun's RANK, else 0)")
    p.add_argument("--num-shards", type=int, help="shards in all (default: torchrun's WORLD_SIZE, else 1)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="passages per forward pass (default: as many as fit 4,096 tokens on CPU, 32,768 on GPU)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=None, help="bf16 autocast (default: on where the CPU has bf16 units)")
    p.set_defaults(func=_cmd_encode)

    p = sub.add_parser("index", help="build a FAISS index from embedding shards")
    p.add_argument("--embeddings", required=True, help="embeddings folder from 'densepr encode'")
    p.add_argument("--out", required=True, help="index folder")
    p.add_argument("--type", choices=INDEX_TYPES, default="flat")
    p.add_argument("--hnsw-m", type=int, default=32, help="HNSW links per node")
    p.add_argument("--nlist", type=int, help="IVF lists (default ~4*sqrt(N))")
    p.add_argument("--pq-m", type=int, help="PQ sub-quantisers (default dim/4)")
    p.set_defaults(func=_cmd_index)

    p = sub.add_parser("retrieve", help="top-k passages for a question file, as DPR result JSON")
    p.add_argument("--retriever", choices=("bm25", "dense", "hybrid"), required=True)
    p.add_argument("--index", required=True, help="index folder")
    p.add_argument("--questions", required=True, help="NQ-open/DrQA JSONL, DPR qas TSV/CSV, SQuAD JSON, BEIR queries")
    p.add_argument("--out", required=True)
    p.add_argument("--top-k", type=int, default=100)
    p.add_argument("--model", help="question encoder (default: the index's model)")
    p.add_argument("--allow-model-mismatch", action="store_true", help="allow a --model other than the index's")
    p.add_argument("--passages", help="passages TSV (default: the one the index was built from)")
    p.add_argument("--match", choices=MATCH_MODES, default="string", help="answer matching for has_answer")
    p.add_argument("--nprobe", type=int, help="IVF lists to probe")
    p.add_argument("--ef-search", type=int, help="HNSW search breadth")
    add_hybrid_options(p)
    p.set_defaults(func=_cmd_retrieve)

    p = sub.add_parser("evaluate", help="top-k accuracy of a DPR result file")
    p.add_argument("results")
    p.add_argument("--match", choices=MATCH_MODES, help="recompute has_answer with this mode (default: use the file's flags)")
    p.add_argument("--ks", default="1,5,20,100", help="comma-separated k values")
    p.add_argument("--qrels", help="BEIR qrels TSV: also report nDCG@10 and Recall@100")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("ask", help="top passages for one question (default: cached wiki-vital index)")
    p.add_argument("question")
    p.add_argument("--index", help="dense index folder (default: build/use the cached wiki-vital index)")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--model")
    p.add_argument("--reader", help="reader folder (from 'densepr train-reader'): also extract the answer span")
    p.set_defaults(func=_cmd_ask)

    p = sub.add_parser("serve", help="HTTP search service (dense, BM25, hybrid) with a search page at /")
    p.add_argument("--index", help="dense index folder")
    p.add_argument("--bm25-index", help="BM25 index folder (with --index: hybrid search too)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", help="question encoder (default: the index's model)")
    p.add_argument("--passages", help="passages TSV (default: the one the indexes were built from)")
    p.add_argument("--reader", help="reader folder (from 'densepr train-reader'): POST /ask returns answer spans")
    p.set_defaults(func=_cmd_serve)
    add_training_commands(sub)
    add_qa_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="densepr: %(message)s")
    for name in ("transformers", "sentence_transformers", "huggingface_hub", "bm25s"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "true")
    if getattr(args, "top_k", 1) < 1:
        print("densepr: error: --top-k must be >= 1", file=sys.stderr)
        return 2
    try:
        args.func(args)
    except DenseprError as exc:
        print(f"densepr: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("densepr: interrupted (long jobs resume where they stopped when run again)", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())

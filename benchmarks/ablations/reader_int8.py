"""The reader's int8 graph: which weight products stay fp32 so that it passes the agreement gate, and what each costs.

    python -m benchmarks.ablations.reader_int8 --corpus benchmarks/out/retrieval [--reader DIR] [--questions 1720]
        [--speed-questions 120] [--rounds 3] [--out benchmarks/out/reader_int8] [--page]

Exports the reader once to ONNX (fp32) and quantises it (ONNX Runtime dynamic int8, weights per output channel) with
these weight products kept fp32: none; the first half of the feed-forward down-projections (densepr's reader int8,
:func:`densepr.backends.onnx.early_down_projections`); every down-projection. For each, and for torch fp32 and the fp32
graph: the gate's agreement (start, end and selection logits against torch fp32 on 64 passages spread over the corpus,
as :func:`densepr.read.backend.attach_reader` measures it); milliseconds to read 5 passages a question (p50 of
``--speed-questions`` questions, in each of ``--rounds`` rounds, every variant in a process of its own: ONNX
Runtime's spinning threads slow a torch reader running beside them); exact match at k = 1 and 5, and how often the
answer at k = 5 is torch fp32's, over held-out SQuAD questions (the articles ``benchmarks.harness.split_squad``
holds out) with their dense top 5 over the corpus (torch fp32 questions).
Writes ``results.json`` and ``report.md`` under ``--out`` (``--page``: section ``reader-int8`` of
``docs/results/history.md``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from benchmarks.ablations._report import cpu, publish
from benchmarks.harness import DATA, split_squad
from densepr.backends.export import export_graph
from densepr.backends.gate import question_like, sample_passages
from densepr.backends.onnx import OnnxRunner, down_projections, early_down_projections, quantize_int8
from densepr.corpus.passages import PassageStore
from densepr.fileio import write_json
from densepr.read import Reader
from densepr.read.backend import logit_correlations
from densepr.read.inference import answer_results, read_passages

DEFAULT_READER = Path(__file__).resolve().parents[1] / "src/densepr/default/reader"
VARIANTS = ("torch fp32", "onnx fp32", "int8: all", "int8: early down-projections fp32", "int8: all down-projections fp32")


def graphs(reader: Reader, store: PassageStore, work: Path) -> dict[str, tuple[Path | None, list[str]]]:
    """Each variant's graph (None: torch) and the weight products it keeps fp32."""
    fp32 = work / "fp32.onnx"
    if not fp32.is_file():
        passage = sample_passages(store, 1)[0]
        sample = dict(reader.encode(["a", "what is b?"], [{"title": "t", "text": "b"}, passage.ctx()]).tensors)
        export_graph(reader, sample, ["start", "end", "select"], fp32)
    early = early_down_projections(fp32)
    every = down_projections(fp32)
    out: dict[str, tuple[Path | None, list[str]]] = {"torch fp32": (None, []), "onnx fp32": (fp32, [])}
    for name, keep in (("int8: all", []), ("int8: early down-projections fp32", early), ("int8: all down-projections fp32", every)):
        path = work / f"int8-{len(keep)}.onnx"
        if not path.is_file():
            quantize_int8(fp32, path, keep)
        out[name] = (path, keep)
    return out


def runner(path: Path | None, name: str) -> OnnxRunner | None:
    return None if path is None else OnnxRunner(path, "fp32" if name == "onnx fp32" else "int8")


def time_reading(reader_dir: Path, graph: Path | None, name: str, results: list[dict], n: int) -> float:
    """p50 ms to read the top 5 of ``n`` result entries (after 10 to warm up)."""
    reader = Reader.load(reader_dir, lite=True)
    reader.eval()
    reader.precision, reader.runner = "fp32", runner(graph, name)
    for entry in results[:10]:
        read_passages(reader, entry["question"], entry["ctxs"][:5])
    times = []
    for entry in results[10 : 10 + n]:
        start = time.perf_counter()
        read_passages(reader, entry["question"], entry["ctxs"][:5])
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def held_out_results(corpus: Path, work: Path, limit: int) -> list[dict]:
    """Held-out SQuAD questions with their dense top 5 over the corpus (torch fp32 questions)."""
    import densepr

    _, held, _ = split_squad(DATA / "squad/squad-dev-v1.1.open.json", work)
    questions = densepr.read_questions(held)[:limit]
    searcher = densepr.open_searcher(index=str(corpus / "flat"), backend="torch", precision="fp32")
    return searcher.results(questions, k=5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", default="benchmarks/out/retrieval", help="output folder of benchmarks.retrieval")
    parser.add_argument("--reader", default=str(DEFAULT_READER))
    parser.add_argument("--questions", type=int, default=1720, help="held-out SQuAD questions for exact match")
    parser.add_argument("--speed-questions", type=int, default=120)
    parser.add_argument("--rounds", type=int, default=3, help="timing rounds (every variant once a round, order alternating)")
    parser.add_argument("--out", default="benchmarks/out/reader_int8")
    parser.add_argument("--page", action="store_true", help="also write the report into docs/results/history.md")
    parser.add_argument("--time", nargs=2, metavar=("VARIANT", "GRAPH"), help=argparse.SUPPRESS)  # one timing process
    args = parser.parse_args()
    out, reader_dir = Path(args.out), Path(args.reader)
    out.mkdir(parents=True, exist_ok=True)
    if args.time:
        name, graph = args.time
        results = json.loads((out / "held_out.json").read_text())
        print(json.dumps(time_reading(reader_dir, None if graph == "-" else Path(graph), name, results, args.speed_questions)))
        return
    store = PassageStore(Path(args.corpus) / "psgs_w100.tsv")
    reader = Reader.load(reader_dir, lite=True)
    reader.eval()
    variants = graphs(reader, store, out)
    results = held_out_results(Path(args.corpus), out, args.questions)
    write_json(out / "held_out.json", results, indent=None)
    passages = sample_passages(store)
    questions, ctxs = question_like(passages), [p.ctx() for p in passages]
    rows: dict[str, dict] = {}
    reference: list[str] = []  # torch fp32's answers at k = 5
    for name, (graph, keep) in variants.items():
        run = runner(graph, name)
        agreement = {"start": 1.0, "end": 1.0, "select": 1.0} if run is None else logit_correlations(reader, run, questions, ctxs)
        reader.precision, reader.runner = "fp32", run
        predictions, summary = answer_results(reader, results, ks=(1, 5))
        answers = [p["prediction"] for p in predictions]
        reference = reference or answers
        rows[name] = {"fp32_nodes": keep, "agreement": {k: round(v, 4) for k, v in agreement.items()},
                      "exact_match": {k: round(v, 2) for k, v in summary["exact_match"].items()},
                      "same_answer_as_torch_fp32": round(100 * sum(map(str.__eq__, answers, reference)) / len(answers), 1),
                      "p50_ms": []}
        print(name, rows[name], flush=True)
    for round_ in range(args.rounds):
        for name in variants if round_ % 2 == 0 else reversed(list(variants)):
            graph = variants[name][0]
            command = [sys.executable, "-m", "benchmarks.ablations.reader_int8", "--reader", str(reader_dir), "--out", str(out),
                       "--speed-questions", str(args.speed_questions), "--time", name, str(graph or "-")]
            rows[name]["p50_ms"].append(round(float(subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()[-1]), 1))
            print(name, rows[name]["p50_ms"], flush=True)
    report = {"cpu": cpu(), "reader": str(reader_dir), "corpus": args.corpus, "questions": len(results),
              "speed_questions": args.speed_questions,
              "torch": torch.__version__, "variants": rows}
    publish(out, report, render(report), "reader-int8" if args.page else None)


def render(r: dict) -> str:
    base = statistics.median(r["variants"]["torch fp32"]["p50_ms"])
    header = ("| variant | fp32 weight products | logit correlation start / end / select (gate 0.995) "
              "| read 5 passages, p50 ms per round | x torch fp32 (medians) | EM k=1 | EM k=5 | same answer as torch fp32 (k=5) |")
    lines = [f"# The reader's int8 graph, {time.strftime('%Y-%m-%d')}", "",
             (f"CPU: {r['cpu']['model']}, flags {' '.join(r['cpu']['flags'])}, {r['cpu']['threads']} threads. Command: "
              f"`python -m benchmarks.ablations.reader_int8 --corpus {r['corpus']} --questions {r['questions']} --speed-questions {r['speed_questions']} --page`. "
              f"Reader: `{r['reader']}`; {r['questions']} held-out SQuAD questions, their dense top 5 over the corpus."),
             "", header, "|---|---:|---|---|---:|---:|---:|---:|"]
    for name, v in r["variants"].items():
        a, em = v["agreement"], v["exact_match"]
        lines.append(f"| {name} | {len(v['fp32_nodes'])} | {a['start']:.4f} / {a['end']:.4f} / {a['select']:.4f} | "
                     f"{' / '.join(map(str, v['p50_ms']))} | {base / statistics.median(v['p50_ms']):.2f} | {em['1']:.2f} | {em['5']:.2f} | "
                     f"{v['same_answer_as_torch_fp32']:.1f}% |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

"""What each command does with its parsed options: call the pipeline or library, print the outcome."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

from densepr.cli import options as o
from densepr.errors import DenseprError
from densepr.retrieve.spec import SearchSpec


def numbers(text: str, kind: type, flag: str) -> list[Any]:
    """Comma-separated numbers of an option, or a one-line error."""
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise DenseprError(f"{flag}: expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise DenseprError(f"{flag}: give at least one number")
    return values


def passages(a: o.PassagesOptions, quiet: bool) -> None:
    from densepr.pipeline import make_passages

    make_passages(**dataclasses.asdict(a))


def collection(a: o.CollectionOptions, quiet: bool) -> None:
    from densepr import collection as kb

    progress = not quiet
    if a.action == "create":
        if not a.out:
            raise DenseprError("collection create: give the folder to write with --out KB")
        report = kb.create(a.paths, a.out, model=a.model, words=a.words, max_file_mb=a.max_file_mb, progress=progress)
        folder = a.out
    else:
        if a.out or a.model:
            raise DenseprError(f"collection {a.action}: --out and --model go with create")
        folder, rest = a.paths[0], a.paths[1:]
        if a.action in ("add", "remove") and not rest:
            raise DenseprError(f"collection {a.action} KB FILES...: name the files or folders after the collection")
        if a.action in ("sync", "info") and rest:
            raise DenseprError(f"collection {a.action} takes one collection folder, not {len(a.paths)} paths")
        if a.action == "info":
            about = kb.info(folder)
            print(json.dumps(about, indent=None if a.json else 2, ensure_ascii=False))
            return
        run = {"sync": lambda: kb.sync(folder, rehash=a.rehash, progress=progress), "add": lambda: kb.add(folder, rest, progress=progress),
               "remove": lambda: kb.remove(folder, rest, progress=progress)}[a.action]
        report = run()
    print(json.dumps(report, ensure_ascii=False) if a.json else summary_line(folder, report))


def summary_line(folder: str, r: dict[str, Any]) -> str:
    """One line closing a collection run: version, counts, changes, skipped, seconds."""
    if r.get("up_to_date"):
        return f"{folder}: up to date at version {r['version']} ({len(r['skipped_files'])} skipped; {r['seconds']:.1f} s)"
    ignored = sum(r["ignored"].values())
    return (f"{folder}: version {r['version']}: {r['documents']:,} documents in {r['files']:,} files, {r['passages']:,} "
            f"passages ({r['new']} new, {r['changed']} changed, {r['removed']} removed files); {r['skipped']} skipped, "
            f"{r['duplicates']} duplicates{f', {ignored} of other types ignored' if ignored else ''}; {r['seconds']:.1f} s")


def bm25(a: o.BM25Options, quiet: bool) -> None:
    from densepr.pipeline import build_bm25

    build_bm25(**dataclasses.asdict(a), progress=not quiet)


def encode(a: o.EncodeOptions, quiet: bool) -> None:
    from densepr.pipeline import encode as run

    run(**dataclasses.asdict(a), progress=not quiet)


def index(a: o.IndexOptions, quiet: bool) -> None:
    from densepr.index.planner import Plan
    from densepr.pipeline import build_index

    built = build_index(**dataclasses.asdict(a), progress=not quiet)
    if isinstance(built, Plan):
        print(json.dumps(built.to_dict(), indent=2))


def retrieve(a: o.RetrieveOptions, spec: SearchSpec, quiet: bool) -> None:
    from densepr.pipeline import retrieve as run

    run(spec=spec, **dataclasses.asdict(a))


def verify(a: o.VerifyOptions, quiet: bool) -> None:
    from densepr.fileio import MANIFEST, check_manifest

    for folder in a.folders:
        checked = check_manifest(folder, checksums=True)
        if checked is None:
            raise DenseprError(f"{folder}: no {MANIFEST} (folders written before densepr 0.2 have none): build it again")
        print(f"{folder}: {checked} files match {MANIFEST}")


def evaluate(a: o.EvaluateOptions, quiet: bool) -> None:
    from densepr.evaluate.metrics import beir_metrics, read_qrels, top_k_accuracy
    from densepr.retrieve.results import read_results

    results = read_results(a.results)
    report: dict[str, Any] = {"top_k_accuracy": top_k_accuracy(results, numbers(a.ks, int, "--ks"), a.match),
                              "questions": len(results)}
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


def serve(a: o.ServeOptions, spec: SearchSpec, quiet: bool) -> None:
    try:
        import uvicorn

        from densepr.serve.app import create_app
    except ImportError as exc:
        raise DenseprError(f"'densepr serve' needs the serve extra ({exc.name} is missing): pip install 'densepr[serve]'") from None
    from densepr.quickstart import default_reader, default_spec

    reader = a.reader or default_reader()  # with no index given: the default corpus and the shipped reader
    app = create_app(default_spec(spec, progress=not quiet), reader=reader, docs=a.docs, max_pending=a.max_pending,
                     max_queue_wait=a.max_queue_wait,
                     api_key=a.api_key or os.environ.get("DENSEPR_API_KEY") or None)
    uvicorn.run(app, host=a.host, port=a.port, log_level="warning" if quiet else "info")


def tune_hybrid(a: o.TuneHybridOptions, spec: SearchSpec, quiet: bool) -> None:
    from densepr.pipeline import tune_hybrid as run

    lams, ks = numbers(a.lams, float, "--lams"), numbers(a.ks, int, "--ks")
    report = run(spec=spec, questions=a.questions, lams=lams, ks=ks, match=a.match, save_spec=a.save_spec)
    if a.json:
        print(json.dumps({"questions": report["questions"], "best": report["best"], "parts": report["parts"],
                          "gain": report["gain"], "accuracy": {str(lam): acc for lam, acc in report["accuracy"].items()}}))
        return
    print(f"{report['questions']} questions, BM25 + λ·dense over the top {spec.depth} of each")
    print("λ        " + "".join(f"top-{k:<6}" for k in ks))
    for name, acc in report["parts"].items():
        print(f"{name:<9}" + "".join(f"{acc[str(k)]:<10.2f}" for k in ks))
    for lam, acc in report["accuracy"].items():
        print(f"{lam:<9g}" + "".join(f"{acc[str(k)]:<10.2f}" for k in ks))
    gain = ", ".join(f"{g:+.2f} at top-{k}" for k, g in report["gain"].items())
    print(f"best λ = {report['best']:g}: {gain} over the better of BM25 and dense alone")


def build_train(a: o.BuildTrainOptions, quiet: bool) -> None:
    from densepr.training import build_train as run

    run(**dataclasses.asdict(a), progress=not quiet)


def train(a: o.TrainOptions, config: Any, quiet: bool) -> None:
    from densepr.training import train as run

    run(**dataclasses.asdict(a), config=config, progress=not quiet)


def self_train(a: o.SelfTrainOptions, config: Any, quiet: bool) -> None:
    from densepr.self_train import self_train as run

    report = run(**dataclasses.asdict(a), config=config, progress=not quiet)
    print(report["rounds"][-1]["model"])


def mine(a: o.MineOptions, spec: SearchSpec, quiet: bool) -> None:
    from densepr.training import mine as run

    run(spec=spec, **dataclasses.asdict(a))


def train_reader(a: o.TrainReaderOptions, config: Any, quiet: bool) -> None:
    from densepr.training import train_reader as run

    run(**dataclasses.asdict(a), config=config, progress=not quiet)


def qa(a: o.QAOptions, quiet: bool) -> None:
    from densepr.pipeline import answer

    summary = answer(results=a.results, reader=a.reader, out=a.out, ks=numbers(a.ks, int, "--ks"), batch_size=a.batch_size,
                     match=a.match, bf16=a.bf16, backend=a.backend, precision=a.precision,
                     progress=not quiet)
    if a.json:
        print(json.dumps(summary))
        return
    print(f"{summary['questions']} questions ({summary['seconds_per_question']:.2f} s per question, reader on {summary['backend']})")
    for k, em in summary["exact_match"].items():
        print(f"k={k:<4} exact match  {em:6.2f}")
    if "selective" in summary:
        print(f"abstaining below confidence {summary['threshold']:.3f} (the reader's threshold):")
        print("k     EM always  coverage  EM answered  area   calibration error")
        for k, s in summary["selective"].items():
            print(f"k={k:<4} {s['em_always']:8.2f}  {s['coverage']:7.2f}%  {s['em_answered']:10.2f}  {s['area']:5.2f}  "
                  f"{s['ece']:.3f}")


def export(a: o.ExportOptions, quiet: bool) -> None:
    from densepr.training import export as run

    print(run(**dataclasses.asdict(a)))

"""What every suite shares: the machine's description, timing, the mini-Wikipedia inputs and publishing.

A suite writes ``results.json`` and ``report.md`` under its ``--out``; with ``--publish`` it also replaces its own
section of ``docs/results/SUITE.md`` (dated, with the command and the CPU) and its data in
``docs/results/data/SUITE.json``, from which the documentation draws its plots.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from itertools import chain, islice
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "docs" / "results"
SQUAD = DATA / "squad" / "squad-dev-v1.1.open.json"
NQ = DATA / "nq-open" / "NQ-open.dev.jsonl"
FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")



def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]

def parser(doc: str | None, out: str) -> argparse.ArgumentParser:
    """A suite's parser with the options every suite takes (``--out``, ``--publish``)."""
    p = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    p.add_argument("--out", default=f"benchmarks/out/{out}", help="where results.json and report.md go")
    p.add_argument("--publish", action="store_true", help="also write the suite's section of docs/results")
    return p


def machine() -> dict:
    """The CPU (model, the flags that decide the kernels, cores), Python, the commit and the date."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next((ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("model name")),
                 platform.processor() or platform.machine())
    flags = next((ln.split(":", 1)[1].split() for ln in info.splitlines() if ln.startswith("flags")), [])
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    return {"cpu": model, "flags": [f for f in FLAGS if f in flags], "cores": os.cpu_count(),
            "python": platform.python_version(), "commit": commit, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def cpu_line(m: dict | None = None) -> str:
    """``CPU: NAME, flags ..., N cores`` for a report."""
    m = m or machine()
    return f"CPU: {m['cpu']}, flags {' '.join(m['flags']) or 'none of ' + ', '.join(FLAGS)}, {m['cores']} cores"


def timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``fn``'s value and its wall seconds."""
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def table(header: list[str], rows: list[list]) -> list[str]:
    """A Markdown table's lines."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(map(str, r)) + " |" for r in rows)]


def mini_wiki(folder: Path, articles: int | None = None, model: str | None = None) -> Path:
    """The mini-Wikipedia under ``folder`` (made once, then reused): ``psgs_w100.tsv`` of the SQuAD dev articles and
    wiki-vital (the first ``articles`` of each when given), its ``bm25`` index, ``emb`` vectors and ``flat`` index."""
    from densepr import pipeline
    from densepr.corpus.documents import documents_to_passages, read_documents
    from densepr.corpus.passages import write_passages

    folder.mkdir(parents=True, exist_ok=True)
    psgs = folder / "psgs_w100.tsv"
    if not psgs.is_file():
        docs = (islice(read_documents(str(s)), articles) for s in (SQUAD, "wiki-vital"))
        write_passages(psgs, documents_to_passages(chain(*docs)))
    if not (folder / "bm25" / "meta.json").is_file():
        pipeline.build_bm25(passages=psgs, out=folder / "bm25", progress=False)
    if not (folder / "flat" / "meta.json").is_file():
        pipeline.encode(passages=psgs, out=folder / "emb", model=model, progress=False)
        pipeline.build_index(embeddings=folder / "emb", out=folder / "flat")
    return folder


def split_squad(path: Path, out: Path) -> tuple[Path, Path, list[str]]:
    """Train and held-out SQuAD files of whole articles (every 4th article with questions held out)."""
    from densepr.fileio import write_json

    data = json.loads(path.read_text(encoding="utf-8"))
    with_questions = [a for a in data["data"] if any(p["qas"] for p in a["paragraphs"])]
    held = [a for i, a in enumerate(with_questions) if i % 4 == 3]
    train = [a for a in with_questions if a not in held]
    paths = out / "squad-train.json", out / "squad-heldout.json"
    for p, articles in zip(paths, (train, held)):
        write_json(p, {"version": data.get("version"), "data": articles}, indent=None)
    return paths[0], paths[1], [a["title"] for a in held]


def publish(suite: str, args: argparse.Namespace, results: dict, text: str, section: str | None = None) -> None:
    """Write ``results.json`` and ``report.md`` under ``args.out`` and print the report; with ``args.publish`` also
    put the report (which names the CPU) into section ``section`` (default: the suite) of ``docs/results/SUITE.md``,
    headed by the date and the command, and the results into ``docs/results/data/SECTION.json``."""
    from densepr.fileio import write_json

    m = results.setdefault("machine", machine())
    command = "python -m benchmarks " + " ".join([suite, *sys.argv[1:]])
    results["command"] = command
    write_report(Path(args.out), results, text)
    if args.publish:
        name = section or suite
        head = f"_{m['date']}; `{command}`; commit {m['commit']}._"  # the report names the CPU
        write_section(RESULTS / f"{suite}.md", name, f"{head}\n\n{text.strip()}")
        write_json(RESULTS / "data" / f"{name}.json", results)


def write_report(out: Path, results: dict, text: str) -> None:
    """``results.json`` and ``report.md`` under ``out``; the report printed."""
    from densepr.fileio import write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "results.json", results)
    (out / "report.md").write_text(text, encoding="utf-8")
    print(text)


def write_section(page: Path, name: str, text: str) -> None:
    """Put ``text`` into ``page`` as section ``name``, replacing that section's previous run, keeping the others."""
    start, end = f"<!-- section:{name} -->", f"<!-- /section:{name} -->"
    current = page.read_text(encoding="utf-8") if page.is_file() else f"# {page.stem}\n"
    block = f"{start}\n{text.strip()}\n{end}"
    if start in current and end in current:
        current = current[: current.index(start)] + block + current[current.index(end) + len(end):]
    else:
        current = current.rstrip() + "\n\n" + block + "\n"
    page.write_text(current, encoding="utf-8")

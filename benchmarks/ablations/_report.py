"""What the one-off studies share: their report files, and their sections in the "how we got here" page."""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks.harness import RESULTS, machine, write_report, write_section


def cpu() -> dict:
    """The CPU model, the flags that decide speed here, and the threads."""
    m = machine()
    return {"model": m["cpu"], "flags": m["flags"], "threads": m["cores"]}


def ablation_parser(doc: str, section: str) -> argparse.ArgumentParser:
    """A study's parser, described by its docstring's first line, with ``--out`` (``benchmarks/out/`` and ``section``
    with underscores) and ``--page`` (write ``section`` of the history page); the study adds its own options."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--out", default=f"benchmarks/out/{section.replace('-', '_')}")
    p.add_argument("--page", action="store_true", help=f"write section {section} of docs/results/history.md")
    return p


def publish(out: Path, results: dict, text: str, section: str | None = None, page: str = "history") -> None:
    """Write ``results.json`` and ``report.md`` under ``out``, print the report, and with ``section`` put it into
    ``docs/results/PAGE.md`` (the "how we got here" page unless told) and the results into ``docs/results/data``."""
    from densepr.fileio import write_json

    write_report(out, results, text)
    if section:
        write_section(RESULTS / f"{page}.md", section, text)
        write_json(RESULTS / "data" / f"{section}.json", results)

"""What the one-off studies share: their report files, and their sections in the "how we got here" page."""

from __future__ import annotations

from pathlib import Path

from benchmarks.harness import RESULTS, machine, write_report, write_section


def cpu() -> dict:
    """The CPU model, the flags that decide speed here, and the threads."""
    m = machine()
    return {"model": m["cpu"], "flags": m["flags"], "threads": m["cores"]}


def publish(out: Path, results: dict, text: str, section: str | None = None, page: str = "history") -> None:
    """Write ``results.json`` and ``report.md`` under ``out``, print the report, and with ``section`` put it into
    ``docs/results/PAGE.md`` (the "how we got here" page unless told) and the results into ``docs/results/data``."""
    from densepr.fileio import write_json

    write_report(out, results, text)
    if section:
        write_section(RESULTS / f"{page}.md", section, text)
        write_json(RESULTS / "data" / f"{section}.json", results)

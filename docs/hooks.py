"""MkDocs hooks: the generated reference pages and the results plots, made at build time (never committed).

- ``<!-- generated:cli -->`` and ``<!-- generated:http -->`` in a page become the command-line and HTTP references
  (:mod:`reference_gen`);
- ``results/plots/*.png`` are drawn from the results pages' own tables and ``docs/results/data/*.json``.
"""

from __future__ import annotations

import io
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

from mkdocs.structure.files import File, Files

DOCS = Path(__file__).resolve().parent
RESULTS = DOCS / "results"
sys.path.insert(0, str(DOCS))

import reference_gen  # noqa: E402  (beside this file)

GENERATED: dict[str, Callable[[], str]] = {"cli": reference_gen.cli_markdown, "http": reference_gen.http_markdown}


def on_page_markdown(markdown: str, **_: object) -> str:
    for name, make in GENERATED.items():
        marker = f"<!-- generated:{name} -->"
        if marker in markdown:
            markdown = markdown.replace(marker, make())
    return markdown


def section(page: str, name: str) -> str:
    """The text of section ``name`` of results page ``page``."""
    text = (RESULTS / f"{page}.md").read_text(encoding="utf-8")
    found = re.search(rf"<!-- section:{re.escape(name)} -->\n(.*?)\n<!-- /section:{re.escape(name)} -->", text, re.S)
    return found.group(1) if found else ""


def tables(text: str) -> list[list[dict[str, str]]]:
    """The Markdown tables of ``text``, each a list of rows keyed by the header's cells."""
    found, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif block:
            if len(block) > 2:
                found.append([dict(zip(block[0], row)) for row in block[2:]])
            block = []
    return found


def number(cell: str) -> float | None:
    match = re.match(r"-?[\d,]*\.?\d+", cell.replace(",", ""))
    return float(match.group()) if match else None


def planner_plot(ax) -> None:
    """Recall@100 against index memory, at each RAM budget the planner was given."""
    for size, marker in (("1000000", "o"), ("5000000", "s"), ("21015324", "^")):
        rows = next((t for t in tables(section("planner", f"planner-{size}")) if "recall@100" in t[0]), [])
        if not rows:
            continue
        points = [(number(r["index MB"]), number(r["recall@100"]), f"{r['type']} ({r['budget (21M x 768-equivalent)']})")
                  for r in rows]
        ax.plot([p[0] for p in points], [p[1] for p in points], marker + "-", label=f"{int(size):,} vectors")
        for x, y, label in points:
            ax.annotate(label, (x, y), fontsize=7, xytext=(4, -10), textcoords="offset points")
    ax.set(xscale="log", xlabel="index MB (log)", ylabel="recall@100 vs exact", title="The planner: recall against memory")
    ax.legend(fontsize=8)


def backends_plot(ax) -> None:
    """Passages/s of each backend, one group of bars per CPU."""
    groups = {}
    for name in ("backends", "backends-no-bf16", "backends-avx2"):
        text = section("backends", name)
        cpu = re.search(r"CPU: ([^,]+), flags ([^,.]+)", text)
        rows = next((t for t in tables(text) if "passages/s" in t[0]), [])
        if not rows:
            continue
        kind = "bf16/AMX" if "amx" in cpu.group(2) else "AVX-512, no bf16" if "avx512f" in cpu.group(2) else "AVX2 only"
        label = f"{cpu.group(1)} ({kind})" if cpu else name
        groups[label] = {r["who"].replace("densepr ", "").replace("sentence-transformers", "ST"): number(r["passages/s"])
                         for r in rows if number(r["passages/s"])}
    names = list(dict.fromkeys(n for g in groups.values() for n in g))
    width = 0.8 / max(1, len(groups))
    for i, (label, values) in enumerate(groups.items()):
        ax.bar([j + i * width for j in range(len(names))], [values.get(n, 0) for n in names], width, label=label)
    ax.set_xticks([j + width * (len(groups) - 1) / 2 for j in range(len(names))], names, rotation=30, ha="right", fontsize=7)
    ax.set(ylabel="passages/s", title="Passage encoding per backend, per CPU (all-MiniLM-L6-v2)")
    ax.legend(fontsize=8)


def risk_coverage_plot(ax) -> None:
    """EM among answered against coverage, ranking by the calibrated confidence and by the span score."""
    data = json.loads((RESULTS / "data" / "calibration.json").read_text(encoding="utf-8"))
    for name, color in (("squad-heldout", "tab:blue"), ("nq-heldout", "tab:orange"), ("efficientqa-heldout", "tab:green")):
        curves = data["sets"].get(name, {}).get("5", {}).get("curve", {})
        for kind, style in (("confidence", "-"), ("span score", ":")):
            points = curves.get(kind, [])
            ax.plot([p[0] for p in points], [p[1] for p in points], style, color=color, label=f"{name}, by {kind}")
    ax.set(xlabel="coverage % (questions answered)", ylabel="EM among answered", title="Risk-coverage, k = 5")
    ax.legend(fontsize=7)


def reliability_plot(ax) -> None:
    """The reliability diagram: accuracy against mean confidence in 10 bins, held-out SQuAD and NQ-style, k = 5."""
    data = json.loads((RESULTS / "data" / "calibration.json").read_text(encoding="utf-8"))
    ax.plot([0, 1], [0, 1], color="gray", lw=0.8, ls="--", label="perfectly calibrated")
    for name, color in (("squad-heldout", "tab:blue"), ("nq-style-heldout", "tab:orange")):
        bins = [b for b in data["sets"].get(name, {}).get("5", {}).get("reliability", []) if b["count"]]
        ax.plot([b["confidence"] for b in bins], [b["accuracy"] for b in bins], "o-", color=color, label=name)
        for b in bins:
            ax.annotate(str(b["count"]), (b["confidence"], b["accuracy"]), fontsize=6, xytext=(3, 3), textcoords="offset points")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (bin mean)", ylabel="exact match in the bin",
           title="Reliability, k = 5 (numbers: questions in the bin)")
    ax.legend(fontsize=8)


PLOTS = {"planner": planner_plot, "backends": backends_plot, "risk-coverage": risk_coverage_plot,
         "reliability": reliability_plot}


def on_files(files: Files, config) -> Files:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for name, draw in PLOTS.items():
        fig, ax = plt.subplots(figsize=(7, 4))
        draw(ax)
        fig.tight_layout()
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=110)
        plt.close(fig)
        files.append(File.generated(config, f"results/plots/{name}.png", content=png.getvalue()))
    return files

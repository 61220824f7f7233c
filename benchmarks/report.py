"""The Markdown report and PNG plots of ``benchmarks.run`` (from its combined ``results.json``)."""

from __future__ import annotations

import math
from pathlib import Path

DPR_PASSAGES = 21_015_324  # psgs_w100.tsv of the DPR paper


def _table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(map(str, r)) + " |" for r in rows)]


def _bars(ax, values: dict[str, float], title: str, unit: str, log: bool = False) -> None:
    names = list(values)
    colors = ["tab:blue" if n.startswith("densepr") else "tab:gray" for n in names]
    ax.bar(range(len(names)), [values[n] for n in names], color=colors)
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(unit, fontsize=8)
    if log:
        ax.set_yscale("log")


def plot_peers(peers: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    panels = [("encode", "passages_per_s", "passage encoding", "passages/s", False),
              ("latency", "p50_ms", "single-question encoding (p50)", "ms", False),
              ("bm25", "questions_per_s", "BM25 search", "questions/s (log)", True),
              ("train", "questions_per_s", "training (batch 32)", "questions/s", False)]
    panels = [p for p in panels if p[0] in peers]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 3.4))
    for ax, (section, metric, title, unit, log) in zip(list(axes) if len(panels) > 1 else [axes], panels):
        _bars(ax, {tool: v[metric] for tool, v in peers[section].items()}, title, unit, log)
    fig.suptitle("densepr (blue) vs peers, same machine, same run")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_index(rows: list[dict], path: Path) -> None:
    import matplotlib.pyplot as plt

    sizes = sorted({r["n"] for r in rows})
    fig, axes = plt.subplots(1, len(sizes), figsize=(5.5 * len(sizes), 4), squeeze=False)
    for ax, n in zip(axes[0], sizes):
        for kind in dict.fromkeys(r["type"] for r in rows if r["n"] == n):
            pts = [r for r in rows if r["n"] == n and r["type"] == kind]
            ax.plot([p["queries_per_s_median"] for p in pts], [p["recall@100"] for p in pts], "o-",
                    label=f"{kind} ({pts[0]['index_mb']:.0f} MB)")
        ax.axhline(0.95, color="red", lw=0.8, ls="--")
        ax.set_xscale("log")
        ax.set_xlabel("queries/s (log)")
        ax.set_ylabel("recall@100 vs exact")
        ax.set_title(f"{n:,} vectors")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_latency(lat: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.4))
    parts = lat["median_of_runs"]
    ax.bar(list(parts), [v["p50_ms"] for v in parts.values()], color="tab:blue", label="p50")
    ax.scatter(list(parts), [v["p95_ms"] for v in parts.values()], color="black", marker="_", s=300, label="p95")
    ax.axhline(lat["target_ms"], color="red", ls="--", lw=0.8, label=f"target {lat['target_ms']:g} ms")
    ax.set_ylabel("ms")
    ax.set_title("one question: encode + top-100 search")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def peers_lines(p: dict) -> list[str]:
    lines = []
    for section, metric, label in (("encode", "passages_per_s", "Passage encoding (passages/s, max length 256)"),
                                   ("bm25", "questions_per_s", "BM25 (questions/s, top 100; build s)"),
                                   ("train", "questions_per_s", "Training (questions/s, median step; batch 32, 1 hard negative)")):
        if section not in p:
            continue
        base = p[section]["densepr"][metric]
        rows = [[t, f"{v[metric]:,.1f}", f"{base / v[metric]:.2f}", f"{v['build_s']:.2f}" if "build_s" in v else "",
                 f"{v['peak_mb']:,.0f}"] for t, v in p[section].items()]
        lines += [f"### {label}", "", *_table(["tool", metric, "densepr ÷ tool", "build s", "peak RSS MB"], rows), ""]
    if "latency" in p:
        rows = [[t, f"{v['p50_ms']:.2f}", f"{v['p95_ms']:.2f}", f"{v['peak_mb']:,.0f}"] for t, v in p["latency"].items()]
        lines += ["### Single-question encoding latency", "", *_table(["tool", "p50 ms", "p95 ms", "peak RSS MB"], rows), ""]
    return lines


def bf16_lines(b: dict) -> list[str]:
    lines = [f"{b['passages']} passages encoded both ways in one process: cosine mean {b['cosine_mean']:.5f}, min "
             f"{b['cosine_min']:.5f}; bf16 is {b['speedup_bf16_vs_fp32']:.2f}x faster (median of 3); top-20 overlap "
             f"{100 * b['top20_overlap_mean']:.1f}% on {b['questions']} SQuAD questions.", ""]
    if "top_k_accuracy" in b:
        rows = [[n, f"{r['fp32']['20']:.2f}", f"{r['bf16']['20']:.2f}", f"{r['change_top20']:+.2f}", f"{r['fp32']['100']:.2f}",
                 f"{r['bf16']['100']:.2f}"] for n, r in b["top_k_accuracy"].items()]
        lines += _table(["questions (whole corpus, exact search)", "top-20 fp32", "top-20 bf16", "change", "top-100 fp32",
                         "top-100 bf16"], rows) + [""]
    return lines


def index_lines(ix: dict) -> list[str]:
    rows = [[f"{r['n']:,}", r["type"], r["param"] or "", r["build_s"], r["index_mb"], f"{r['queries_per_s_median']:,.0f}",
             f"{r['recall@100']:.3f}"] for r in ix["rows"]]
    return [f"{ix['queries']} NQ-open question vectors; {ix['real_vectors']:,} real passage vectors, the rest synthesised "
            "(mixtures of two real vectors plus noise, scaled to real norms: `benchmarks/index_scale.py`). Index MB is the "
            "serialised size, which is what it takes in RAM.", "",
            *_table(["vectors", "type", "nprobe / efSearch", "build s", "index MB", "queries/s (median)", "recall@100"], rows), ""]


def scaling_lines(r: dict) -> list[str]:
    """How the measured figures extrapolate to DPR's 21M passages (arithmetic, not measured)."""
    s = r["sections"]
    lines = ["## From one million to DPR's 21M passages (arithmetic from the figures above)", ""]
    encode = s.get("peers", {}).get("encode", {}).get("densepr", {}).get("passages_per_s")
    if encode:
        hours = DPR_PASSAGES / encode / 3600
        lines += [f"- **Encoding**: at {encode:.0f} passages/s per 2-core machine (MiniLM, "
                  f"{s['peers']['encode']['densepr'].get('precision', 'bf16')}), 21M passages take "
                  f"{hours:,.0f} machine-hours: {hours / 16:,.1f} h on 16 such machines, each running "
                  "`densepr encode --shard-id I --num-shards 16` (or `torchrun --nnodes 16 --nproc-per-node N -m densepr encode`, "
                  "one shard per process) into one shared folder; a killed shard resumes at its last chunk. A BERT-base "
                  "DPR encoder has twice MiniLM's layers and width, about 8x its compute per token, so plan GPUs for it."]
    rows = {(x["n"], x["type"]): x for x in s.get("index", {}).get("rows", [])}
    biggest = max((n for n, _ in rows), default=0)
    if biggest:
        per = {kind: x["index_mb"] / biggest for (n, kind), x in rows.items() if n == biggest}
        mem = ", ".join(f"{kind} {mb * DPR_PASSAGES / 1024:,.1f} GB" for kind, mb in sorted(per.items(), key=lambda kv: -kv[1]))
        lines += [f"- **Memory** (bytes per vector measured at {biggest:,} × {DPR_PASSAGES:,}, 384-d; double the flat/SQ8 figures "
                  f"for DPR's 768-d vectors): {mem}. IVF-SQ8 at 21M fits one 16 GB machine; IVF-PQ fits anywhere but "
                  "loses recall (see its rows); flat needs ~32 GB (64 GB at 768-d), DPR's >128 GB wall."]
        ivf = [x for (n, kind), x in rows.items() if n == biggest and kind == "ivfsq8"]
        if ivf:
            x = ivf[0]
            lists_1m, lists_21m = 4 * math.sqrt(biggest), 4 * math.sqrt(DPR_PASSAGES)
            lines += [f"- **Build**: IVF-SQ8 trains on a fixed 200k sample, then adds vectors in linear time: "
                      f"{x['build_s']:.0f} s at {biggest:,}, so roughly {x['build_s'] * DPR_PASSAGES / biggest / 60:,.0f} min "
                      "at 21M on 2 cores as an upper bound (training does not grow), against DPR's 9 h HNSW build.",
                      f"- **Search**: with ~4·√N lists ({lists_1m:,.0f} at 1M, {lists_21m:,.0f} at 21M) a probe scans "
                      f"√N/4 vectors per list, so at the same nprobe a query scans {math.sqrt(DPR_PASSAGES / biggest):.1f}x more "
                      "vectors at 21M: expect the throughput in the table divided by about that, on one machine. To keep it, "
                      "split the index into S shards (one `densepr index` per embeddings subset, one machine each), search them "
                      "in parallel and merge the top-100 lists by score; latency is then that of one 21M/S shard."]
    return lines + [""]


def targets_lines(r: dict) -> list[str]:
    s, rows = r["sections"], []
    enc = s.get("peers", {}).get("encode")
    if enc:
        ratio = enc["densepr"]["passages_per_s"] / enc["sentence_transformers"]["passages_per_s"]
        precision = enc["densepr"].get("precision", "bf16")
        rows.append(["passage encoding ≥ 2× sentence-transformers", f"{ratio:.2f}× ({precision})",
                     "met" if ratio >= 2 else "missed"])
    acc = s.get("bf16", {}).get("top_k_accuracy")
    if acc:
        worst = max(abs(x["change_top20"]) for x in acc.values())
        rows.append(["top-20 accuracy change bf16 vs fp32 ≤ 0.5 pt", f"{worst:.2f} pt (largest of {len(acc)} sets)",
                     "met" if worst <= 0.5 else "missed"])
    lat = s.get("latency")
    if lat:
        p50 = lat["median_of_runs"]["end_to_end"]["p50_ms"]
        rows.append(["single question end to end < 15 ms (median)", f"{p50:.2f} ms", "met" if p50 < 15 else "missed"])
    mil = s.get("scale", {}).get("million")
    if mil:
        ok = [x for x in mil["search"] if x["recall@100"] >= 0.95]
        best = min(ok, key=lambda x: x["peak_mb"]) if ok else max(mil["search"], key=lambda x: x["recall@100"])
        rows.append([f"{mil['vectors']:,} passages: index < 1 GB RAM, recall@100 ≥ 0.95, built in minutes",
                     f"{best['peak_mb']:,.0f} MB peak RSS, recall {best['recall@100']:.3f} (nprobe {best['nprobe']}), "
                     f"built in {mil['build']['build_s']:.0f} s",
                     "met" if ok and best["peak_mb"] < 1024 and mil["build"]["build_s"] < 600 else "missed"])
    return _table(["target", "measured", ""], rows) + [""] if rows else []


def write_report(r: dict, out: Path) -> None:
    """``out/report.md`` plus ``peers.png``, ``index.png``, ``latency.png`` for the sections present."""
    s, m = r["sections"], r["machine"]
    lines = ["# densepr speed and scale report", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['torch_threads']} torch threads, AMX bf16: {m['amx_bf16']}, "
             f"AVX512-BF16: {m.get('avx512_bf16', '?')}; "
             f"commit {m['commit']}, {m['date']}. Medians of {r['runs']} runs unless a row says otherwise"
             + (" (**--quick**: small sizes, not the targets' sizes)." if r["quick"] else "."), "",
             "Versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v), "", "## Targets", "",
             *targets_lines(r)]
    if "peers" in s:
        plot_peers(s["peers"], out / "peers.png")
        lines += ["## densepr vs peers", "", "![peers](peers.png)", "", *peers_lines(s["peers"])]
    if "latency" in s:
        from benchmarks.question_latency import report_lines

        plot_latency(s["latency"], out / "latency.png")
        lines += ["## Single-question latency", "", "![latency](latency.png)", "", *report_lines(s["latency"]), ""]
    if "bf16" in s:
        lines += ["## bf16 vs fp32", "", *bf16_lines(s["bf16"])]
    for name, why in r.get("skipped", {}).items():
        lines += [f"## {name}: skipped", "", f"{why}.", ""]
    if "index" in s:
        plot_index(s["index"]["rows"], out / "index.png")
        lines += ["## Dense index types at scale", "", "![index](index.png)", "", *index_lines(s["index"])]
    if "scale" in s:
        from benchmarks.scale import report_lines

        lines += ["## Sharded encoding and a million passages", "", *report_lines(s["scale"]), ""]
    lines += scaling_lines(r)
    lines += ["## Commands", "", *(f"- {name} ({r['seconds'].get(name, '?')} s): `{cmd}`" for name, cmd in r["commands"].items()), ""]
    (out / "report.md").write_text("\n".join(lines))


PAGE = Path(__file__).parent / "RESULTS.md"
PAGE_HEAD = ("# densepr benchmark results\n\nThe latest full run of each benchmark that writes here (`--page`), as it printed its report: "
             "the CPU, its flags, the command and the date are in each section. Regenerate a section by running its command.\n")


def write_page_section(name: str, text: str, page: Path = PAGE) -> None:
    """Put ``text`` into ``page`` as section ``name`` (replacing that section's previous run, keeping the others)."""
    start, end = f"<!-- section:{name} -->", f"<!-- /section:{name} -->"
    current = page.read_text(encoding="utf-8") if page.is_file() else PAGE_HEAD
    block = f"{start}\n{text.strip()}\n{end}"
    if start in current and end in current:
        current = current[: current.index(start)] + block + current[current.index(end) + len(end):]
    else:
        current = current.rstrip() + "\n\n" + block + "\n"
    page.write_text(current, encoding="utf-8")


def publish(out: Path, results: dict, text: str, section: str | None = None) -> None:
    """Write a benchmark's ``results.json`` and ``report.md`` under ``out``, print the report, and with ``section`` put
    it into ``benchmarks/RESULTS.md`` too."""
    from densepr.fileio import write_json

    write_json(out / "results.json", results)
    (out / "report.md").write_text(text, encoding="utf-8")
    if section:
        write_page_section(section, text)
    print(text)

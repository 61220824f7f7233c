"""What checksumming on load costs: opening the default index (hybrid: flat + BM25, the question encoder) with the
default verification (checksums made in a thread while the folders load) against ``--no-verify``, interleaved.

    python -m benchmarks.ablations.verify_on_load [--runs 21] [--page]
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path

from benchmarks.ablations._report import ablation_parser, publish
from benchmarks.harness import cpu_line, table


def main() -> None:
    p = ablation_parser(__doc__, "verify-on-load")
    p.add_argument("--runs", type=int, default=21)
    a = p.parse_args()
    logging.disable(logging.WARNING)
    from densepr.fileio import check_manifest, manifest_bytes
    from densepr.quickstart import ensure_default_index
    from densepr.retrieve.searcher import open_searcher

    spec = ensure_default_index(progress=False)
    folders = [spec.dense_dir, spec.bm25_dir]
    modes = {"--no-verify": False, "default (checksums while loading)": None, "--verify (checksums, then load)": True}
    times: dict[str, list[float]] = {m: [] for m in modes}
    hashing = []
    for run in range(a.runs + 1):  # the first round warms the caches and is not counted
        for name, verify in modes.items():
            start = time.perf_counter()
            open_searcher(spec, verify=verify)
            if run:
                times[name].append(time.perf_counter() - start)
        start = time.perf_counter()
        for folder in folders:
            check_manifest(folder, checksums=True)
        hashing.append(time.perf_counter() - start)
    base = statistics.median(times["--no-verify"])
    rows = [[name, f"{1000 * statistics.median(t):.0f}", f"{statistics.median(t) / base:.3f}x"] for name, t in times.items()]
    megabytes = sum(manifest_bytes(f) for f in folders) / 1e6
    text = "\n".join([f"## Checksums on load ({megabytes:.0f} MB in two folders, {time.strftime('%Y-%m-%d')})", "",
                      f"{cpu_line()}. Command: `python -m benchmarks.ablations.verify_on_load --runs {a.runs}`. Medians of "
                      f"{a.runs} interleaved runs of `open_searcher` on the default index (hybrid: flat + BM25, question "
                      f"encoder); the checksums alone: {1000 * statistics.median(hashing):.0f} ms.", "",
                      *table(["verification", "open ms", "vs --no-verify"], rows)])
    results = {name: t for name, t in times.items()} | {"checksums_s": hashing}
    Path(a.out).mkdir(parents=True, exist_ok=True)
    publish(Path(a.out), results, text, "verify-on-load" if a.page else None)


if __name__ == "__main__":
    main()

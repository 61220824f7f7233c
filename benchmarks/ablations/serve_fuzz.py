"""Property-based fuzzing of ``densepr serve`` with schemathesis: every request its OpenAPI schema allows (and many it
does not), with all of schemathesis's checks; counts the requests and their status codes.

    python -m benchmarks.ablations.serve_fuzz --schemathesis /path/to/venv/bin/schemathesis [--examples 5200] [--seed 2]
        [--out benchmarks/out/fuzz] [-- serve options, e.g. --index DIR]

schemathesis goes in a virtual environment of its own (``python -m venv v && v/bin/pip install schemathesis``): it
pins versions that densepr's own environment need not share. The server is ``densepr -q serve`` on a free 127.0.0.1
port (by default the default corpus, hybrid retrieval and the shipped reader). Writes ``fuzz.json`` and ``fuzz.md``
(requests, status codes per endpoint, failures) under ``--out``, and schemathesis's NDJSON report.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
from pathlib import Path

from benchmarks.ablations._report import cpu
from benchmarks.harness import free_port
from benchmarks.serve import LOOPBACK, wait_healthy
from densepr.fileio import write_json


def count(ndjson: Path) -> dict:
    """Requests and status codes per endpoint, from schemathesis's NDJSON events."""
    codes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for line in ndjson.read_text(encoding="utf-8").splitlines():
        event = json.loads(line).get("ScenarioFinished")
        for interaction in ((event or {}).get("recorder") or {}).get("interactions", {}).values():
            path = "/" + interaction["request"]["uri"].split("/", 3)[-1].split("?")[0]
            response = interaction.get("response")
            codes[path][str(response["status_code"]) if response else "no response"] += 1
    return {path: dict(c) for path, c in codes.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--schemathesis", required=True, help="the schemathesis executable (in its own venv)")
    parser.add_argument("--examples", type=int, default=5200, help="schemathesis --max-examples per operation")
    parser.add_argument("--seed", type=int, default=2)
    parser.add_argument("--out", default="benchmarks/out/fuzz")
    args, serve_options = parser.parse_known_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    base = f"http://{LOOPBACK}:{port}"
    with open(out / "server.log", "w", encoding="utf-8") as log:
        server = subprocess.Popen([sys.executable, "-m", "densepr", "-q", "serve", "--host", LOOPBACK, "--port", str(port),
                                   *[o for o in serve_options if o != "--"]], stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_healthy(base, server, 300)
            run = subprocess.run([args.schemathesis, "run", f"{base}/openapi.json", "-n", str(args.examples), "--checks",
                                  "all", "--seed", str(args.seed), "--report", "ndjson", "--report-dir", str(out)],
                                 capture_output=True, text=True)
        finally:
            server.terminate()
            server.wait(30)
    report = {"cpu": cpu(), "examples": args.examples, "seed": args.seed, "exit_code": run.returncode,
              "summary": run.stdout.strip().splitlines()[-1] if run.stdout.strip() else "",
              "requests": count(max(out.glob("ndjson-*.ndjson"), key=lambda p: p.stat().st_mtime))}
    total = sum(sum(c.values()) for c in report["requests"].values())
    server_errors = sum(n for c in report["requests"].values() for code, n in c.items() if code.startswith("5"))
    write_json(out / "fuzz.json", dict(report, total=total, server_errors=server_errors))
    lines = [f"# schemathesis against `densepr serve`: {total:,} requests, {server_errors} 5xx", "",
             f"`schemathesis run -n {args.examples} --checks all --seed {args.seed}`; its verdict: {report['summary']}", "",
             "| endpoint | requests | status codes |", "|---|---:|---|"]
    lines += [f"| {p} | {sum(c.values()):,} | {', '.join(f'{k}: {v:,}' for k, v in sorted(c.items()))} |"
              for p, c in sorted(report["requests"].items())]
    (out / "fuzz.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    sys.exit(run.returncode)


if __name__ == "__main__":
    main()

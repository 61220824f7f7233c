"""Bounded load test of ``densepr serve``: throughput and latency of ``POST /search`` on this machine.

    python -m benchmarks.serve_load --index benchmarks/out/retrieval/flat [--bm25-index benchmarks/out/retrieval/bm25]
        [--retrievers dense,bm25,hybrid] [--requests 500] [--concurrency 8] [--k 10] [--max-seconds 60]
        [--questions NQ-open.dev.jsonl] [--out benchmarks/out/serve]

Starts the server as a subprocess on a free 127.0.0.1 port (loopback only), then fires ``--requests`` single-question
``/search`` requests per retriever from this process with ``--concurrency`` threads (one HTTP client each). The whole
load is bounded by ``--max-seconds`` (shared evenly between the retrievers; a phase stops early when its share is
spent). Writes ``serve_load.json`` and ``serve_load.md`` under ``--out``, and the server's log as ``server.log``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from densepr.fileio import write_json

QUESTIONS = [
    "where was einstein born", "who wrote hamlet", "what is the capital of australia", "when did world war ii end",
    "who painted the mona lisa", "what is the largest planet in the solar system", "how does photosynthesis work",
    "who was the first president of the united states", "what river flows through paris", "when was the printing press invented",
    "what is the speed of light", "who discovered penicillin", "where is mount everest", "what language is spoken in brazil",
    "who invented the telephone", "what causes earthquakes", "when did the roman empire fall", "what is dna made of",
    "who composed the four seasons", "what is the tallest building in the world", "how many bones are in the human body",
    "who wrote pride and prejudice", "what is the boiling point of water", "where did the olympic games originate",
]
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def start_server(args: argparse.Namespace, port: int, log_path: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "densepr", "-q", "serve", "--host", LOOPBACK, "--port", str(port)]
    if args.index:
        command += ["--index", args.index]
    if args.bm25_index:
        command += ["--bm25-index", args.bm25_index]
    env = dict(os.environ, HF_HUB_OFFLINE=os.environ.get("HF_HUB_OFFLINE", "1"))
    log = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - handed to the child, closed when it exits
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def wait_healthy(base: str, server: subprocess.Popen, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with code {server.returncode}; see its log")
        try:
            return httpx.get(base + "/health", timeout=2).raise_for_status().json()
        except httpx.HTTPError:
            time.sleep(0.25)
    raise SystemExit(f"the server did not answer /health within {timeout:.0f}s")


def run_phase(base: str, retriever: str, questions: list[str], n: int, concurrency: int, k: int, seconds: float) -> dict:
    """``n`` requests from ``concurrency`` threads, stopping at ``seconds``; latencies of the answered ones."""
    counter, lock = itertools.count(), threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    start = time.perf_counter()
    deadline = start + seconds

    def worker() -> None:
        with httpx.Client(base_url=base, timeout=30) as client:
            while time.perf_counter() < deadline:
                with lock:
                    i = next(counter)
                if i >= n:
                    return
                body = {"question": questions[i % len(questions)], "k": k, "retriever": retriever}
                t0 = time.perf_counter()
                try:
                    r = client.post("/search", json=body)
                    ok = r.status_code == 200 and len(r.json()["results"]) == 1
                    error = None if ok else f"HTTP {r.status_code}: {r.text[:200]}"
                except httpx.HTTPError as exc:
                    error = f"{type(exc).__name__}: {exc}"
                elapsed = time.perf_counter() - t0
                with lock:
                    if error:
                        errors.append(error)
                    else:
                        latencies.append(elapsed)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    done = len(latencies) + len(errors)
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {"retriever": retriever, "requests": done, "ok": len(latencies), "errors": len(errors),
            "error_examples": sorted(set(errors))[:3], "stopped_by": "count" if done >= n else "time",
            "seconds": round(wall, 2), "requests_per_second": round(done / wall, 1),
            "latency_ms": {"p50": round(float(np.percentile(ms, 50)), 1), "p90": round(float(np.percentile(ms, 90)), 1),
                           "p99": round(float(np.percentile(ms, 99)), 1), "max": round(float(ms.max()), 1)}}


def markdown(report: dict) -> str:
    lines = ["# `densepr serve` load test", "",
             (f"{report['machine']['cpus']} CPUs ({report['machine']['cpu']}); client and server on the same machine; "
              f"{report['passages']:,} passages; concurrency {report['concurrency']}, k = {report['k']}, "
              f"{report['requests_per_retriever']} requests per retriever, at most {report['max_seconds']} s in all."), "",
             "| retriever | requests | errors | seconds | requests/s | p50 ms | p90 ms | p99 ms | max ms | mean dense batch |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in report["phases"]:
        lat = p["latency_ms"]
        lines.append(f"| {p['retriever']} | {p['requests']} | {p['errors']} | {p['seconds']} | {p['requests_per_second']} | "
                     f"{lat['p50']} | {lat['p90']} | {lat['p99']} | {lat['max']} | {p.get('mean_dense_batch', '-')} |")
    lines += ["", f"Server: `{report['server']}`"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--index", help="dense index folder")
    parser.add_argument("--bm25-index", help="BM25 index folder")
    parser.add_argument("--retrievers", help="comma-separated (default: every one the server loads)")
    parser.add_argument("--requests", type=int, default=500, help="requests per retriever (default 500)")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--max-seconds", type=float, default=60, help="time bound of the whole load (default 60)")
    parser.add_argument("--startup-seconds", type=float, default=180, help="how long to wait for the server to load")
    parser.add_argument("--questions", help="question file (densepr.read_questions formats; default: 24 built-in)")
    parser.add_argument("--out", default="benchmarks/out/serve")
    args = parser.parse_args()
    if not args.index and not args.bm25_index:
        parser.error("give --index, --bm25-index or both")
    if not (1 <= args.requests <= 100_000 and 1 <= args.concurrency <= 64 and 0 < args.max_seconds <= 600):
        parser.error("bounds: 1..100000 requests, 1..64 concurrency, 0..600 max seconds")
    questions = QUESTIONS
    if args.questions:
        import densepr

        questions = [q.text[:1000] for q in densepr.read_questions(args.questions) if q.text.strip()] or QUESTIONS
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    port = free_port()
    base = f"http://{LOOPBACK}:{port}"
    server = start_server(args, port, out / "server.log")
    try:
        t0 = time.perf_counter()
        health = wait_healthy(base, server, args.startup_seconds)
        startup = time.perf_counter() - t0
        retrievers = args.retrievers.split(",") if args.retrievers else health["retrievers"]
        for name in retrievers:  # warm-up (not measured): model caches, page cache of the index
            httpx.post(base + "/search", json={"question": questions[0], "k": args.k, "retriever": name}, timeout=60)
        phases = []
        for name in retrievers:
            before = httpx.get(base + "/health").json()["batching"]
            phase = run_phase(base, name, questions, args.requests, args.concurrency, args.k, args.max_seconds / len(retrievers))
            after = httpx.get(base + "/health").json()["batching"]
            if after and after["batches"] > before["batches"]:
                phase["mean_dense_batch"] = round((after["questions"] - before["questions"]) / (after["batches"] - before["batches"]), 2)
            phases.append(phase)
            print(json.dumps(phase))
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

    report = {"machine": {"cpu": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version()},
              "server": f"densepr serve --host {LOOPBACK} --port {port}" + (f" --index {args.index}" if args.index else "")
                        + (f" --bm25-index {args.bm25_index}" if args.bm25_index else ""),
              "startup_seconds": round(startup, 1), "passages": health["passages"], "indexes": health["indexes"],
              "questions": len(questions), "requests_per_retriever": args.requests, "concurrency": args.concurrency,
              "k": args.k, "max_seconds": args.max_seconds, "phases": phases}
    write_json(out / "serve_load.json", report)
    (out / "serve_load.md").write_text(markdown(report), encoding="utf-8")
    print(markdown(report))


if __name__ == "__main__":
    main()

"""Bounded load test of ``densepr serve``: throughput and latency of ``POST /search`` (or ``/ask``) on this machine.

    python -m benchmarks serve [--corpus benchmarks/out/retrieval | --index FLAT --bm25-index BM25]
        [--retrievers dense,bm25,hybrid] [--requests 500] [--concurrency 16,64] [--k 10] [--max-seconds 60]
        [--soak-seconds 600] [--questions NQ-open.dev.jsonl] [--out benchmarks/out/serve] [--publish]

Starts the server as a subprocess on a free 127.0.0.1 port (loopback only), then fires ``--requests`` single-question
``/search`` requests per retriever and concurrency from this process with that many threads (one HTTP client each).
A request shed with 429 is counted as shed, and its client waits the ``Retry-After`` it was given, as a polite client
does. The whole load is bounded by ``--max-seconds`` (shared evenly between the phases; a phase stops early when its
share is spent). The server's resident memory is sampled every second. ``--soak-seconds``: afterwards, load the first
retriever at the highest concurrency for that long and report the RSS curve after the first fifth (the warm-up).
Give a concurrency more than once (``16,64,16,64``) to see run-to-run noise. The server's log is ``server.log`` under
``--out``; ``--publish`` writes section ``serve-load`` (or ``serve-load-ask`` for ``--endpoint ask``).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from benchmarks.harness import cpu_line, free_port, parser, publish
from densepr.serve.admission import ALWAYS_ADMITTED

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
SMOKE = ["--requests", "8", "--concurrency", "2", "--max-seconds", "10", "--articles", "3"]


def start_server(args, port: int, log_path: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "densepr", "-q", "serve", "--host", LOOPBACK, "--port", str(port),
               "--max-pending", str(args.max_pending)]
    if args.index:
        command += ["--index", args.index]
    if args.bm25_index:
        command += ["--bm25-index", args.bm25_index]
    command += args.serve_option
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


def rss_mb(pid: int) -> float:
    """A process's resident memory (Linux ``/proc``)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time so far (Linux ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_phase(base: str, retriever: str, questions: list[str], n: int, concurrency: int, k: int, seconds: float,
              server_pid: int, sample_every: float = 1.0, endpoint: str = "search") -> dict:
    """``n`` requests to ``/endpoint`` from ``concurrency`` threads, stopping at ``seconds``; latencies of the answered
    ones (an ``/ask`` answer must hold its reader's answer), the shed count, and the server's RSS every ``sample_every``
    seconds."""
    counter, lock = itertools.count(), threading.Lock()
    latencies: list[float] = []
    errors: list[str] = []
    shed = [0]
    rss: list[tuple[float, float]] = []
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
                    r = client.post(f"/{endpoint}", json=body)
                    if r.status_code == 429:
                        with lock:
                            shed[0] += 1
                        time.sleep(float(r.headers.get("retry-after", "1")))
                        continue
                    ok = r.status_code == 200 and len(r.json()["results"]) == 1
                    ok = ok and (endpoint == "search" or len(r.json()["answers"]) == 1)
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
    while any(t.is_alive() for t in threads):
        rss.append((round(time.perf_counter() - start, 1), round(rss_mb(server_pid), 1)))
        threads[0].join(sample_every) if threads[0].is_alive() else time.sleep(sample_every)
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    done = len(latencies) + len(errors)
    ms = np.array(latencies) * 1000 if latencies else np.array([np.nan])
    return {"endpoint": endpoint, "retriever": retriever, "concurrency": concurrency, "requests": done, "ok": len(latencies),
            "errors": len(errors), "shed_429": shed[0], "error_examples": sorted(set(errors))[:3],
            "stopped_by": "count" if done + shed[0] >= n else "time", "seconds": round(wall, 2),
            "requests_per_second": round(len(latencies) / wall, 1), "rss_mb": rss,
            "latency_ms": {"p50": round(float(np.percentile(ms, 50)), 1), "p90": round(float(np.percentile(ms, 90)), 1),
                           "p99": round(float(np.percentile(ms, 99)), 1), "max": round(float(ms.max()), 1)}}


def soak_summary(rss: list[tuple[float, float]], warmup_share: float = 0.2) -> dict:
    """RSS after the warm-up (the first ``warmup_share`` of the samples): its first value, range and worst deviation."""
    after = [mb for _, mb in rss[int(len(rss) * warmup_share):]]
    if not after:
        return {}
    base = after[0]
    return {"rss_after_warmup_mb": base, "min_mb": min(after), "max_mb": max(after),
            "max_deviation_pct": round(100 * max(abs(mb - base) for mb in after) / base, 2), "samples": len(after)}


def markdown(report: dict) -> str:
    lines = [f"## `densepr serve` load test ({report['passages']:,} passages)", "", f"{cpu_line()}.", "",
             (f"Client and server on the same machine; POST /{report['endpoint']}; "
              f"{report['passages']:,} passages; k = {report['k']}, {report['requests_per_retriever']} requests per phase, "
              f"at most {report['max_seconds']} s in all; the server sheds (429, Retry-After: 1; the client waits it out) "
              f"beyond {report['max_pending']} requests in flight, or beyond {ALWAYS_ADMITTED} when those would take "
              "over its --max-queue-wait (0.5 s unless --serve-option says otherwise) at its recent rate."), "",
             "| retriever | clients | answered | shed (429) | errors | seconds | answered/s | p50 ms | p90 ms | p99 ms | "
             "max ms | mean batch | server RSS MB (max) | CPU ms per answer: server / client |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for p in report["phases"]:
        lat = p["latency_ms"]
        top = max((mb for _, mb in p["rss_mb"]), default=float("nan"))
        lines.append(f"| {p['retriever']} | {p['concurrency']} | {p['ok']} | {p['shed_429']} | {p['errors']} | {p['seconds']} | "
                     f"{p['requests_per_second']} | {lat['p50']} | {lat['p90']} | {lat['p99']} | {lat['max']} | "
                     f"{p.get('mean_batch', '-')} | {top:.0f} | {p.get('server_cpu_ms_per_answer', '-')} / "
                     f"{p.get('client_cpu_ms_per_answer', '-')} |")
    soak = report.get("soak")
    if soak:
        s, p = soak["summary"], soak["phase"]
        lines += ["", f"Soak: {p['retriever']} at {p['concurrency']} clients for {p['seconds']} s, {p['ok']} answered, "
                      f"{p['shed_429']} shed, {p['errors']} errors, p99 {p['latency_ms']['p99']} ms. Server RSS after the "
                      f"warm-up (first fifth): {s['rss_after_warmup_mb']:.0f} MB, then {s['min_mb']:.0f}-{s['max_mb']:.0f} "
                      f"MB, at most {s['max_deviation_pct']}% away.", "", "| second | RSS MB |", "|---:|---:|"]
        step = max(1, len(p["rss_mb"]) // 20)
        lines += [f"| {t:.0f} | {mb:.0f} |" for t, mb in p["rss_mb"][::step]]
    lines += ["", f"Server: `{report['server']}`"]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = parser(__doc__, "serve")
    ap.add_argument("--corpus", default="benchmarks/out/retrieval", help="the retrieval suite's --out: its flat and bm25 "
                    "indexes, made there if missing, unless --index or --bm25-index is given")
    ap.add_argument("--articles", type=int, help="when the corpus is made here: the first N articles of each source")
    ap.add_argument("--index", help="dense index folder")
    ap.add_argument("--bm25-index", help="BM25 index folder")
    ap.add_argument("--retrievers", help="comma-separated (default: every one the server loads)")
    ap.add_argument("--requests", type=int, default=500, help="requests per phase (default 500)")
    ap.add_argument("--concurrency", default="16,64", help="comma-separated client counts, one phase each")
    ap.add_argument("--max-pending", type=int, default=256, help="the server's --max-pending (default 256)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--endpoint", choices=("search", "ask"), default="search",
                        help="POST /search, or /ask (the server needs a reader: --serve-option=--reader ...)")
    ap.add_argument("--max-seconds", type=float, default=60, help="time bound of the phases (default 60)")
    ap.add_argument("--soak-seconds", type=float, default=0, help="then a soak this long (default: none)")
    ap.add_argument("--startup-seconds", type=float, default=180, help="how long to wait for the server to load")
    ap.add_argument("--questions", help="question file (densepr.read_questions formats; default: 24 built-in)")
    ap.add_argument("--serve-option", action="append", default=[], metavar="ARG",
                        help="an argument passed on to densepr serve (repeat: --serve-option=--backend --serve-option=onnx)")
    args = ap.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    if not args.index and not args.bm25_index:
        from benchmarks.harness import mini_wiki

        corpus = mini_wiki(Path(args.corpus), args.articles)
        args.index, args.bm25_index = str(corpus / "flat"), str(corpus / "bm25")
    if not (1 <= args.requests <= 100_000 and all(1 <= c <= 256 for c in concurrencies) and 0 < args.max_seconds <= 600
            and 0 <= args.soak_seconds <= 3600):
        ap.error("bounds: 1..100000 requests, 1..256 clients, 0..600 max seconds, 0..3600 soak seconds")
    questions = QUESTIONS
    if args.questions:
        import densepr

        questions = [q.text[:1000] for q in densepr.read_questions(args.questions) if q.text.strip()] or QUESTIONS
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    port = free_port()
    base = f"http://{LOOPBACK}:{port}"
    server = start_server(args, port, out / "server.log")
    soak = None
    try:
        t0 = time.perf_counter()
        health = wait_healthy(base, server, args.startup_seconds)
        startup = time.perf_counter() - t0
        retrievers = args.retrievers.split(",") if args.retrievers else health["retrievers"]
        for name in retrievers:  # warm-up (not measured): model caches, page cache of the index
            httpx.post(f"{base}/{args.endpoint}", json={"question": questions[0], "k": args.k, "retriever": name}, timeout=60)
        phases = []
        share = args.max_seconds / (len(retrievers) * len(concurrencies))
        for name in retrievers:
            for clients in concurrencies:
                phases.append(measured(base, name, questions, args.requests, clients, args.k, share, server.pid,
                                       endpoint=args.endpoint))
                print(json.dumps({k: v for k, v in phases[-1].items() if k != "rss_mb"}), flush=True)
        if args.soak_seconds:
            phase = measured(base, retrievers[0], questions, 10**9, max(concurrencies), args.k, args.soak_seconds,
                             server.pid, sample_every=5.0, endpoint=args.endpoint)
            soak = {"phase": phase, "summary": soak_summary(phase["rss_mb"])}
            print(json.dumps(soak["summary"]), flush=True)
    finally:
        server.terminate()
        try:
            server.wait(15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()

    report = {"server": " ".join(server.args[2:]) if isinstance(server.args, list) else str(server.args),
              "startup_seconds": round(startup, 1), "passages": health["passages"], "indexes": health["indexes"],
              "questions": len(questions), "requests_per_retriever": args.requests, "max_pending": args.max_pending,
              "endpoint": args.endpoint, "k": args.k, "max_seconds": args.max_seconds, "phases": phases, "soak": soak}
    publish("serve", args, report, markdown(report), "serve-load" if args.endpoint == "search" else "serve-load-ask")


def measured(base: str, retriever: str, questions: list[str], n: int, clients: int, k: int, seconds: float,
             server_pid: int, sample_every: float = 1.0, endpoint: str = "search") -> dict:
    """:func:`run_phase`, with the server's mean batch and the CPU time server and client spent per answer."""
    before = httpx.get(base + "/health").json()["batching"]
    server_cpu, client_cpu = cpu_seconds(server_pid), cpu_seconds(os.getpid())
    phase = run_phase(base, retriever, questions, n, clients, k, seconds, server_pid, sample_every, endpoint)
    answered = max(phase["ok"], 1)
    phase["server_cpu_ms_per_answer"] = round(1000 * (cpu_seconds(server_pid) - server_cpu) / answered, 2)
    phase["client_cpu_ms_per_answer"] = round(1000 * (cpu_seconds(os.getpid()) - client_cpu) / answered, 2)
    after = httpx.get(base + "/health").json()["batching"]
    if after and after["batches"] > before["batches"]:
        phase["mean_batch"] = round((after["questions"] - before["questions"]) / (after["batches"] - before["batches"]), 2)
    return phase


if __name__ == "__main__":
    main()

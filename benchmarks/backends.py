"""Every inference backend × precision on this CPU, side by side with sentence-transformers' backends, in one run.

    python -m benchmarks backends [--corpus benchmarks/out/retrieval] [--st-python VENV/bin/python] [--lean-python P]

For the default model (all-MiniLM-L6-v2, max length 256, the machine's threads), its towers and the default reader
loaded for inference (``lite``) as the CLI and the service load them:

- passage encoding (passages/s, ``--n`` mini-Wikipedia passages, medians of ``--runs`` interleaved runs) for densepr on
  torch fp32 / torch bf16 / onnx fp32 / onnx int8 / openvino fp32 / openvino bf16 (where installed), and for sentence-transformers ``encode()`` on its default (torch)
  backend and, with ``--st-python`` (a Python whose sentence-transformers has ``optimum-onnx``: it needs transformers
  < 4.58), on its onnx backend in fp32 and dynamic int8;
- agreement with densepr torch fp32 (cosine mean/min) and the agreement gate's verdict;
- top-1/20 accuracy of SQuAD dev questions over the whole mini-Wikipedia (exact search) per backend, and its change;
- one question end to end (encode + flat search over the default corpus's index): p50/p95 ms;
- the reader over 5 passages: p50/p95 ms, and exact match on ``reader_recipe``'s held-out SQuAD split (k = 5) when
  ``--bundle`` is there;
- encoding the default corpus (12,324 passages) with what ``auto`` picks: seconds;
- ``ask`` (part ``ask``): the lean path against the torch path, see :mod:`benchmarks.lean_ask`.

``--publish`` writes section ``backends`` on a CPU with bf16 units, ``backends-no-bf16`` on an AVX-512 one without,
``backends-avx2`` on an AVX2-only one, and ``lean-ask``.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks import lean_ask
from benchmarks.harness import DATA, NQ, cpu_line, machine, parser, publish

SMOKE = ["--n", "16", "--runs", "1", "--questions", "3", "--no-accuracy", "--no-default-corpus", "--variants", "onnx-int8",
         "--ask-runs", "1", "--ask-questions", "2", "--no-cold"]
VARIANTS = [("torch", "fp32"), ("torch", "bf16"), ("onnx", "fp32"), ("onnx", "int8")]
if importlib.util.find_spec("openvino") is not None:  # the optional extra: pip install 'densepr[openvino]'
    VARIANTS += [("openvino", "fp32"), ("openvino", "bf16")]
ST_SCRIPT = r"""
import json, statistics, sys, time
from sentence_transformers import SentenceTransformer
args = json.load(open(sys.argv[1]))
out = {}
for name, path, kwargs in args["variants"]:
    try:
        model = SentenceTransformer(path, device="cpu", **kwargs)
    except Exception as exc:
        out[name] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
        continue
    model.max_seq_length = 256
    model.encode(args["pairs"][:64])
    times = []
    for _ in range(args["runs"]):
        t = time.perf_counter(); model.encode(args["pairs"]); times.append(time.perf_counter() - t)
    out[name] = {"passages_per_s": len(args["pairs"]) / statistics.median(times)}
print(json.dumps(out))
"""
ST_QUANTIZE = (  # sentence-transformers' own int8 export: dynamic quantisation with its avx2 config
    "import sys\nfrom sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model as q\n"
    "m = SentenceTransformer(sys.argv[1], backend='onnx', device='cpu'); m.save(sys.argv[2]); q(m, 'avx2', sys.argv[2])\n")


def st_encode(python: str, folder: str, pairs: list[list[str]], runs: int, onnx: bool, work: Path) -> dict:
    """sentence-transformers ``encode()`` in ``python``: its default backend, and its onnx fp32 and int8 if ``onnx``."""
    work.mkdir(parents=True, exist_ok=True)
    variants: list = [("st-torch", folder, {"model_kwargs": {"torch_dtype": "float32"}})]  # the packaged weights are fp16
    if onnx:
        q8 = work / "st-onnx-q8"
        if not q8.is_dir():
            subprocess.run([python, "-c", ST_QUANTIZE, folder, str(q8)], capture_output=True, check=False)
        variants += [("st-onnx-fp32", folder, {"backend": "onnx"}),
                     ("st-onnx-int8", str(q8), {"backend": "onnx", "model_kwargs": {"file_name": "onnx/model_quint8_avx2.onnx"}})]
    (work / "args.json").write_text(json.dumps({"variants": variants, "pairs": pairs, "runs": runs}))
    done = subprocess.run([python, "-c", ST_SCRIPT, str(work / "args.json")], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "HOME": str(Path.home())})
    if done.returncode != 0:
        return {"st-torch": {"error": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]}}
    return json.loads(done.stdout.strip().splitlines()[-1])


def encoders(passages, runs: int, variants: list[tuple[str, str]]) -> tuple[dict, dict]:
    """densepr's variants: passages/s (interleaved medians) and vectors."""
    import densepr
    from densepr.backends.choice import Backend
    from densepr.dense.backend import attach_encoder

    towers = {}
    for name, precision in variants:
        tower = densepr.Encoder.from_pretrained("default", lite=True)
        placed = attach_encoder(tower, Backend(name, precision), passages[:64])
        towers[f"{name}-{precision}"] = (tower, str(placed))
    titles, texts = [p.title for p in passages], [p.text for p in passages]
    times: dict[str, list[float]] = {k: [] for k in towers}
    vectors = {}
    for k, (tower, _) in towers.items():
        tower.embed(titles[:64], texts[:64])
    for _ in range(runs):
        for k, (tower, _) in towers.items():
            t = time.perf_counter()
            vectors[k] = tower.embed(titles, texts, warn_truncation=False)
            times[k].append(time.perf_counter() - t)
    speed = {k: {"passages_per_s": len(passages) / statistics.median(v), "runs_s": v, "ran_on": towers[k][1]} for k, v in times.items()}
    return speed, {"towers": {k: t for k, (t, _) in towers.items()}, "vectors": vectors}


def agreement(vectors: dict[str, np.ndarray]) -> dict:
    ref = vectors["torch-fp32"]
    out = {}
    for k, v in vectors.items():
        cos = (ref * v).sum(1) / np.linalg.norm(ref, axis=1) / np.linalg.norm(v, axis=1)
        out[k] = {"cosine_mean": float(cos.mean()), "cosine_min": float(cos.min())}
    return out


def accuracy(towers: dict, corpus: Path, emb_root: Path) -> dict:
    """Top-1/20 of SQuAD dev over the whole mini-Wikipedia (exact search) with each backend's passage and question vectors."""
    import densepr
    from densepr.index.faiss_index import DenseIndex

    store = densepr.PassageStore(corpus / "psgs_w100.tsv")
    questions = densepr.read_questions(DATA / "squad/squad-dev-v1.1.open.json")
    texts = [q.text for q in questions]
    out = {}
    for k, tower in towers.items():
        emb = emb_root / k
        if not (emb / "vectors.npy").is_file():
            emb.mkdir(parents=True, exist_ok=True)
            p = list(store.iter_range(0, len(store)))
            np.save(emb / "vectors.npy", tower.embed([x.title for x in p], [x.text for x in p], warn_truncation=False, progress=True))
            (emb / "ids.txt").write_text("\n".join(x.id for x in p))
        vectors, ids = np.load(emb / "vectors.npy"), (emb / "ids.txt").read_text().split("\n")
        _, rows = DenseIndex.build(vectors, ids).search(tower.embed(texts, warn_truncation=False), 20)
        hits = [[densepr.Hit(int(r), 0.0) for r in rr] for rr in rows]
        acc = densepr.top_k_accuracy(densepr.build_results(questions, hits, store, ids, "string"), ks=(1, 20))
        out[k] = {str(n): v for n, v in acc.items()}
        print("accuracy", k, out[k], flush=True)
    for k in out:
        out[k]["change_1"], out[k]["change_20"] = out[k]["1"] - out["torch-fp32"]["1"], out[k]["20"] - out["torch-fp32"]["20"]
    return out


def percentiles(times_ms: list[float]) -> dict:
    return {"p50_ms": float(np.percentile(times_ms, 50)), "p95_ms": float(np.percentile(times_ms, 95))}


def latency(towers: dict, n: int) -> dict:
    """One question at a time: encode + flat search over the default corpus's index (k = 100); ``auto`` as
    ``open_searcher`` sets the question encoder up."""
    import densepr
    from densepr.quickstart import ensure_default_index

    spec = ensure_default_index(progress=False)
    index = densepr.DenseIndex.load(spec.dense_dir)
    towers = {**towers, "auto": densepr.open_searcher(spec.part("dense")).retriever.model.question_encoder}
    questions = [q.text for q in densepr.read_questions(NQ)][:n]
    out = {}
    for k, tower in towers.items():
        tower.embed(questions[:5])
        times = []
        for q in questions:
            t = time.perf_counter()
            index.search(tower.embed([q]), 100)
            times.append(1000 * (time.perf_counter() - t))
        out[k] = {**percentiles(times), "ran_on": tower.backend()}
    return out


def reader_figures(n: int, bundle: Path | None, variants: list[tuple[str, str]]) -> dict:
    """Reader latency over 5 passages per question, and EM at k=5 on the held-out SQuAD split, per backend."""
    import densepr
    from densepr.backends.choice import Backend
    from densepr.backends.gate import sample_passages
    from densepr.quickstart import default_reader
    from densepr.read import Reader, answer_results
    from densepr.read.backend import attach_reader
    from densepr.read.inference import read_passages
    store = default_store()
    sample = sample_passages(store)
    questions = [q.text for q in densepr.read_questions(NQ)][:n]
    ctxs = [p.ctx() for p in sample_passages(store, 5 * n)]
    evals = None
    if bundle is not None and (bundle / "bundle.json.gz").is_file():
        from recipes.reader_recipe import eval_sets, unpack

        evals = eval_sets(*unpack(bundle, Path("/tmp/reader_recipe_eval")))
    out = {}
    for name, precision in variants:
        reader = Reader.load(default_reader(), lite=True)
        ran = attach_reader(reader, Backend(name, precision), sample)
        read_passages(reader, questions[0], ctxs[:5])
        times = []
        for i, q in enumerate(questions):
            t = time.perf_counter()
            read_passages(reader, q, ctxs[5 * i : 5 * i + 5])
            times.append(1000 * (time.perf_counter() - t))
        out[f"{name}-{precision}"] = {**percentiles(times), "ran_on": str(ran)}
        if evals is not None:
            em = answer_results(reader, evals["squad-hybrid"], (1, 5), batch_size=64)[1]["exact_match"]
            out[f"{name}-{precision}"]["squad_em"] = em
        print("reader", name, precision, out[f"{name}-{precision}"], flush=True)
    return out


def default_store():
    """The default corpus's passages (built on first use)."""
    import densepr
    from densepr.quickstart import ensure_default_index

    return densepr.open_searcher(ensure_default_index(progress=False).part("bm25")).store


def default_corpus_seconds() -> dict:
    """Encode the default corpus with what ``auto`` picks here (one run)."""
    import densepr
    from densepr.backends.choice import choose
    from densepr.backends.gate import sample_passages
    from densepr.dense.backend import attach_encoder
    store = default_store()
    tower = densepr.Encoder.from_pretrained("default", lite=True)
    ran = attach_encoder(tower, choose("auto"), sample_passages(store))
    passages = list(store.iter_range(0, len(store)))
    t = time.perf_counter()
    tower.embed([p.title for p in passages], [p.text for p in passages], warn_truncation=False)
    return {"passages": len(passages), "seconds": time.perf_counter() - t, "ran_on": str(ran)}


def report(r: dict) -> str:
    st = r["st"]
    base = st.get("st-torch", {}).get("passages_per_s")
    best_st = max((v["passages_per_s"], k) for k, v in st.items() if "passages_per_s" in v) if base else None
    lines = [f"{cpu_line(r['machine'])}.", "", "## Passage encoding (all-MiniLM-L6-v2, max length 256)", "",
             "| who | runs on | passages/s | × ST default | × ST fastest here | cosine to fp32 (mean / min) | top-1 / top-20 change (points) |",
             "|---|---|---|---|---|---|---|"]
    for k, v in r["encode"].items():
        a, acc = r["agreement"][k], r["accuracy"].get(k, {})
        ratio = f"{v['passages_per_s'] / base:.2f}" if base else "-"
        ratio_best = f"{v['passages_per_s'] / best_st[0]:.2f}" if best_st else "-"
        change = f"{acc['change_1']:+.2f} / {acc['change_20']:+.2f}" if acc else "-"
        lines.append(f"| densepr {k} | {v['ran_on']} | {v['passages_per_s']:.1f} | {ratio} | {ratio_best} | "
                     f"{a['cosine_mean']:.4f} / {a['cosine_min']:.4f} | {change} |")
    for k, v in st.items():
        lines.append(f"| sentence-transformers {k[3:]} | | {v.get('passages_per_s', 0):.1f} | | | | |" if "passages_per_s" in v
                     else f"| sentence-transformers {k[3:]} | not run: {v['error']} | | | | | |")
    if r["accuracy"]:
        fp32 = r["accuracy"]["torch-fp32"]
        lines += ["", f"Top-1 / top-20 of SQuAD dev (torch fp32): {fp32['1']:.2f} / {fp32['20']:.2f}. The gate asks top-20 within "
                  "0.5 point of fp32 and top-1 within 1 point."]
    lines += ["", "## One question end to end (encode + flat search over the default corpus, k = 100)", "",
              "| backend | runs on | p50 ms | p95 ms |", "|---|---|---|---|"]
    lines += [f"| {k} | {v.get('ran_on', k)} | {v['p50_ms']:.2f} | {v['p95_ms']:.2f} |" for k, v in r["latency"].items()]
    lines += ["", "## Reader (default reader, 5 passages a question)", "",
              "| backend | runs on | p50 ms | p95 ms | SQuAD held-out EM k=1 / k=5 |", "|---|---|---|---|---|"]
    for k, v in r["reader"].items():
        em = v.get("squad_em")
        lines.append(f"| {k} | {v['ran_on']} | {v['p50_ms']:.1f} | {v['p95_ms']:.1f} | "
                     + (f"{em['1']:.2f} / {em['5']:.2f}" if em else "-") + " |")
    d = r["default_corpus"]
    lines += [] if not d else ["", f"Encoding the default corpus ({d['passages']:,} passages) with auto ({d['ran_on']}): {d['seconds']:.1f} s.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = parser(__doc__, "backends")
    ap.add_argument("--corpus", default="benchmarks/out/retrieval", help="the retrieval suite's --out")
    ap.add_argument("--articles", type=int, help="when the corpus is made here: the first N articles of each source")
    ap.add_argument("--parts", default="encode,ask", help="encode (backends x precisions), ask (lean vs torch ask)")
    ap.add_argument("--no-default-corpus", action="store_true", help="skip encoding the whole default corpus")
    ap.add_argument("--ask-runs", type=int, default=5, help="ask: alternating runs behind each median")
    ap.add_argument("--ask-questions", type=int, default=60, help="ask: NQ-open questions piped on stdin")
    ap.add_argument("--no-cold", action="store_true", help="ask: skip the first ask on cold caches")
    ap.add_argument("--lean-python", help="ask: the python of a venv without torch (pip install densepr)")
    ap.add_argument("--n", type=int, default=1000, help="passages timed")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--questions", type=int, default=200, help="questions timed one at a time")
    ap.add_argument("--st-python", default=sys.executable, help="Python for sentence-transformers (with optimum-onnx)")
    ap.add_argument("--bundle", default="benchmarks/out/reader_bundle", help="reader_recipe's bundle (reader EM)")
    ap.add_argument("--no-accuracy", action="store_true", help="skip whole-corpus top-k accuracy")
    ap.add_argument("--variants", default=",".join(f"{n}-{p}" for n, p in VARIANTS),
                        help="densepr's backend-precision pairs to run (torch-fp32, the reference, always runs); default: all "
                        "installed. OpenVINO bf16 on a CPU without bf16 units took minutes per 1,000 passages")
    args = ap.parse_args()
    asked, known = set(args.variants.split(",")), {f"{n}-{p}" for n, p in VARIANTS}
    if asked - known:
        ap.error(f"unknown variants {', '.join(sorted(asked - known))}; choose from {', '.join(sorted(known))}")
    variants = [v for v in VARIANTS if v == ("torch", "fp32") or f"{v[0]}-{v[1]}" in asked]
    import densepr
    from densepr.dense.loading import packaged_default_model
    from densepr.hardware import cpu_supports_bf16

    if "ask" in args.parts.split(","):
        ask, text = lean_ask.measure(sys.executable, args.ask_runs, args.ask_questions, args.lean_python, not args.no_cold)
        publish("backends", argparse.Namespace(out=f"{args.out}/ask", publish=args.publish), ask, text, "lean-ask")
    if "encode" not in args.parts.split(","):
        return
    from benchmarks.harness import mini_wiki

    corpus, out = mini_wiki(Path(args.corpus), args.articles), Path(args.out)
    store = densepr.PassageStore(corpus / "psgs_w100.tsv")
    rows = sorted(np.random.default_rng(0).choice(len(store), size=min(args.n, len(store)), replace=False))
    passages = [store[int(r)] for r in rows]
    r: dict = {"machine": machine()}
    r["st"] = st_encode(args.st_python, str(packaged_default_model()), [[p.title, p.text] for p in passages], args.runs,
                        args.st_python != sys.executable, out / "st")
    print("st", r["st"], flush=True)
    r["encode"], state = encoders(passages, args.runs, variants)
    print("encode", {k: round(v["passages_per_s"], 1) for k, v in r["encode"].items()}, flush=True)
    r["agreement"] = agreement(state["vectors"])
    r["accuracy"] = {} if args.no_accuracy else accuracy(state["towers"], corpus, out / "emb")
    r["latency"] = latency(state["towers"], args.questions)
    r["reader"] = reader_figures(min(args.questions, 100), Path(args.bundle), variants)
    r["default_corpus"] = None if args.no_default_corpus else default_corpus_seconds()
    kind = "backends" if cpu_supports_bf16() else "backends-no-bf16" if "avx512f" in r["machine"]["flags"] else "backends-avx2"
    publish("backends", args, r, report(r), kind)  # one section per kind of CPU



if __name__ == "__main__":
    main()

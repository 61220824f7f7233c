"""Static int8 (calibrated on the corpus's own passages) against dynamic int8 and fp32, for the passage encoder.

    python -m benchmarks.ablations.static_int8 --corpus benchmarks/out/retrieval [--model default] [--passages 600]
        [--calibration 64] [--out benchmarks/out/static_int8]

Exports the passage tower to ONNX (fp32), then quantises it statically (ONNX Runtime's ``quantize_static``, QDQ
format, int8 weights per output channel, activations calibrated by min/max on ``--calibration`` passages spread over
the corpus) in several variants: every MatMul; only the linear layers (not attention's activation x activation
products); the linear layers but the feed-forward down-projections (whose GELU inputs have outliers). Each graph runs
on OpenVINO (where static int8 is meant to run) and ONNX Runtime, beside ONNX Runtime's dynamic int8 (densepr's
``--backend onnx --precision int8``) and both engines' fp32, over ``--passages`` other passages of the corpus in batches
of 32: passages/s and cosine agreement with torch fp32 (densepr's gate asks mean >= 0.99, min >= 0.95).
Writes ``results.json`` and ``report.md`` under ``--out``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.ablations._report import cpu
from densepr.backends.export import export_graph
from densepr.backends.onnx import quantize_int8
from densepr.corpus.passages import Passage, PassageStore
from densepr.dense.biencoder import BiEncoder
from densepr.fileio import write_json

VARIANTS = {"every MatMul": "all", "linear layers": "linear", "linear layers but the FFN down-projection": "no-ffn-down"}


def batches(encoder, passages: list[Passage], size: int, pad_to: int | None = None) -> list[dict[str, np.ndarray]]:
    out = []
    for i in range(0, len(passages), size):
        chunk = passages[i : i + size]
        batch = encoder.tokenizer.pad(encoder.tokenize([p.title for p in chunk], [p.text for p in chunk]), return_tensors="np")
        arrays = {k: np.asarray(v, dtype=np.int64) for k, v in batch.items()}
        if pad_to:
            arrays = {k: np.pad(v, ((0, 0), (0, pad_to - v.shape[1]))) for k, v in arrays.items()}
        out.append(arrays)
    return out


def excluded(graph: Path, variant: str) -> list[str]:
    """MatMul nodes a variant keeps in fp32."""
    import onnx

    model = onnx.load(str(graph))
    weights = {i.name for i in model.graph.initializer}
    names = []
    for node in model.graph.node:
        if node.op_type != "MatMul":
            continue
        activations_only = not any(i in weights for i in node.input)
        ffn_down = "/output/dense/" in node.name and "attention" not in node.name
        if (variant != "all" and activations_only) or (variant == "no-ffn-down" and ffn_down):
            names.append(node.name)
    return names


def quantize_static(source: Path, target: Path, calibration: list[dict[str, np.ndarray]], variant: str) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.feeds = iter(calibration)

        def get_next(self) -> dict | None:
            return next(self.feeds, None)

    logging.disable(logging.WARNING)
    try:
        ort_quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
                            per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            nodes_to_exclude=excluded(source, variant), extra_options={"WeightSymmetric": True})
    finally:
        logging.disable(logging.NOTSET)


def engines(graph: Path, threads: int) -> dict:
    import onnxruntime as ort
    import openvino as ov

    compiled = ov.Core().compile_model(str(graph), "CPU", {"INFERENCE_NUM_THREADS": threads, "INFERENCE_PRECISION_HINT": "f32",
                                                            "PERFORMANCE_HINT": "LATENCY"})
    request = compiled.create_infer_request()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return {"openvino": lambda feed: np.array(request.infer(feed)[compiled.outputs[0]]),
            "onnxruntime": lambda feed: session.run(None, {k: feed[k] for k in names})[0]}


def measure(run, feeds: list[dict[str, np.ndarray]], reference: np.ndarray, runs: int = 3) -> dict:
    run(feeds[0])
    times, vectors = [], []
    for _ in range(runs):
        start = time.perf_counter()
        vectors = [run(feed) for feed in feeds]
        times.append(time.perf_counter() - start)
    got = np.concatenate(vectors)
    cosine = (got * reference).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(reference, axis=1))
    return {"passages_per_s": round(len(reference) / float(np.median(times)), 1), "cosine_mean": round(float(cosine.mean()), 4),
            "cosine_min": round(float(cosine.min()), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", required=True, help="folder holding psgs_w100.tsv")
    parser.add_argument("--model", default="default")
    parser.add_argument("--passages", type=int, default=600)
    parser.add_argument("--calibration", type=int, default=64)
    parser.add_argument("--out", default="benchmarks/out/static_int8")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    store = PassageStore(Path(args.corpus) / "psgs_w100.tsv")
    encoder = BiEncoder.load(args.model).passage_encoder
    calibration = [store[int(i)] for i in np.linspace(0, len(store) - 1, args.calibration)]
    test = [store[int(i)] for i in np.linspace(3, len(store) - 4, args.passages)]
    reference = encoder.embed([p.title for p in test], [p.text for p in test], warn_truncation=False)
    feeds = batches(encoder, test, 32)
    calib = batches(encoder, calibration, 8)
    longest = max(f["input_ids"].shape[1] for f in calib)
    calib = [{k: np.pad(v, ((0, 0), (0, longest - v.shape[1]))) for k, v in f.items()} for f in calib]  # one shape

    fp32 = out / "fp32.onnx"
    export_graph(encoder, {k: torch.from_numpy(v) for k, v in calib[0].items()}, ["vectors"], fp32)
    quantize_int8(fp32, out / "dynamic.onnx")
    rows = {"fp32": {e: measure(run, feeds, reference) for e, run in engines(fp32, threads).items()},
            "dynamic int8 (densepr's onnx int8)": {"onnxruntime": measure(engines(out / "dynamic.onnx", threads)["onnxruntime"],
                                                                          feeds, reference)}}
    for label, variant in VARIANTS.items():
        graph = out / f"static-{variant}.onnx"
        quantize_static(fp32, graph, calib, variant)
        rows[f"static int8: {label}"] = {e: measure(run, feeds, reference) for e, run in engines(graph, threads).items()}
        print(label, rows[f"static int8: {label}"], flush=True)
    report = {"cpu": cpu(), "model": args.model, "passages": len(test), "calibration": len(calibration), "rows": rows,
              "date": time.strftime("%Y-%m-%d", time.gmtime())}
    write_json(out / "results.json", report)
    lines = [f"# Static int8 of the passage encoder, {report['date']}", "",
             f"CPU: {report['cpu']['model']}, flags {' '.join(report['cpu']['flags'])}, {threads} threads. {len(test)} passages "
             f"of `{args.corpus}` in batches of 32; calibration on {len(calibration)} others.", "",
             "| graph | engine | passages/s | cosine to torch fp32: mean / min |", "|---|---|---:|---|"]
    for label, by_engine in rows.items():
        for engine, r in by_engine.items():
            lines.append(f"| {label} | {engine} | {r['passages_per_s']} | {r['cosine_mean']} / {r['cosine_min']} |")
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()

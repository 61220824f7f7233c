"""Which inference backend runs the encoders and the reader: torch (fp32, bf16; ``densepr[train]``), ONNX Runtime
(fp32, int8; in the core install) or OpenVINO (fp32, bf16; ``pip install 'densepr[openvino]'``).

``auto`` picks, on this machine: torch bf16 where torch is installed and there is a GPU or a CPU with bf16 units (bf16
there beat ONNX Runtime int8 in ``benchmarks/backends.py``), else ONNX Runtime: int8 for the encoders, fp32 for the
reader. Plain BERT folders then run from ONNX graphs written from their weights without torch
(:mod:`densepr.backends.bert_graph`), so ``ask`` on such a CPU imports no torch even where it is installed: the graph
reader read 5 passages in 136 ms against torch fp32's 191 ms (2-core AVX2 EPYC), and a warm ``ask`` took 1.7 s against
4.1-5.1 s. For long jobs (``encode``, ``qa``) on a CPU with bf16 units it picks OpenVINO bf16 where ``openvino`` is
installed: there it encoded passages 1.41x and read 1.84x as fast as torch bf16, at the same top-20 and exact match
(``benchmarks/backends.py``, 2-core Xeon with AMX). For the reader, ``auto`` never picks int8: on a Xeon without bf16
units its int8 graph (early feed-forward down-projections kept fp32, the variant that passes the gate) read 5 passages
1.16x as fast as torch fp32, for exact match -0.29 / -0.47 point at k = 1 / 5 on 1,720 held-out SQuAD questions and
another answer than fp32's on 12% of them (``benchmarks/ablations/reader_int8.py``); ``--precision int8`` still asks for it,
behind the gate. Without torch (the lean install) ``auto`` never picks torch, and asking for it is a one-line error.
An int8 (or any exported) graph is used only when it agrees with the fp32 reference (torch, or the fp32 graph) on a
sample of the corpus's own passages (:data:`GATE`); otherwise the next choice runs, said in one log line.

A server is another matter (:func:`serving_backend`): on a CPU with bf16 units, ``serve``'s ``auto`` runs ONNX Runtime
fp32 where it is installed. In a 10-minute soak at 64 clients (``benchmarks/serve.py``, 2-core Xeon with AMX),
torch bf16's resident memory grew 13.7% and levelled off only after 7 minutes (native memory, as each new batch shape
arrived; the Python heap stayed flat), while ONNX Runtime fp32 stayed within 1.5% and answered 7% more requests.

>>> choose("torch", "fp32") == Backend("torch", "fp32")
True
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass, field

from densepr.errors import DenseprError
from densepr.hardware import cpu_supports_bf16, torch_installed
from densepr.options import opt

BACKENDS = ("auto", "torch", "onnx", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")
PRECISIONS_OF = {"torch": ("fp32", "bf16"), "onnx": ("fp32", "int8"), "openvino": ("fp32", "bf16")}
# Agreement with torch fp32 an exported graph needs: encoders, cosine of the vectors (mean, min); the reader, the
# correlation of its start, end and selection logits (the lowest). benchmarks/backends.py measures what these mean for
# top-k accuracy and exact match.
GATE = {"cosine_mean": 0.99, "cosine_min": 0.95, "logit_correlation": 0.995}
log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class BackendOptions:
    """The options every command that runs a model shares."""

    backend: str = opt("auto", choices=BACKENDS, help="inference backend: auto picks torch bf16 on GPUs and CPUs with bf16 "
                       "units (OpenVINO bf16 for encode and qa there, when installed: pip install 'densepr[openvino]'), "
                       "ONNX Runtime int8 elsewhere when it is installed (pip install 'densepr[onnx]'), else torch fp32")
    precision: str | None = opt(None, choices=PRECISIONS, help="fp32, bf16 (torch, openvino) or int8 (onnx); default: the backend's "
                                "best here. An exported graph runs only if it agrees with torch fp32 on the corpus's passages")


@dataclass(frozen=True)
class Backend:
    """A backend and the precision it computes in."""

    name: str  # "torch" | "onnx"
    precision: str  # "fp32" | "bf16" | "int8"
    chosen: bool = field(default=False, compare=False)  # picked by auto rather than asked for
    why: str = field(default="", compare=False)  # auto's reason, for the log

    def __str__(self) -> str:
        return f"{self.name} {self.precision}"


def onnxruntime_installed() -> bool:
    return importlib.util.find_spec("onnxruntime") is not None


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def serving_backend(backend: str, precision: str | None, gpu: bool) -> tuple[str, str | None]:
    """The backend and precision a long-running server asks :func:`choose` for its question encoder: ``auto`` on a CPU
    with bf16 units becomes ONNX Runtime fp32 where it is installed (steady memory; and faster than torch for one
    question: 4.15 against 6.47 ms end to end); anything else stays as given. The reader keeps ``auto`` (torch bf16 on
    a bf16 copy of its weights: /ask answered 26.1-27.3 answers/s against 10.1-10.5 with the reader on ONNX Runtime fp32)."""
    if backend == "auto" and precision is None and not gpu and cpu_supports_bf16() and onnxruntime_installed():
        return "onnx", "fp32"
    return backend, precision


def choose(backend: str = "auto", precision: str | None = None, gpu: bool = False, int8: bool = True,
           bulk: bool = False) -> Backend:
    """The backend to try for ``backend``/``precision`` on this machine; one-line errors for pairs that cannot run.
    ``int8=False``: ``auto`` (without a precision) does not pick int8 (the reader). ``bulk``: a long job (encoding a
    corpus, reading a results file), where ``auto`` on a CPU with bf16 units picks OpenVINO bf16 where it is installed
    (it compiles the graph at start-up, which a one-shot command would wait for)."""
    chosen = _choose(backend, precision, gpu, int8, bulk)
    if chosen.precision == "bf16" and not gpu and not cpu_supports_bf16():
        log.warning("this CPU has no bf16 units (avx512_bf16, amx_bf16): %s bf16 is emulated and slower than fp32 here "
                    "(on a Xeon without them: torch 0.39x, OpenVINO 0.03x fp32's passages/s)", chosen.name)
    return chosen


def _choose(backend: str, precision: str | None, gpu: bool, int8: bool, bulk: bool) -> Backend:
    if backend not in BACKENDS:
        raise DenseprError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if precision is not None and precision not in PRECISIONS:
        raise DenseprError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}")
    torch = torch_installed()
    if backend == "auto":
        if bulk and precision in (None, "bf16") and not gpu and cpu_supports_bf16() and openvino_installed():
            return Backend("openvino", "bf16", why="a long job on a CPU with bf16 units, OpenVINO installed")
        if torch and precision in (None, "bf16") and (gpu or cpu_supports_bf16()):
            return Backend("torch", "bf16", chosen=precision is None, why="a GPU" if gpu else "a CPU with bf16 units")
        if precision in (None, "int8", "fp32") and not gpu and onnxruntime_installed():
            why = "no bf16 units here" if torch else "no torch installed"
            return Backend("onnx", precision or ("int8" if int8 else "fp32"), why=why)
        if precision == "int8":
            raise DenseprError("int8 runs on the onnx backend: pip install onnxruntime")
        if not torch:
            raise DenseprError(f"no backend here runs {precision or 'this'}: pip install 'densepr[train]' for torch")
        return Backend("torch", precision or "fp32")
    if backend == "torch" and not torch:
        raise DenseprError("the torch backend needs torch: pip install 'densepr[train]'")
    if backend in ("onnx", "openvino") and gpu:
        raise DenseprError(f"the {backend} backend runs on CPU; on a GPU use --backend torch")
    precision = precision or ("bf16" if backend != "onnx" and (gpu or cpu_supports_bf16()) else "fp32")
    if precision not in PRECISIONS_OF[backend]:
        raise DenseprError(f"the {backend} backend runs {' or '.join(PRECISIONS_OF[backend])}, not {precision}")
    return Backend(backend, precision)


def passes_gate(agreement: dict[str, float]) -> bool:
    """True when every measure in ``agreement`` reaches its :data:`GATE` threshold."""
    return all(value >= GATE[name] for name, value in agreement.items() if name in GATE)

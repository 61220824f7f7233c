"""What this machine's processor can do, read without importing torch."""

from __future__ import annotations

import resource
from functools import cache
from pathlib import Path


@cache
def cpu_supports_bf16() -> bool:
    """True on CPUs with native bf16 matrix units (AVX512-BF16; every AMX CPU has it too). Read from CPUID through
    numpy's runtime dispatch where numpy reports it, so an emulated CPU (QEMU's ``-cpu Haswell``, whose
    ``/proc/cpuinfo`` is the host's) is seen as the CPU it emulates; else from ``/proc/cpuinfo``."""
    try:
        from numpy._core._multiarray_umath import __cpu_features__ as features  # type: ignore[import-not-found]
    except ImportError:
        features = {}
    if "AVX512BF16" in features:
        return bool(features["AVX512BF16"])
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def torch_installed() -> bool:
    """Whether torch can be imported here (``densepr[train]``), found without importing it."""
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def gpu_available() -> bool:
    """Whether torch sees a GPU; torch is imported only where it is installed and an NVIDIA driver is present."""
    if not torch_installed() or not (Path("/proc/driver/nvidia").exists() or Path("/dev/nvidiactl").exists()):
        return False
    return default_device() == "cuda"


def default_device() -> str:
    """Where torch models run: "cuda" when torch sees a GPU, else "cpu" (torch imported only when asked)."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def use_bf16(device_type: str, requested: bool | None = None, precision: str | None = None) -> bool:
    """bf16 autocast as asked (``requested``, else a model's ``precision``: "bf16" or "fp32"), else on GPUs and on CPUs
    with bf16 units (emulated bf16 is slower than fp32)."""
    if requested is not None:
        return requested
    if precision is not None:
        return precision == "bf16"
    return device_type == "cuda" or cpu_supports_bf16()


def peak_rss_mb(pid: int | str = "self") -> float:
    """A process's peak resident memory in MB: Linux's ``VmHWM``, else (this process only) ``ru_maxrss``, which
    Linux carries over from the parent's memory at fork, so that a child of a large process reads large."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

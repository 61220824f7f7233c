"""What this machine's processor can do, read without importing torch."""

from __future__ import annotations

from functools import cache
from pathlib import Path


@cache
def cpu_supports_bf16() -> bool:
    """True on CPUs with native bf16 matrix units (AVX512-BF16 or AMX)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def use_bf16(device_type: str, requested: bool | None = None) -> bool:
    """bf16 autocast as asked, else on GPUs and on CPUs with bf16 units (emulated bf16 is slower than fp32)."""
    return (device_type == "cuda" or cpu_supports_bf16()) if requested is None else requested

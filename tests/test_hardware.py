"""Machine facts read without torch: the peak memory of this process or of a child."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from densepr.hardware import peak_rss_mb

CHILD = """
import resource, sys, time
from densepr.hardware import peak_rss_mb
print(peak_rss_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, flush=True)
sys.stdin.readline()
"""


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux's /proc")
def test_a_child_of_a_large_process_reports_its_own_peak():
    """``ru_maxrss`` of a child starts from its parent's memory at fork; ``VmHWM`` is the child's own."""
    ballast = bytearray(400 << 20)  # 400 MB resident in this process
    ballast[:: 4096] = b"x" * len(ballast[:: 4096])
    assert peak_rss_mb() > 400
    child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        own, _ = map(float, child.stdout.readline().split())  # ru_maxrss read ~414 MB here, VmHWM ~13 MB
        assert own < 200 and 0 < peak_rss_mb(child.pid) < 200  # read by the child, then by the parent through its pid
    finally:
        child.communicate("\n", timeout=30)
    del ballast

"""Load shedding by expected wait: the queue a server admits follows the rate it has been answering at."""

from __future__ import annotations

from densepr.serve.admission import Admission


def _busy(gate: Admission, per_second: float, seconds: float = 2.0) -> None:
    """``per_second`` requests finished evenly over the ``seconds`` before t = ``seconds``."""
    for i in range(int(per_second * seconds)):
        gate.start()
        gate.finish(now=i / per_second)


def _admitted(gate: Admission, now: float) -> int:
    """Requests started until the gate refuses one."""
    count = 0
    while gate.refusal(now) is None:
        gate.start()
        count += 1
    return count


def test_a_fast_server_queues_more_than_a_slow_one():
    fast, slow = Admission(32, 256, 0.5), Admission(32, 256, 0.5)
    _busy(fast, 200)
    _busy(slow, 20)
    assert _admitted(fast, 2.0) == 101  # the 101st has 100 ahead of it: 0.5 s at 200 a second
    assert _admitted(slow, 2.0) == 32  # 0.5 s at 20 a second is 10, below the always-admitted 32
    assert fast.refusal(2.0) == "101 requests in flight would take ~0.5 s at 200 a second"


def test_the_hard_cap_and_an_idle_server():
    capped = Admission(32, 64, 0.5)
    _busy(capped, 1000)
    assert _admitted(capped, 2.0) == 64 and capped.refusal(2.0) == "64 requests in flight"
    idle = Admission(32, 256, 0.5)  # nothing finished lately: the floor, then no guess at the rate
    assert _admitted(idle, 100.0) == 32 and "no recent rate" in idle.refusal(100.0)


def test_old_completions_leave_the_window():
    gate = Admission(4, 256, 0.5)
    _busy(gate, 200)
    assert gate.rate(2.0) == 200
    assert gate.rate(10.0) is None  # 8 s later nothing finished within the last 2 s
    assert _admitted(gate, 10.0) == 4


def test_bad_shedding_options_are_one_line_errors(tmp_path):
    import pytest

    from densepr.errors import DenseprError
    from densepr.serve.app import create_app

    for options in ({"max_pending": 0}, {"max_queue_wait": -1.0}, {"max_queue_wait": float("nan")}):
        with pytest.raises(DenseprError, match="--max-pending must be >= 1 and --max-queue-wait >= 0"):
            create_app(index=str(tmp_path), **options)

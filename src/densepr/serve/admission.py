"""Load shedding by expected wait. Up to ``min_pending`` requests in flight are always admitted and ``max_pending``
never are; in between, a request is refused (429) when those ahead of it would take the server longer than
``max_wait`` seconds at the rate it finished requests over the last ``window`` seconds. The queue follows the
machine: a server answering 200 a second under load queues up to 100 within 0.5 s, one answering 50 a second 32.

>>> gate = Admission(min_pending=2, max_pending=100, max_wait=0.5)
>>> for t in range(40):                      # 40 requests finished in the last 2 s: 20 a second
...     gate.start(); gate.finish(now=t / 20)
>>> for _ in range(10):
...     gate.start()
>>> gate.refusal(now=2.0) is None            # 10 ahead take ~0.5 s
True
>>> gate.start(); gate.refusal(now=2.0)
'11 requests in flight would take ~0.6 s at 20 a second'
"""

from __future__ import annotations

from collections import deque

ALWAYS_ADMITTED = 32  # requests in flight a server admits whatever its recent rate (the fixed bound of densepr 0.2)


class Admission:
    """Counts the requests in flight and the recent completions; :meth:`refusal` says why a new one is shed."""

    def __init__(self, min_pending: int, max_pending: int, max_wait: float, window: float = 2.0):
        self.min_pending, self.max_pending, self.max_wait, self.window = min_pending, max_pending, max_wait, window
        self.pending = 0
        self.finished: deque[float] = deque(maxlen=8192)  # completion times within the last ``window`` seconds

    def rate(self, now: float) -> float | None:
        """Requests finished a second over the last ``window`` seconds (a burst after a quiet spell counts as spread
        over the whole window: the estimate errs low); ``None`` when none finished in it."""
        while self.finished and now - self.finished[0] > self.window:
            self.finished.popleft()
        return len(self.finished) / self.window if self.finished else None

    def refusal(self, now: float) -> str | None:
        """Why a request arriving ``now`` is shed, or ``None`` to admit it."""
        if self.pending < self.min_pending:
            return None
        if self.pending >= self.max_pending:
            return f"{self.pending} requests in flight"
        rate = self.rate(now)
        if rate is None:
            return f"{self.pending} requests in flight and no recent rate"
        if self.pending / rate > self.max_wait:
            return f"{self.pending} requests in flight would take ~{self.pending / rate:.1f} s at {rate:.0f} a second"
        return None

    def start(self) -> None:
        self.pending += 1

    def finish(self, now: float) -> None:
        self.pending -= 1
        self.finished.append(now)

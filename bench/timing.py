"""Small timing helpers shared by the benchmarks."""

from __future__ import annotations

import time
from collections.abc import Callable


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank)."""
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


# The clock of :func:`best_of`: wall time, or the calling thread's CPU time
# (``time.thread_time``, which other processes on a loaded machine do not inflate).
CLOCK: Callable[[], float] = time.perf_counter


def best_of(fn: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` runs of ``fn``, in milliseconds of :data:`CLOCK`."""
    best = float("inf")
    for _ in range(max(1, repeat)):
        t0 = CLOCK()
        fn()
        best = min(best, (CLOCK() - t0) * 1000)
    return best

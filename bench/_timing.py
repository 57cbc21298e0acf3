"""Timing helpers the benchmarks share: run a callable N times after warm-up, read percentiles.

Imported by the bench scripts as `_timing` (a script's own folder is first on sys.path).
"""

from __future__ import annotations

import time
from collections.abc import Callable


def timed(fn: Callable[[], object], runs: int, *, warmup: int = 1) -> list[float]:
    """Milliseconds of each of `runs` calls of `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank `q` quantile (0 … 1) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

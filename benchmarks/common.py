"""Timing helpers for the benchmark scripts: medians and spreads, printed side by side."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def timeit(fn: Callable[[], object], repeats: int = 7, warmup: int = 1) -> dict:
    """Run fn warmup+repeats times; return median, min, max and p90 in milliseconds."""
    for _ in range(warmup):
        fn()
    ms = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ms.append((time.perf_counter() - t) * 1000)
    ms.sort()
    return {
        "median_ms": statistics.median(ms),
        "min_ms": ms[0],
        "max_ms": ms[-1],
        "p90_ms": ms[min(len(ms) - 1, int(0.9 * len(ms)))],
        "n": len(ms),
    }


def fmt(r: dict) -> str:
    return f"median {r['median_ms']:8.2f} ms  (min {r['min_ms']:.2f}, max {r['max_ms']:.2f}, n={r['n']})"

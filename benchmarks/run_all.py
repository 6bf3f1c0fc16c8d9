"""Run every benchmark in turn and print its figures (`make bench`). See docs/performance.md."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_flame  # noqa: E402
import bench_render  # noqa: E402
import bench_server  # noqa: E402

if __name__ == "__main__":
    for module in (bench_flame, bench_render, bench_server):
        print(f"== {module.__name__}")
        module.main()

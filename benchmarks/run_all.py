"""Run the quick benchmarks in turn and print their figures (`make bench`). See docs/performance.md.

The long ones run on their own, each with its options (`--help`), because at release sizes on
a 2-core CPU they take minutes to an hour:
  bench_next3d_nets.py (Next3D networks), bench_next3d.py (Next3D one view vs a turntable),
  bench_guidance.py (CLIP-PAE and ArcFace terms), bench_paper_train.py (paper-tier training step),
  bench_blender.py (add-on round trip inside bpy; needs .venv-blender).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_flame  # noqa: E402
import bench_ict_head  # noqa: E402
import bench_render  # noqa: E402
import bench_server  # noqa: E402

if __name__ == "__main__":
    for module in (bench_flame, bench_ict_head, bench_render, bench_server):
        print(f"== {module.__name__}")
        module.main()
    print(
        "long benchmarks, run each on its own (see this file's docstring): "
        "bench_next3d_nets, bench_next3d, bench_guidance, bench_paper_train, bench_blender"
    )

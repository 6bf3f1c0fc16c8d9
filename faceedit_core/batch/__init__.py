"""Batches at studio scale: heads x prompts x intensities x turntables, locally or on Ray.

`spec.py` (the TOML/YAML spec and its checks), `plan.py` (items, input hashes, training tasks),
`worker.py` (what runs in a worker: one editor per process, one item per task), `backends.py`
(local process pool, Ray), `runner.py` (skip, retry, manifest, Ctrl-C), `train.py` (`faceedit
train --prompts`), `blender.py` (Cycles turntables in headless Blender workers), `progress.py`.
docs/scaling.md has the figures and how the same command runs on a cluster.
"""

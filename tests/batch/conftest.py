"""A small batch for the tests: two good heads (a seeded identity, a parameter file) and a poisoned
file, one prompt, a 2-view 48 px turntable, a fast preview mapper (tests/helpers/server.py's FAST)."""

from __future__ import annotations

from pathlib import Path

import pytest

from faceedit_core.params import FlameParams
from tests.helpers.server import FAST

PROMPT = "A person who is smiling"


def write_spec(folder: Path, heads: str, extra: str = "") -> Path:
    spec = folder / "spec.toml"
    spec.write_text(
        f'prompts = ["{PROMPT}"]\n'
        "intensities = [1.0]\n"
        f"[editor]\ntrain_steps = {FAST.steps}\ntrain_batch = {FAST.batch}\n"
        f"{heads}\n"
        "[[turntables]]\nviews = 2\nsize = 48\nyaw_range = [-30.0, 30.0]\n"
        f"{extra}"
    )
    return spec


@pytest.fixture(scope="module")
def small_batch(tmp_path_factory) -> Path:
    """spec.toml with heads seed 0, good.json and bad.npz (not a parameter file): 3 items, 1 poisoned."""
    folder = tmp_path_factory.mktemp("batch_inputs")
    params = FlameParams.zeros(1, 20, 10)
    params.shape[0, :3] = params.shape.new_tensor([0.8, -0.5, 0.3])
    params.expression[0, 0] = 0.2
    params.save(folder / "good.json")
    (folder / "bad.npz").write_bytes(b"this is not a parameter file")
    return write_spec(folder, '[[heads]]\nseeds = [0]\n[[heads]]\nparams = ["good.json", "bad.npz"]\n')

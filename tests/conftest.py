"""Fixtures shared by the whole suite.

`../shared/` (golden vectors, reference facts) sits beside the repository in CI and on the
developers' machines, but not in a user's clone: tests that need it skip with the reason.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers.paths import SHARED_DIR


def _require(path: Path) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent (golden vectors only ship beside the repository in CI)")
    return path


@pytest.fixture(scope="session")
def golden_flame_dir() -> Path:
    """`../shared/golden/flame/`: FLAME layer and CLIP-PAE reference outputs."""
    return _require(SHARED_DIR / "golden" / "flame")


@pytest.fixture(scope="session")
def golden_next3d_dir() -> Path:
    """`../shared/golden/next3d/`: Next3D stage-by-stage reference outputs."""
    return _require(SHARED_DIR / "golden" / "next3d")


@pytest.fixture(autouse=True, scope="session")
def _faceedit_home(tmp_path_factory) -> Path:
    """Keep generated models out of the user's real cache: one FACEEDIT_HOME per test session."""
    home = tmp_path_factory.mktemp("faceedit_home")
    os.environ["FACEEDIT_HOME"] = str(home)
    return home

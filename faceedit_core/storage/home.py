"""Where FaceEdit keeps what it generates or converts, and content hashes of files.

`FACEEDIT_HOME` holds everything FaceEdit generates or converts; without it, the platform's user
cache folder (platformdirs: `~/.cache/faceedit` on Linux, `~/Library/Caches/faceedit` on macOS,
`%LOCALAPPDATA%/faceedit/Cache` on Windows).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def faceedit_home() -> Path:
    """FACEEDIT_HOME when set, else the platform's user cache folder for FaceEdit."""
    given = os.environ.get("FACEEDIT_HOME")
    if given:
        return Path(given).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("faceedit", appauthor=False))


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

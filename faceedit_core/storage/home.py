"""Where FaceEdit keeps what it generates or converts, and content hashes of files.

`FACEEDIT_HOME` (default `~/.cache/faceedit`) holds everything FaceEdit generates or converts.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def faceedit_home() -> Path:
    return Path(os.environ.get("FACEEDIT_HOME", Path.home() / ".cache" / "faceedit")).expanduser()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()

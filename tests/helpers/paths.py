"""Where the repository and the shared folder (golden vectors, reference facts) are."""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DIR = REPO_ROOT.parent / "shared"

"""`faceedit-server --help` and `--version` answer without importing torch (a fresh interpreter each)."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("flag, expected", [("--help", "--bind"), ("--version", "faceedit-server 0.1.0")])
def test_server_help_and_version_do_not_import_torch(flag, expected):
    code = (
        "import sys\nfrom backend_server.__main__ import main\n"
        f"try:\n    main([{flag!r}])\nexcept SystemExit as exc:\n    assert exc.code == 0, exc.code\n"
        "print('torch imported:', 'torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert expected in out and "torch imported: False" in out

"""What scripts rely on: `faceedit edit` writes only JSON on stdout; a FaceEdit error exits 1 with
"Error: ..." and no usage banner, while a usage error keeps click's exit 2."""

import json

from click.testing import CliRunner

from faceedit_core.cli import main


def test_edit_prints_only_json_on_stdout(tmp_path):
    result = CliRunner().invoke(main, ["edit", "--prompt", "raise brows", "--out", str(tmp_path / "e.npz")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # progress went to stderr
    assert report["out"].endswith("e.npz") and report["target"]


def test_a_faceedit_error_exits_1_without_a_usage_banner(tmp_path):
    result = CliRunner().invoke(
        main, ["edit", "--prompt", "raise brows", "--intensity", "9", "--out", str(tmp_path / "e.npz")]
    )
    assert result.exit_code == 1
    assert "intensity 9.0 is outside" in result.stderr and "Usage:" not in result.stderr


def test_a_usage_error_keeps_exit_2(tmp_path):
    result = CliRunner().invoke(main, ["edit", "--prompt", "x"])  # --out missing
    assert result.exit_code == 2 and "Usage:" in result.stderr


def test_render_draws_its_progress_bar_on_stderr_only(tmp_path):
    result = CliRunner().invoke(main, ["render", "--views", "3", "--size", "64", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "rendering" in result.stderr and "rendering" not in result.stdout
    assert sorted(p.name for p in (tmp_path / "r").glob("view_*.png")) == ["view_00.png", "view_01.png", "view_02.png"]

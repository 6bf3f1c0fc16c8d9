"""The `faceedit batch` and `faceedit train --prompts` command lines (nothing is run here: plans and errors)."""

from __future__ import annotations

import sys

from click.testing import CliRunner

from faceedit_core.cli import main
from tests.batch.conftest import write_spec


def test_batch_is_listed_and_dry_run_prints_the_plan(tmp_path):
    assert "batch" in CliRunner().invoke(main, ["--help"]).output
    spec = write_spec(tmp_path, "[[heads]]\nseeds = {start = 0, count = 3}\n")
    result = CliRunner().invoke(main, ["batch", str(spec), "--dry-run", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0, result.output
    assert "3 items (3 to run, 0 finished), 1 training tasks" in result.output
    assert "seed2-a-person-who-is-smiling-x1-v2s48p0-" in result.output


def test_ray_without_ray_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    spec = write_spec(tmp_path, "[[heads]]\nseeds = [0]\n")
    result = CliRunner().invoke(main, ["batch", str(spec), "--ray", "auto"])
    assert result.exit_code == 1
    assert "--ray needs Ray, which is not installed here: pip install 'faceedit[ray]'" in result.output
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("A person who is smiling\n")
    result = CliRunner().invoke(main, ["train", "--prompts", str(prompts), "--ray", "auto"])
    assert result.exit_code == 1 and "pip install 'faceedit[ray]'" in result.output


def test_spec_errors_and_prompt_files_are_reported_without_a_traceback(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text('prompts = ["x"]\n[[heads]]\nseed = [0]\n')
    result = CliRunner().invoke(main, ["batch", str(spec)])
    assert (
        result.exit_code == 1
        and "Error: spec.toml: heads[0].seed: unknown key (did you mean 'seeds'?)" in result.output
    )
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# nothing but a comment\n\n")
    result = CliRunner().invoke(main, ["train", "--prompts", str(prompts)])
    assert result.exit_code == 1 and "no prompt in the file" in result.output
    result = CliRunner().invoke(main, ["train", "--prompts", str(prompts), "--prompt", "smile"])
    assert result.exit_code == 2 and "give --prompt TEXT or --prompts FILE" in result.output

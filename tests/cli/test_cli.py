"""The `faceedit` command group: every listed subcommand imports and documents itself."""

import subprocess
import sys

import pytest
from click.testing import CliRunner

from faceedit_core.cli import SUBCOMMANDS, main
from faceedit_core.params import FlameParams


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_subcommand_help(name):
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_the_package_runs_as_a_module():
    # `make demo` runs `python -m faceedit_core.cli demo`: the package needs its __main__
    done = subprocess.run([sys.executable, "-m", "faceedit_core.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "demo" in done.stdout and "Usage:" in done.stdout


def test_unknown_subcommand_is_an_error():
    result = CliRunner().invoke(main, ["no-such-command"])
    assert result.exit_code != 0
    assert "No such command" in result.output


def test_train_caches_a_mapper_and_edit_uses_it(tmp_path):
    runner = CliRunner()
    # the head's conditioned mapper, trained once (a short run here); the prompt's id names its target
    trained = runner.invoke(main, ["train", "--prompt", "raise brows", "--steps", "300"])
    assert trained.exit_code == 0, trained.output
    assert "mapper pv-AU1-100.AU2-100" in trained.output and "AU1=1.00,AU2=1.00" in trained.output
    bad = runner.invoke(main, ["train", "--prompt", "the quarterly tax report"])
    assert bad.exit_code != 0 and "try:" in bad.output
    mapper_id = trained.output.split("mapper ")[1].split()[0]
    neutral = tmp_path / "neutral.json"
    FlameParams.zeros(1, 100, 50).save(neutral)
    out, obj = tmp_path / "edited.npz", tmp_path / "edited.obj"
    edited = runner.invoke(
        main,
        [
            "edit",
            "--mapper",
            mapper_id,
            "--params",
            str(neutral),
            "--intensity",
            "0.8",
            "--out",
            str(out),
            "--obj",
            str(obj),
        ],
    )
    assert edited.exit_code == 0, edited.output
    result = FlameParams.load(out)
    assert result.expression.abs().max() > 0.1 and obj.stat().st_size > 100_000
    assert '"success": [\n  true\n ]' in edited.output


def test_flame_options_serve_the_users_flame_file(tmp_path):
    from tests.helpers.flame import write_flame_standin

    runner = CliRunner()
    flame = write_flame_standin(tmp_path / "flame", "generic_model.pkl")
    rendered = runner.invoke(
        main, ["render", "--flame", str(flame), "--views", "2", "--size", "48", "--out", str(tmp_path / "r")]
    )
    assert rendered.exit_code == 0, rendered.output
    assert (tmp_path / "r" / "view_01.png").is_file()
    head = runner.invoke(main, ["train", "--flame", str(flame), "--steps", "10"])
    assert head.exit_code == 0, head.output
    assert "head mapper ph-" in head.output and "FLAME 2020 (generic_model.pkl)" in head.output
    alone = write_flame_standin(tmp_path / "alone", "flame2023.pkl", "2023", "2023", landmarks=False)
    missing = runner.invoke(
        main, ["edit", "--flame", str(alone), "--prompt", "smile", "--out", str(tmp_path / "o.npz")]
    )
    assert missing.exit_code == 1 and "no landmark embedding for flame2023.pkl" in missing.output
    assert "Usage:" not in missing.output
    orphan = runner.invoke(
        main, ["edit", "--landmarks", "x.npy", "--prompt", "smile", "--out", str(tmp_path / "o.npz")]
    )
    assert orphan.exit_code == 2 and "--landmarks and --n-exp go with --flame" in orphan.output

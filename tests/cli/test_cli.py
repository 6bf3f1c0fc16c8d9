"""The `faceedit` command group: every listed subcommand imports and documents itself."""

import pytest
from click.testing import CliRunner

from faceedit_core.cli import SUBCOMMANDS, main
from faceedit_core.params import FlameParams


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_subcommand_help(name):
    result = CliRunner().invoke(main, [name, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_unknown_subcommand_is_an_error():
    result = CliRunner().invoke(main, ["no-such-command"])
    assert result.exit_code != 0
    assert "No such command" in result.output


def test_train_caches_a_mapper_and_edit_uses_it(tmp_path):
    runner = CliRunner()
    trained = runner.invoke(main, ["train", "--prompt", "raise brows", "--steps", "60"])
    assert trained.exit_code == 0, trained.output
    assert "mapper pv-" in trained.output and "AU1=1.00,AU2=1.00" in trained.output
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

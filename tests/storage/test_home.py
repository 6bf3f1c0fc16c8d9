"""Where FaceEdit keeps its cache: FACEEDIT_HOME wins, else the platform's convention."""

from pathlib import Path

from faceedit_core.storage.home import faceedit_home


def test_faceedit_home_wins_over_the_platform_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEEDIT_HOME", str(tmp_path / "mine"))
    assert faceedit_home() == tmp_path / "mine"


def test_without_faceedit_home_the_platform_cache_folder_is_used(monkeypatch, tmp_path):
    monkeypatch.delenv("FACEEDIT_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # what platformdirs reads on Linux
    home = faceedit_home()
    assert home.name == "faceedit" and Path(tmp_path / "xdg") in home.parents

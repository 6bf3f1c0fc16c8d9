"""The bpy venvs and the add-on's bundled wheels install only hashed, pinned files.

requirements/blender-cp311.txt and blender-cp313.txt lock each bpy venv (every package `==` with its
sha256), the Makefile installs them with `pip install --require-hashes`, and an existing venv holds
exactly its lock's versions; requirements/addon-wheels.txt gives build_addon.py one hashed wheel per
platform, Python and bundled package.
"""

from __future__ import annotations

import re
import subprocess

import pytest

import build_addon
from tests.helpers.paths import REPO_ROOT

# Makefile stamp variable, lock variable, venv folder, Python, bpy version variable
BLENDER_ENVS = (
    ("BLENDER_STAMP", "BLENDER_LOCK", ".venv-blender", "3.11", "BPY_311"),
    ("BLENDER_STAMP_313", "BLENDER_LOCK_313", ".venv-blender-313", "3.13", "BPY_313"),
)
HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _makefile() -> str:
    return (REPO_ROOT / "Makefile").read_text()


def _variable(name: str) -> str:
    found = re.search(rf"^{name}\s*:?=\s*(\S+)\s*$", _makefile(), re.M)
    assert found, f"Makefile defines no {name}"
    return found.group(1)


def _recipe_of_target(target: str) -> list[str]:
    """The recipe lines of the Makefile rule `target: ...` (`$(VAR)` for a variable's target)."""
    lines = _makefile().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith(f"{target}:")), None)
    assert start is not None, f"Makefile has no {target} rule"
    recipe = []
    for line in lines[start + 1 :]:
        if not line.startswith("\t"):
            break
        recipe.append(line.strip())
    return recipe


def _lock_entries(text: str) -> list[str]:
    """Requirement entries of a pip requirements file, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    entries = (" ".join(line.split(" #")[0].split()) for line in joined.splitlines())
    return [entry for entry in entries if entry and not entry.startswith("#")]


def test_lock_entries_joins_continuations_and_drops_comments():
    text = "# head\nbpy==1.0 \\\n    --hash=sha256:" + "a" * 64 + "\n    # via x\nnumpy\n"
    assert _lock_entries(text) == ["bpy==1.0 --hash=sha256:" + "a" * 64, "numpy"]


@pytest.mark.parametrize(("stamp", "lock_var", "venv", "python", "bpy_var"), BLENDER_ENVS)
def test_blender_lock_pins_every_package_with_its_hash(stamp, lock_var, venv, python, bpy_var):
    entries = _lock_entries((REPO_ROOT / _variable(lock_var)).read_text())
    assert entries, f"{_variable(lock_var)} is empty"
    pins = {}
    for entry in entries:
        requirement = entry.split()[0]
        assert re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+!-]+", requirement), f"not pinned with ==: {entry!r}"
        assert HASH.search(entry), f"{requirement} in {_variable(lock_var)} has no --hash=sha256"
        assert all(HASH.fullmatch(option) for option in entry.split()[1:]), f"unexpected option in {entry!r}"
        name, version = requirement.split("==")
        pins[_norm(name)] = version
    assert pins.get("bpy") == _variable(bpy_var), f"{_variable(lock_var)} does not pin bpy=={_variable(bpy_var)}"


@pytest.mark.parametrize(("stamp", "lock_var", "venv", "python", "bpy_var"), BLENDER_ENVS)
def test_makefile_installs_the_blender_lock_with_hashes(stamp, lock_var, venv, python, bpy_var):
    assert _variable(lock_var) == f"requirements/blender-cp{python.replace('.', '')}.txt"
    assert f"$({lock_var})" in _makefile().split(f"$({stamp}):", 1)[1].splitlines()[0], "stamp must depend on lock"
    installs = [line for line in _recipe_of_target(f"$({stamp})") if "pip install" in line]
    assert installs, f"the $({stamp}) rule installs nothing"
    for line in installs:
        assert "--require-hashes" in line and f"-r $({lock_var})" in line, f"unhashed install: {line}"
    regenerate = f"$(call LOCK_BLENDER,$({bpy_var}),{python},$({lock_var}))"
    assert regenerate in _recipe_of_target("lock-blender"), f"`make lock-blender` does not regenerate $({lock_var})"


@pytest.mark.parametrize(("stamp", "lock_var", "venv", "python", "bpy_var"), BLENDER_ENVS)
def test_blender_venv_holds_its_locked_versions(stamp, lock_var, venv, python, bpy_var):
    interpreter = REPO_ROOT / venv / "bin" / "python"
    if not interpreter.exists():
        pytest.skip(f"{venv} is absent: `make {venv.removeprefix('.venv-').replace('blender', 'blender-venv')}`")
    listing = subprocess.run(
        [
            str(interpreter),
            "-c",
            "import importlib.metadata as m; [print(d.name, d.version) for d in m.distributions()]",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    installed = {_norm(n): v for n, v in (line.split() for line in listing.splitlines())}
    installed = {n: v for n, v in installed.items() if n not in ("pip", "setuptools")}  # from the venv itself
    locked = {}
    for entry in _lock_entries((REPO_ROOT / _variable(lock_var)).read_text()):
        name, version = entry.split()[0].split("==")
        locked[_norm(name)] = version
    assert installed == locked, f"{venv} differs from {_variable(lock_var)}"


def test_addon_wheel_table_covers_every_bundled_wheel():
    table = build_addon.wheel_table()
    dists = [spec.split("==")[0] for spec in build_addon.WHEELS]
    expected = {(p, v, d) for p in build_addon.PIP_PLATFORMS for v in build_addon.PYTHONS for d in dists}
    assert set(table) == expected
    for (plat, python, dist), (wheel, digest) in table.items():
        version = dict(spec.split("==") for spec in build_addon.WHEELS)[dist]
        assert wheel.startswith(f"{dist}-{version}-") and wheel.endswith(".whl"), wheel
        tag = wheel.split("-")[2]
        assert tag == "cp" + python.replace(".", "") or wheel.split("-")[3] == "abi3", f"{wheel} is not for {python}"
        assert re.fullmatch(r"[0-9a-f]{64}", digest)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("linux-x64 3.11 pyzmq-1-cp311-cp311-x.whl", "expected 'PLATFORM PYTHON WHEEL sha256:HEX'"),
        ("linux-x64 3.11 pyzmq-1-cp311-cp311-x.whl md5:00", "expected 'PLATFORM PYTHON WHEEL sha256:HEX'"),
        ("linux-x64 3.11 pyzmq-1-cp311-cp311-x.whl sha256:" + "0" * 63, "expected 'PLATFORM PYTHON WHEEL"),
    ],
)
def test_wheel_table_refuses_malformed_lines(tmp_path, line, message):
    path = tmp_path / "wheels.txt"
    path.write_text(f"# comment\n{line}\n")
    with pytest.raises(SystemExit, match=re.escape(message)):
        build_addon.wheel_table(path)


def test_wheel_table_refuses_a_second_row_for_one_wheel(tmp_path):
    row = "linux-x64 3.11 pyzmq-1-cp311-cp311-x.whl sha256:" + "0" * 64
    path = tmp_path / "wheels.txt"
    path.write_text(f"{row}\n{row}\n")
    with pytest.raises(SystemExit, match=r"wheels.txt:2: a second pyzmq wheel for linux-x64, Python 3.11"):
        build_addon.wheel_table(path)

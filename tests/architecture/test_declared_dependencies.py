"""Declare what is imported, import what is declared, and install what is declared from the lock.

Walks every import (lazy ones too) of the installed packages (faceedit_core, backend_server,
faceedit_wire) and of tests/, maps each third-party module to its distribution, and compares with
pyproject.toml; then checks requirements/lock.txt pins every declared distribution with hashes.
The Blender add-on is not here: it runs inside Blender with bpy and its own wheels.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
import tomllib

from tests.helpers.paths import REPO_ROOT

PACKAGES = ("faceedit_core", "backend_server", "faceedit_wire")
FIRST_PARTY = {*PACKAGES, "blender_addon", "tests", "build_addon", "benchmarks"}
# modules whose distribution may not be installed here (optional extras) or is named otherwise
KNOWN = {"nvdiffrast": "nvdiffrast", "yaml": "pyyaml", "ray": "ray"}
# optional imports whose distribution is not on PyPI, so no extra may name it: installed by hand as documented
BY_HAND = {"nvdiffrast": "docs/rendering.md"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(spec: str) -> str:
    return _norm(re.split(r"[\s<>=!~;\[]", spec.strip(), maxsplit=1)[0])


def _pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]


def _imports(*folders: str) -> dict[str, set[str]]:
    """{top-level third-party module: files importing it}, lazy imports included."""
    found: dict[str, set[str]] = {}
    for folder in folders:
        for path in (REPO_ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in FIRST_PARTY:
                        found.setdefault(top, set()).add(str(path.relative_to(REPO_ROOT)))
    return found


def _distribution(module: str) -> str | None:
    if module in KNOWN:
        return KNOWN[module]
    dists = md.packages_distributions().get(module)
    return _norm(dists[0]) if dists else None


def test_every_import_of_the_packages_is_a_declared_dependency():
    project = _pyproject()
    declared = {_requirement_name(d) for d in project["dependencies"]}
    extras = {_requirement_name(d) for deps in project["optional-dependencies"].values() for d in deps}
    problems = []
    for module, files in sorted(_imports(*PACKAGES).items()):
        dist = _distribution(module)
        if module in BY_HAND:
            assert module in (REPO_ROOT / BY_HAND[module]).read_text(), f"{BY_HAND[module]} says how"
            continue
        if dist is None or dist not in declared | extras:
            problems.append(f"{module} ({dist or 'no installed distribution'}) imported by {sorted(files)[:3]}")
    assert problems == [], "imported but not declared in pyproject.toml:\n" + "\n".join(problems)


def test_every_declared_dependency_is_imported():
    """Runtime dependencies only: the test extra also holds tools (ruff, pytest-timeout) and libraries
    that tests use as they are added."""
    used = {_distribution(m) for m in _imports(*PACKAGES)}
    unused = sorted({_requirement_name(d) for d in _pyproject()["dependencies"]} - used)
    assert unused == [], f"declared in pyproject.toml but never imported by {PACKAGES}: {unused}"


def test_the_lock_pins_every_declared_dependency_with_hashes():
    lock = (REPO_ROOT / "requirements" / "lock.txt").read_text()
    pinned: dict[str, list[str]] = {}
    for entry in re.split(r"\n(?=\S)", lock):
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", entry)
        if m:
            pinned[_norm(m[1])] = re.findall(r"--hash=sha256:([0-9a-f]{64})", entry)
    project = _pyproject()
    wanted = {_requirement_name(d) for d in project["dependencies"] + project["optional-dependencies"]["test"]}
    wanted |= {
        _requirement_name(line)
        for line in (REPO_ROOT / "requirements" / "build.in").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert sorted(wanted - set(pinned)) == [], "declared but not in requirements/lock.txt: run `make lock`"
    assert [name for name, hashes in pinned.items() if not hashes] == [], "lock entries without a hash"


def test_the_locked_versions_are_the_installed_ones():
    """The venv the tests run in was installed from the lock (make venv): a drifted venv or a stale lock shows here."""
    lock = (REPO_ROOT / "requirements" / "lock.txt").read_text()
    drift = []
    for name, version in re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)", lock, flags=re.M):
        try:
            installed = md.version(name)
        except md.PackageNotFoundError:
            drift.append(f"{name}=={version} not installed")
            continue
        if installed.split("+")[0] != version.split("+")[0]:
            drift.append(f"{name}: lock {version}, installed {installed}")
    assert drift == [], drift

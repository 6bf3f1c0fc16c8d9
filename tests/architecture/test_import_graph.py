"""The layering holds: no import cycle among our modules, the add-on and the wire stay torch-free,
the core knows nothing of the server or Blender. Every import counts, lazy ones inside functions too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("faceedit_core", "backend_server", "faceedit_wire", "blender_addon")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Every module `name` imports (absolute names; relative imports resolved; `from pkg import mod` -> pkg.mod)."""
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            submodules = {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known}
            found |= submodules
            if len(submodules) < len(node.names):  # some names come from the package itself
                found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = all_modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle among the keys of edges (as a path a -> ... -> a), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in edges or nxt == node:
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_no_import_cycle_among_our_modules():
    edges = graph()
    internal = {m: {i for i in deps if i in edges} for m, deps in edges.items()}
    assert find_cycle(internal) is None, f"import cycle: {' -> '.join(find_cycle(internal))}"


def _roots(deps: set[str]) -> set[str]:
    return {d.split(".")[0] for d in deps}


@pytest.mark.parametrize(
    "package, forbidden",
    [
        ("blender_addon", {"torch", "faceedit_core", "backend_server", "faceedit_wire"}),  # ships wire/ as its own copy
        ("faceedit_wire", {"torch", "faceedit_core", "backend_server", "blender_addon", "bpy"}),
        ("faceedit_core", {"backend_server", "blender_addon", "bpy", "zmq"}),
    ],
)
def test_layers_import_only_what_they_may(package, forbidden):
    bad = {
        m: sorted(_roots(deps) & forbidden)
        for m, deps in graph().items()
        if m.split(".")[0] == package and _roots(deps) & forbidden
    }
    assert not bad, f"{package} imports what its layer must not: {bad}"


def test_the_core_root_holds_only_modules_every_layer_uses():
    root_modules = sorted(p.stem for p in (ROOT / "faceedit_core").glob("*.py") if p.stem != "__init__")
    assert root_modules == ["editor", "errors", "factory", "mappers", "metrics", "params"]


def test_lower_layers_never_import_the_tiers_or_the_command_line():
    """flame/, render/, next3d/, au/, storage/ are below preview/, paper/ and cli/."""
    lower = (
        "faceedit_core.flame",
        "faceedit_core.render",
        "faceedit_core.next3d",
        "faceedit_core.au",
        "faceedit_core.storage",
    )
    upper = ("faceedit_core.preview", "faceedit_core.paper", "faceedit_core.cli", "faceedit_core.factory")
    bad = {
        m: sorted(d for d in deps if d.startswith(upper))
        for m, deps in graph().items()
        if m.startswith(lower) and any(d.startswith(upper) for d in deps)
    }
    assert not bad, f"lower layers import upper ones: {bad}"

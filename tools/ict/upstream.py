"""Reading the ICT-FaceKit repository straight from a bare git directory, and the facts its
README states (part ranges, landmark and jawline vertex ids, the FACS table).

Only facts are taken from upstream: numbers, names, ranges. Nothing here runs upstream code.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


class GitRepo:
    """A bare git directory read with `git show` at one commit (HEAD by default)."""

    def __init__(self, git_dir: str | Path, rev: str = "HEAD"):
        self.git_dir = str(git_dir)
        self.commit = self._git("rev-parse", rev + "^{commit}").decode().strip()
        self.hashes: dict[str, str] = {}

    def _git(self, *args: str) -> bytes:
        return subprocess.run(["git", "--git-dir", self.git_dir, *args], check=True, capture_output=True).stdout

    def read(self, path: str) -> bytes:
        """The file's bytes at the commit; its sha256 is remembered for the manifest."""
        data = self._git("show", f"{self.commit}:{path}")
        self.hashes[path] = hashlib.sha256(data).hexdigest()
        return data

    def list(self, folder: str) -> list[str]:
        out = self._git("ls-tree", "--name-only", f"{self.commit}:{folder}").decode().split("\n")
        return sorted(n for n in out if n)


def snake(name: str) -> str:
    """'Head and Neck' -> 'head_neck', 'Eye socket left' -> 'eye_socket_left'."""
    return re.sub(r"\s+", "_", name.strip().lower().replace(" and ", " "))


@dataclass
class ReadmeFacts:
    """tables: heading -> [(name, (v0, v1), (p0, p1))] with half-open vertex / polygon ranges;
    landmarks68 [68]; jawline_right/left [8] (substitutes for 0-7 / 9-16); extended_right/left
    [17]; facs: AU code -> (description, [shape names])."""

    tables: dict[str, list[tuple[str, tuple[int, int], tuple[int, int]]]] = field(default_factory=dict)
    landmarks68: list[int] = field(default_factory=list)
    jawline_right: list[int] = field(default_factory=list)
    jawline_left: list[int] = field(default_factory=list)
    extended_right: list[int] = field(default_factory=list)
    extended_left: list[int] = field(default_factory=list)
    facs: dict[str, tuple[str, list[str]]] = field(default_factory=dict)


_RANGE = re.compile(r"\[(\d+):(\d+)\]")


def _ints_after(lines: list[str], marker: str) -> list[int]:
    """The comma-separated integers on the first non-empty line after the line holding marker."""
    for i, ln in enumerate(lines):
        if marker in ln:
            for nxt in lines[i + 1 :]:
                if nxt.strip():
                    return [int(x) for x in nxt.replace(",", " ").split()]
    raise ValueError(f"README has no list after '{marker}'")


def parse_readme(text: str) -> ReadmeFacts:
    facts = ReadmeFacts()
    lines = text.splitlines()
    heading = ""
    for ln in lines:
        if ln.startswith("#"):
            heading = ln.lstrip("#").strip()
            continue
        cells = [c.strip() for c in ln.strip().strip("|").split("|")] if ln.startswith("|") else []
        ranges = [_RANGE.fullmatch(c) for c in cells[2:4]]
        if len(ranges) == 2 and all(ranges):
            (v0, v1), (p0, p1) = [(int(r.group(1)), int(r.group(2)) + 1) for r in ranges]
            facts.tables.setdefault(heading, []).append((cells[1], (v0, v1), (p0, p1)))
        elif len(cells) == 2 and heading == "Expression Shapes" and re.match(r"AU\d+ ", cells[0]):
            code, _, desc = cells[0].partition(" ")
            shapes = [s.strip() for s in cells[1].split("+")]
            if code in facts.facs:  # AU30 appears twice (left, right): merge
                facts.facs[code] = (facts.facs[code][0] + "; " + desc, facts.facs[code][1] + shapes)
            else:
                facts.facs[code] = (desc, shapes)
    facts.landmarks68 = _ints_after(lines, "Multi-PIE 68 point facial landmarks indices")
    facts.jawline_right = _ints_after(lines, "Right jawline (substitutes")
    facts.jawline_left = _ints_after(lines, "Left jawline (substitutes")
    facts.extended_right = _ints_after(lines, "Right extended jawline")
    facts.extended_left = _ints_after(lines, "Left extended jawline")
    return facts

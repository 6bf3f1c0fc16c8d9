"""Dataclass configs as checked records: fields that declare their limits, one check for them all,
and the dict form configs are stored in (mapper manifests, training checkpoints).

    @dataclass
    class Config(Record):
        RECORD = "mapper config"  # how errors name it
        hidden: int = bounded(256, 1, 4096)
        jaw_max: float = bounded(0.5, 0.0, math.pi)

`check_bounds` raises InputError naming the record, the field and its limits; an int field takes
integers only (never bools), a float field any finite real number.
"""

from __future__ import annotations

import math
from dataclasses import asdict, field, fields
from typing import Any, ClassVar

from faceedit_core.errors import InputError


def bounded(default: float, low: float, high: float) -> Any:
    """A dataclass field whose value must lie within [low, high]; an int default makes it an integer field."""
    return field(default=default, metadata={"bounds": (low, high)})


def field_bounds(cls, name: str) -> tuple[float, float, float]:
    """(default, low, high) of the bounded field `name` of the dataclass `cls`."""
    f = next(f for f in fields(cls) if f.name == name)
    return (f.default, *f.metadata["bounds"])


def bound_error(record, name: str) -> str | None:
    """Why the value of the bounded field `name` of `record` is out of bounds, or None."""
    default, low, high = field_bounds(type(record), name)
    v = getattr(record, name)
    integer = type(default) is int
    if isinstance(v, bool) or not isinstance(v, int if integer else (int, float)) or not math.isfinite(v):
        return f"must be {'an integer' if integer else 'a finite number'} within {low}..{high}, got {str(v)[:40]}"
    return None if low <= v <= high else f"= {v} is outside {low}..{high}"


def check_bounds(record, what: str) -> None:
    """InputError naming `what` and the first field of `record` outside its declared bounds."""
    for f in fields(record):
        if "bounds" in f.metadata and (why := bound_error(record, f.name)):
            raise InputError(f"{what} '{f.name}' {why}")


class Record:
    """Mixin for dataclass configs: `to_dict()` (tuples as lists, as JSON holds them),
    `from_dict(d)` (not a dict or unknown fields: InputError; then the bounds are checked) and
    `check()` (the bounds, returning the record)."""

    RECORD: ClassVar[str] = "config"

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict):
        if not isinstance(d, dict):
            raise InputError(f"{cls.RECORD} is not a dict")
        unknown = sorted(map(str, set(d) - {f.name for f in fields(cls)}))
        if unknown:
            raise InputError(f"{cls.RECORD} has unknown field(s) {unknown[:5]}")
        return cls(**d).check()

    def check(self):
        check_bounds(self, self.RECORD)
        return self

"""The batch spec: a TOML (or YAML, when PyYAML is installed) file -> `BatchSpec`.

    prompts = ["A person who is smiling", "raise brows slightly"]
    intensities = [0.5, 1.0]            # default [1.0]
    out = "out/batch"                   # default: beside the spec, <spec stem>_out; --out overrides

    [editor]                            # the head model every item uses (factory.build_editor)
    # models = "/data/models"           # a models folder (flame/ + next3d/ -> the paper tier)
    # flame = "generic_model.pkl"       # the user's FLAME -> the preview tier on that head
    # landmarks = "landmark_embedding.npy"  # with flame (default: found beside it); n_exp = 50
    device = "cpu"
    train_steps = 400                   # preview tier: Emotion Mapper steps (and train_batch)

    [[heads]]                           # the default head's identities: shape coefficients by seed
    seeds = [0, 1, 2]                   # or seeds = {start = 0, count = 100}
    components = 40                     # leading shape coefficients drawn N(0, scale^2)
    scale = 1.0
    [[heads]]
    params = ["faces/*.npz", "more/x.json"]   # FLAME parameter files (globs allowed)
    [[heads]]
    emoca = "emoca_out/*"               # EMOCA output folders (shape.npy, exp.npy, pose.npy)

    [[turntables]]                      # default: one, 8 views at 256 px
    views = 8
    size = 256
    pitch = 0.0
    yaw_range = [-180.0, 180.0]
    renderer = "preview"                # or "cycles": headless Blender workers (see blender.py)
    # samples = 16, blender_python = ".venv-blender/bin/python", blender_version = "5.0.1"

    [run]
    retries = 2                         # extra attempts for an item that failed for a transient reason
    workers = 0                         # local processes (0: one per core)
    num_cpus = 1                        # Ray: CPUs per item task (also torch threads in it)
    num_gpus = 0.0                      # Ray: GPUs per item task (fractions share a GPU)
    train_num_gpus = 0.0                # Ray: GPUs per training task
    resources = {}                      # Ray: custom resources per task, e.g. {"bpy-5.0.1" = 0.01}

Every error is a `SpecError` (an InputError) naming the file and the field: `spec.toml:
heads[1].seeds: ...`. Unknown keys are refused (with the closest known key), so a typo never
silently falls back to a default. Relative paths resolve against the spec's folder.
"""

from __future__ import annotations

import difflib
import glob
import math
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path

from faceedit_core.errors import InputError
from faceedit_core.storage.records import bounded, field_bounds
from faceedit_wire.limits import MAX_INTENSITY, MAX_VIEWS  # the limits the editor and the wire share (torch-free)

RENDERERS = ("preview", "cycles")


class SpecError(InputError):
    """A batch spec that cannot be run; the message names the file and the field."""


@dataclass(frozen=True)
class EditorSpec:
    """What `build_editor` gets: models folder (paper tier) or none (preview), the user's FLAME."""

    models: str | None = None
    flame: str | None = None
    landmarks: str | None = None
    n_exp: int | None = None
    device: str = "cpu"
    train_steps: int | None = None
    train_batch: int | None = None
    train_config: object = None  # a tier's training config given whole (faceedit train --prompts); overrides steps

    def options(self) -> dict:
        """build_editor's head options: only those given (so an older build_editor still works without them)."""
        return {k: v for k, v in (("flame", self.flame), ("landmarks", self.landmarks), ("n_exp", self.n_exp)) if v}


@dataclass(frozen=True)
class HeadSource:
    """One group of heads: kind 'seeds' (values: the seeds), 'params' or 'emoca' (values: paths)."""

    kind: str
    values: tuple
    components: int = bounded(40, 1, 10_000)
    scale: float = bounded(1.0, 0.0, 3.0)
    field: str = ""


@dataclass(frozen=True)
class TurntableSpec:
    views: int = bounded(8, 1, MAX_VIEWS)
    size: int = bounded(256, 16, 2048)
    pitch: float = bounded(0.0, -89.0, 89.0)
    yaw_range: tuple[float, float] = (-180.0, 180.0)
    renderer: str = "preview"
    samples: int = bounded(16, 1, 4096)
    blender_python: str | None = None
    blender_version: str = "5.0.1"

    def label(self) -> str:
        r = "" if self.renderer == "preview" else f"-{self.renderer}{self.samples}"
        return f"v{self.views}s{self.size}p{self.pitch:g}{r}"


@dataclass(frozen=True)
class RunSpec:
    retries: int = bounded(2, 0, 10)
    workers: int = bounded(0, 0, 1024)
    num_cpus: float = bounded(1.0, 0.01, 1024)
    num_gpus: float = bounded(0.0, 0.0, 64)
    train_num_gpus: float = bounded(0.0, 0.0, 64)
    resources: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class BatchSpec:
    path: Path
    prompts: tuple[str, ...]
    intensities: tuple[float, ...]
    heads: tuple[HeadSource, ...]
    turntables: tuple[TurntableSpec, ...]
    editor: EditorSpec = EditorSpec()
    run: RunSpec = RunSpec()
    out: Path | None = None


# ---------------------------------------------------------------------- reading
def read_spec_file(path: str | os.PathLike) -> dict:
    """The spec file's data: .toml always, .yaml/.yml when PyYAML is installed."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"batch spec {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".toml":
        try:
            return tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise SpecError(f"{path.name}: not valid TOML: {exc}") from exc
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise SpecError(
                f"{path.name}: YAML specs need PyYAML (pip install pyyaml); TOML works without it"
            ) from None
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise SpecError(f"{path.name}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise SpecError(f"{path.name}: the top level must be a mapping of keys, got {type(data).__name__}")
        return data
    raise SpecError(f"batch spec must end in .toml, .yaml or .yml, got '{path.name}'")


def load_spec(path: str | os.PathLike) -> BatchSpec:
    path = Path(path).resolve()
    return parse_spec(read_spec_file(path), path)


# ---------------------------------------------------------------------- checks
class _Fields:
    """Typed reads from one table with errors that name `file: where.key`."""

    def __init__(self, data, where: str, file: str, known: tuple[str, ...]):
        self.file, self.where = file, where
        if not isinstance(data, dict):
            self.fail("", f"must be a table of keys, got {type(data).__name__}")
        self.data = data
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(str(key), known, 1)
                hint = f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(known)})"
                self.fail(key, f"unknown key{hint}")

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where and key else (self.where or key)

    def fail(self, key: str, message: str):
        raise SpecError(f"{self.file}: {self.name(key) or 'top level'}: {message}")

    def has(self, key: str) -> bool:
        return key in self.data and self.data[key] is not None

    def int(self, key: str, default: int | None, lo: int, hi: int) -> int | None:
        v = self.data.get(key, default)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(key, f"expected an integer, got {v!r}")
        if not lo <= v <= hi:
            self.fail(key, f"{v} is outside {lo}..{hi}")
        return v

    def float(self, key: str, default: float, lo: float, hi: float) -> float:
        v = self.data.get(key, default)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            self.fail(key, f"expected a finite number, got {v!r}")
        if not lo <= v <= hi:
            self.fail(key, f"{v} is outside {lo}..{hi}")
        return float(v)

    def bounded(self, cls, key: str) -> int | float:
        """The bounded field `key` of the dataclass `cls` (storage.records.bounded); its default when absent."""
        default, lo, hi = field_bounds(cls, key)
        return self.int(key, default, lo, hi) if type(default) is int else self.float(key, default, lo, hi)

    def str(self, key: str, default: str | None, choices: tuple[str, ...] | None = None) -> str | None:
        v = self.data.get(key, default)
        if v is None:
            return None
        if not isinstance(v, str) or not v.strip():
            self.fail(key, f"expected a non-empty string, got {v!r}")
        if choices and v not in choices:
            self.fail(key, f"'{v}' is not one of {', '.join(choices)}")
        return v

    def list(self, key: str) -> list:
        v = self.data.get(key)
        if isinstance(v, (str, int, float)):
            v = [v]
        if not isinstance(v, list) or not v:
            self.fail(key, f"expected a non-empty list, got {v!r}")
        return v


def _resolve(base: Path, value: str) -> str:
    p = Path(os.path.expanduser(value))
    return str(p if p.is_absolute() else (base / p))


def _paths(f: _Fields, key: str, base: Path, want_dir: bool) -> tuple[str, ...]:
    out: list[str] = []
    for k, pattern in enumerate(f.list(key)):
        where = f"{key}[{k}]"
        if not isinstance(pattern, str) or not pattern:
            f.fail(where, f"expected a path or glob, got {pattern!r}")
        full = _resolve(base, pattern)
        matches = sorted(glob.glob(full)) if glob.has_magic(full) else ([full] if os.path.exists(full) else [])
        matches = [m for m in matches if (os.path.isdir(m) if want_dir else os.path.isfile(m))]
        if not matches:
            kind = "folder" if want_dir else "file"
            f.fail(where, f"no {kind} matches '{pattern}' (looked in {Path(full).parent})")
        out.extend(m for m in matches if m not in out)
    return tuple(out)


def _seeds(f: _Fields) -> tuple[int, ...]:
    v = f.data["seeds"]
    if isinstance(v, dict):
        r = _Fields(v, f.name("seeds"), f.file, ("start", "count"))
        start = r.int("start", 0, 0, 2**31 - 1)
        count = r.int("count", None, 1, 1_000_000)
        if count is None:
            r.fail("count", "is required (how many seeds from start)")
        return tuple(range(start, start + count))
    seeds = f.list("seeds")
    for k, s in enumerate(seeds):
        if isinstance(s, bool) or not isinstance(s, int) or s < 0:
            f.fail(f"seeds[{k}]", f"expected a non-negative integer, got {s!r}")
    if len(set(seeds)) != len(seeds):
        f.fail("seeds", "lists a seed twice")
    return tuple(seeds)


def parse_spec(data: dict, path: Path) -> BatchSpec:
    """The BatchSpec from read_spec_file's data; relative paths resolve against path's folder."""
    file, base = path.name, path.parent
    top = _Fields(data, "", file, ("version", "prompts", "intensities", "out", "editor", "heads", "turntables", "run"))
    top.int("version", 1, 1, 1)
    prompts = top.list("prompts") if "prompts" in data else top.fail("prompts", "is required (a list of prompts)")
    for k, p in enumerate(prompts):
        if not isinstance(p, str) or not p.strip():
            top.fail(f"prompts[{k}]", f"expected a non-empty string, got {p!r}")
    if len(set(prompts)) != len(prompts):
        top.fail("prompts", "lists a prompt twice")
    intensities = top.list("intensities") if "intensities" in data else [1.0]
    for k, s in enumerate(intensities):
        if isinstance(s, bool) or not isinstance(s, (int, float)) or not -MAX_INTENSITY <= s <= MAX_INTENSITY:
            top.fail(f"intensities[{k}]", f"expected a number within [-{MAX_INTENSITY}, {MAX_INTENSITY}], got {s!r}")
    if len(set(intensities)) != len(intensities):
        top.fail("intensities", "lists an intensity twice")
    out = top.str("out", None)

    e = _Fields(
        data.get("editor", {}),
        "editor",
        file,
        ("models", "flame", "landmarks", "n_exp", "device", "train_steps", "train_batch"),
    )
    models, flame, landmarks = e.str("models", None), e.str("flame", None), e.str("landmarks", None)
    if models is not None and not Path(_resolve(base, models)).is_dir():
        e.fail("models", f"folder {_resolve(base, models)} does not exist")
    for key, value in (("flame", flame), ("landmarks", landmarks)):
        if value is not None and not Path(_resolve(base, value)).is_file():
            e.fail(key, f"file {_resolve(base, value)} does not exist")
    if landmarks and not flame:
        e.fail("landmarks", "goes with editor.flame")
    editor = EditorSpec(
        models=_resolve(base, models) if models else None,
        flame=_resolve(base, flame) if flame else None,
        landmarks=_resolve(base, landmarks) if landmarks else None,
        n_exp=e.int("n_exp", None, 1, 400),
        device=e.str("device", "cpu", ("cpu", "cuda")),
        train_steps=e.int("train_steps", None, 10, 10_000_000),
        train_batch=e.int("train_batch", None, 1, 4096),
    )

    if "heads" not in data:
        top.fail("heads", "is required: [[heads]] tables with seeds, params or emoca")
    raw_heads = data["heads"] if isinstance(data["heads"], list) else [data["heads"]]
    if not raw_heads:
        top.fail("heads", "is empty")
    heads = []
    for k, raw in enumerate(raw_heads):
        h = _Fields(raw, f"heads[{k}]", file, ("seeds", "components", "scale", "params", "emoca"))
        kinds = [name for name in ("seeds", "params", "emoca") if h.has(name)]
        if len(kinds) != 1:
            h.fail("", f"needs exactly one of seeds, params, emoca (got {', '.join(kinds) or 'none'})")
        kind = kinds[0]
        if kind != "seeds" and (h.has("components") or h.has("scale")):
            h.fail("components" if h.has("components") else "scale", "only applies to seeds")
        if kind == "seeds":
            values = _seeds(h)
        else:
            values = _paths(h, kind, base, want_dir=kind == "emoca")
        heads.append(
            HeadSource(
                kind,
                values,
                components=h.bounded(HeadSource, "components"),
                scale=h.bounded(HeadSource, "scale"),
                field=h.where,
            )
        )

    raw_tts = data.get("turntables", [{}])
    raw_tts = raw_tts if isinstance(raw_tts, list) else [raw_tts]
    if not raw_tts:
        top.fail("turntables", "is empty (omit it for the default turntable)")
    turntables = []
    for k, raw in enumerate(raw_tts):
        t = _Fields(
            raw,
            f"turntables[{k}]",
            file,
            ("views", "size", "pitch", "yaw_range", "renderer", "samples", "blender_python", "blender_version"),
        )
        yaw = t.data.get("yaw_range", [-180.0, 180.0])
        if (
            not isinstance(yaw, list)
            or len(yaw) != 2
            or not all(isinstance(y, (int, float)) and not isinstance(y, bool) for y in yaw)
            or not -720 <= yaw[0] < yaw[1] <= 720
        ):
            t.fail("yaw_range", f"expected [lo, hi] degrees with lo < hi within -720..720, got {yaw!r}")
        renderer = t.str("renderer", "preview", RENDERERS)
        if renderer != "cycles":
            for key in ("samples", "blender_python", "blender_version"):
                if t.has(key):
                    t.fail(key, "only applies to renderer = 'cycles'")
        bp = t.str("blender_python", None)
        turntables.append(
            TurntableSpec(
                views=t.bounded(TurntableSpec, "views"),
                size=t.bounded(TurntableSpec, "size"),
                pitch=t.bounded(TurntableSpec, "pitch"),
                yaw_range=(float(yaw[0]), float(yaw[1])),
                renderer=renderer,
                samples=t.bounded(TurntableSpec, "samples"),
                blender_python=_resolve(base, bp) if bp else None,
                blender_version=t.str("blender_version", "5.0.1"),
            )
        )
    if len(set(turntables)) != len(turntables):
        top.fail("turntables", "lists the same turntable twice")

    r = _Fields(
        data.get("run", {}), "run", file, ("retries", "workers", "num_cpus", "num_gpus", "train_num_gpus", "resources")
    )
    resources = r.data.get("resources", {})
    if not isinstance(resources, dict) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
        for k, v in resources.items()
    ):
        r.fail("resources", f"expected a table of resource name = positive amount, got {resources!r}")
    run = RunSpec(
        **{key: r.bounded(RunSpec, key) for key in ("retries", "workers", "num_cpus", "num_gpus", "train_num_gpus")},
        resources=tuple(sorted((k, float(v)) for k, v in resources.items())),
    )
    if editor.device == "cpu" and (run.num_gpus or run.train_num_gpus):
        r.fail("num_gpus", "GPUs requested but editor.device is 'cpu' (set device = 'cuda')")
    if editor.device == "cuda" and not run.num_gpus:
        r.fail("num_gpus", "editor.device is 'cuda': give each item a GPU share, e.g. num_gpus = 0.25")
    return BatchSpec(
        path=path,
        prompts=tuple(p.strip() for p in prompts),
        intensities=tuple(float(s) for s in intensities),
        heads=tuple(heads),
        turntables=tuple(turntables),
        editor=editor,
        run=run,
        out=Path(_resolve(base, out)) if out else None,
    )

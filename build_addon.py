"""Build the FaceEdit Blender extension zip(s) without a Blender binary.

    python build_addon.py [--out dist] [--platforms all | linux-x64,windows-x64,macos-arm64,macos-x64]
    python build_addon.py --lock

Stages blender_addon/ into build/addon/faceedit/, copies the torch-free wire package
(faceedit_wire/, shared with the server: its single source) whole into its `wire/` package,
fetches unmodified pyzmq and msgpack wheels with pip for every Python that a supported Blender
embeds (3.11: Blender 4.2-5.0; 3.13: Blender 5.1+) and every platform asked for, each checked
against its sha256 in requirements/addon-wheels.txt (`--lock` rewrites that table), writes them
into the manifest and runs the extension builder that ships inside the bpy wheel
(`blender_ext.py build`; `--split-platforms` for several platforms: one zip per platform, as the
extension docs recommend, each holding only its own wheels). The builder is looked up in
.venv-blender or .venv-blender-313, or given with --blender-ext.
"""

from __future__ import annotations

import argparse
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
WHEELS = ("pyzmq==27.3.0", "msgpack==1.2.4")
# the bundled wheel files and their sha256, per platform and Python (`--lock` rewrites it)
WHEEL_TABLE = ROOT / "requirements" / "addon-wheels.txt"
# the Pythons Blender embeds: 3.11 in 4.2 LTS .. 5.0, 3.13 in 5.1 .. 5.2 LTS
PYTHONS = ("3.11", "3.13")
# Blender platform -> pip platform tags (pip also accepts the older manylinux/macOS tags they imply)
PIP_PLATFORMS = {
    "linux-x64": ["manylinux_2_28_x86_64"],
    "windows-x64": ["win_amd64"],
    "macos-arm64": ["macosx_11_0_arm64"],
    "macos-x64": ["macosx_10_15_x86_64"],
}
BLENDER_EXTS = (
    ".venv-blender/lib/python3.11/site-packages/bpy/5.0/scripts/addons_core/bl_pkg/cli/blender_ext.py",
    ".venv-blender-313/lib/python3.13/site-packages/bpy/5.2/scripts/addons_core/bl_pkg/cli/blender_ext.py",
)


def current_platform() -> str:
    import platform

    machine = platform.machine().lower()
    arch = "arm64" if machine in ("arm64", "aarch64") else "x64"
    system = {"darwin": "macos", "win32": "windows"}.get(sys.platform, "linux")
    return f"{system}-{arch}"


def stage(stage_dir: Path) -> Path:
    """blender_addon/ + faceedit_wire/ (as wire/) -> stage_dir/faceedit (a fresh copy)."""
    pkg = stage_dir / "faceedit"
    if pkg.exists():
        shutil.rmtree(pkg)
    shutil.copytree(ROOT / "blender_addon", pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "wheels"))
    shutil.copytree(ROOT / "faceedit_wire", pkg / "wire", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return pkg


def wheel_table(path: Path = WHEEL_TABLE) -> dict[tuple[str, str, str], tuple[str, str]]:
    """requirements/addon-wheels.txt -> {(platform, python, distribution): (wheel file, sha256)}."""
    table = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) != 4 or not re.fullmatch(r"sha256:[0-9a-f]{64}", fields[3]):
            raise SystemExit(f"build_addon: {path}:{number}: expected 'PLATFORM PYTHON WHEEL sha256:HEX', got {line!r}")
        plat, python, wheel, digest = fields
        if (plat, python, wheel.split("-")[0]) in table:
            raise SystemExit(
                f"build_addon: {path}:{number}: a second {wheel.split('-')[0]} wheel for {plat}, Python {python}"
            )
        table[(plat, python, wheel.split("-")[0])] = (wheel, digest.removeprefix("sha256:"))
    return table


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pip_download(plat: str, python: str, specs: list[str], dest: Path) -> None:
    """pip download the `specs` (requirement lines, hashes included) for one platform and Python into dest."""
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "requirements.txt").write_text("".join(f"{spec}\n" for spec in specs))
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--only-binary=:all:", "--no-deps", "--python-version"]
    cmd += [python, "--implementation", "cp", "-d", str(dest), "-r", str(dest / "requirements.txt")]
    for tag in PIP_PLATFORMS[plat]:
        cmd += ["--platform", tag]
    if any("--hash=" in spec for spec in specs):
        cmd.append("--require-hashes")
    if subprocess.run(cmd).returncode:
        raise SystemExit(
            f"build_addon: pip could not fetch the {plat}, Python {python} wheels {specs} (a hash that differs "
            f"from {WHEEL_TABLE.name} shows above as 'THESE PACKAGES DO NOT MATCH THE HASHES')"
        )


def fetch_wheels(pkg: Path, platforms: list[str], cache: Path) -> list[str]:
    """pip download the wheels of requirements/addon-wheels.txt for each platform and Python, each checked
    against its sha256 there -> their paths relative to the package."""
    table = wheel_table()
    (pkg / "wheels").mkdir(exist_ok=True)
    names = []
    for plat, python in ((p, v) for p in platforms for v in PYTHONS):
        dest = cache / f"{plat}-py{python}"
        rows = {spec: table.get((plat, python, spec.split("==")[0])) for spec in WHEELS}
        missing = [spec for spec, row in rows.items() if row is None]
        if missing:
            raise SystemExit(f"build_addon: {WHEEL_TABLE} has no {plat}, Python {python} wheel for {missing}")
        pip_download(plat, python, [f"{spec} --hash=sha256:{digest}" for spec, (_, digest) in rows.items()], dest)
        for spec, (wheel, _) in rows.items():
            path = dest / wheel
            if not path.is_file():
                raise SystemExit(
                    f"build_addon: pip did not fetch {wheel} ({spec}, {plat}, Python {python}) into {dest}"
                )
            shutil.copy2(path, pkg / "wheels" / wheel)
            names.append(f"./wheels/{wheel}")
    return list(dict.fromkeys(names))  # one universal2 pyzmq wheel serves both macOS platforms


def lock_wheels(scratch: Path) -> None:
    """Rewrite requirements/addon-wheels.txt (its comment lines kept) from a fresh pip download of WHEELS for
    every platform and Python (nothing to check them against yet: review the diff)."""
    lines = [line for line in WHEEL_TABLE.read_text().splitlines() if line.startswith("#")]
    for plat, python in ((p, v) for p in PIP_PLATFORMS for v in PYTHONS):
        dest = scratch / f"{plat}-py{python}"
        pip_download(plat, python, list(WHEELS), dest)
        for spec in WHEELS:
            dist, version = spec.split("==")
            found = sorted(dest.glob(f"{dist}-{version}-*.whl"))
            if len(found) != 1:
                raise SystemExit(f"build_addon: expected one {spec} wheel for {plat}, Python {python}, got {found}")
            lines.append(f"{plat} {python} {found[0].name} sha256:{sha256(found[0])}")
    WHEEL_TABLE.write_text("\n".join(lines) + "\n")


def write_manifest(pkg: Path, wheels: list[str], platforms: list[str]) -> None:
    text = (pkg / "blender_manifest.toml").read_text()
    listed = lambda items: "[" + ", ".join(f'"{i}"' for i in items) + "]"  # noqa: E731
    extra = f"wheels = {listed(wheels)}\nplatforms = {listed(platforms)}\n"
    head, sep, tail = text.partition("\n[permissions]")
    (pkg / "blender_manifest.toml").write_text(head.rstrip() + "\n\n" + extra + sep + tail)


def find_blender_ext(given: str | None) -> Path:
    if given:
        path = Path(given)
    else:
        path = next((ROOT / p for p in BLENDER_EXTS if (ROOT / p).is_file()), ROOT / BLENDER_EXTS[0])
    if not path.is_file():
        raise SystemExit(
            f"build_addon: the extension builder {path} is missing: create .venv-blender "
            f"(`make blender-venv`: python3.11 -m venv .venv-blender && .venv-blender/bin/pip install "
            f"--require-hashes -r requirements/blender-cp311.txt) or pass --blender-ext PATH/TO/blender_ext.py"
        )
    return path


def build(out: Path, platforms: list[str], blender_ext: Path, work: Path = ROOT / "build" / "addon") -> list[Path]:
    """-> the built zips (one per platform)."""
    pkg = stage(work)
    write_manifest(pkg, fetch_wheels(pkg, platforms, work / "wheel-cache"), platforms)
    out.mkdir(parents=True, exist_ok=True)
    before = set(out.glob("faceedit-*.zip"))
    for old in before:
        old.unlink()
    cmd = [sys.executable, str(blender_ext), "build", "--source-dir", str(pkg), "--output-dir", str(out)]
    if len(platforms) > 1:
        cmd.append("--split-platforms")
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    zips = sorted(out.glob("faceedit-*.zip"))
    if not zips:
        raise SystemExit(f"build_addon: the builder wrote no zip into {out}")
    return zips


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "dist"), help="folder for the zip(s)")
    ap.add_argument(
        "--platforms",
        default=current_platform(),
        help=f"'all' or comma-separated, of {', '.join(PIP_PLATFORMS)} (default: this machine's)",
    )
    ap.add_argument("--blender-ext", default=None, help="path to blender_ext.py (default: from .venv-blender)")
    ap.add_argument("--lock", action="store_true", help=f"only rewrite {WHEEL_TABLE.name} from a fresh download")
    ns = ap.parse_args(argv)
    if ns.lock:
        with tempfile.TemporaryDirectory() as scratch:
            lock_wheels(Path(scratch))
        print(WHEEL_TABLE)
        return 0
    platforms = (
        list(PIP_PLATFORMS) if ns.platforms == "all" else [p.strip() for p in ns.platforms.split(",") if p.strip()]
    )
    unknown = [p for p in platforms if p not in PIP_PLATFORMS]
    if unknown:
        raise SystemExit(f"build_addon: unknown platform(s) {unknown}; known: {', '.join(PIP_PLATFORMS)}")
    for z in build(Path(ns.out), platforms, find_blender_ext(ns.blender_ext)):
        print(z)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""build_addon.py --platforms all: one zip per platform, each with the pyzmq and msgpack wheels for
both Pythons Blender embeds (3.11: Blender 4.2-5.0; 3.13: 5.1+) and only its own platform's."""

from __future__ import annotations

import tomllib
import zipfile

import pytest

import build_addon
from tests.blender_addon.conftest import BLENDERS

TAGS = {  # the wheel platform tags each Blender platform may carry
    "linux-x64": ("manylinux",),
    "windows-x64": ("win_amd64",),
    "macos-arm64": ("macosx_11_0_arm64", "universal2"),
    "macos-x64": ("x86_64", "universal2"),
}
pytestmark = [pytest.mark.blender, pytest.mark.slow]


@pytest.fixture(scope="module")
def zips(tmp_path_factory):
    if not any(b.python.exists() for b in BLENDERS):
        pytest.skip("no bpy environment (its extension builder builds the zips): `make blender-venvs`")
    tmp = tmp_path_factory.mktemp("build-all")
    return build_addon.build(
        tmp / "dist", list(build_addon.PIP_PLATFORMS), build_addon.find_blender_ext(None), work=tmp / "stage"
    )


def test_one_zip_per_platform_with_wheels_for_python_311_and_313(zips):
    assert sorted(z.name for z in zips) == [
        "faceedit-0.1.0-linux_x64.zip",
        "faceedit-0.1.0-macos_arm64.zip",
        "faceedit-0.1.0-macos_x64.zip",
        "faceedit-0.1.0-windows_x64.zip",
    ]
    for z in zips:
        platform = z.stem.rsplit("-", 1)[1].replace("_", "-")
        with zipfile.ZipFile(z) as f:
            manifest = tomllib.loads(f.read("blender_manifest.toml").decode())
            files = set(f.namelist())
        generated = manifest.get("build", {}).get("generated", {})
        assert generated.get("platforms", manifest.get("platforms")) == [platform], z.name
        wheels = generated.get("wheels", manifest.get("wheels"))
        assert all(w.removeprefix("./") in files for w in wheels)
        names = [w.rsplit("/", 1)[1] for w in wheels]
        assert all(any(t in n for t in TAGS[platform]) for n in names), (z.name, names)  # its own platform only
        for dist in ("pyzmq", "msgpack"):
            mine = [n for n in names if n.startswith(dist + "-")]
            # 3.11: a cp311 wheel; 3.13: cp313, or the stable ABI from 3.12 (pyzmq's cp312-abi3)
            assert any("-cp311-cp311-" in n for n in mine), (z.name, dist, mine)
            assert any("-cp313-cp313-" in n or "-cp312-abi3-" in n for n in mine), (z.name, dist, mine)
        assert manifest["blender_version_min"] == "4.2.0"

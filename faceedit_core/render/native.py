"""The rasteriser's C kernels (`native/raster.c`): built by the system C compiler at first use,
cached under FACEEDIT_HOME/native/, loaded with ctypes.

The PyTorch paths they stand in for (the z-buffer of `rasterize._coverage`, the covered pixels of
`rasterize._covered_faces`, the shading and resolve of `preview._resolve_planes`) make a pass
through memory per torch op, about twenty per candidate pixel in the z-buffer; a kernel makes one,
in cache, and runs without the GIL, so the batch pool's workers work side by side. Each computes
the same float32 steps in the same order as its PyTorch path, so both give the same bits
(docs/rendering.md has the figures).

No compiler on PATH (or $CC), a failed build, a cache folder that cannot be written, or
FACEEDIT_NATIVE=0: `library()` is None, logged once, and the PyTorch path runs, with the same
images, more slowly. The build is keyed by the source, the compiler and its flags, so an edited
kernel or another compiler builds anew; the file is written atomically, so processes building at
once cannot leave a torn library.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import logging
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from faceedit_core.storage.atomic import atomic_write_bytes
from faceedit_core.storage.home import faceedit_home

log = logging.getLogger(__name__)

SOURCE = Path(__file__).with_name("native") / "raster.c"
FLAGS = ("-O2", "-std=c99", "-shared", "-fPIC", "-ffp-contract=off")  # fuse only where the source says (MADD)
BUILD_TIMEOUT_S = 120


@functools.cache
def library() -> ctypes.CDLL | None:
    """The loaded kernels (argument types set), or None where they cannot be had."""
    if os.environ.get("FACEEDIT_NATIVE", "1") == "0":
        log.info("FACEEDIT_NATIVE=0: the rasteriser runs its PyTorch path")
        return None
    try:
        lib = ctypes.CDLL(str(_built()))
    except (OSError, subprocess.SubprocessError) as exc:
        log.warning("the rasteriser's C kernels are unavailable (%s): its PyTorch path runs, more slowly", exc)
        return None
    ptr, i64 = ctypes.c_void_p, ctypes.c_int64
    lib.faceedit_coverage.argtypes = [ptr, i64, i64, i64, i64, ctypes.c_int32, ctypes.c_float, ptr]
    lib.faceedit_coverage.restype = None
    lib.faceedit_covered.argtypes = [ptr, i64, i64, ptr, ptr]
    lib.faceedit_covered.restype = i64
    lib.faceedit_resolve_planes.argtypes = [ptr, ptr, i64, ptr, i64, i64, i64, i64, i64, ptr]
    lib.faceedit_resolve_planes.restype = None
    return lib


def _compiler() -> list[str]:
    """The compiler's command: $CC (split as a shell would: "ccache gcc" works), else cc, gcc or clang."""
    found = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if not found:
        raise OSError("no C compiler on PATH (cc, gcc or clang; or set CC)")
    return shlex.split(found)


def _torch_fuses_multiply_add() -> bool:
    """Whether this torch's CPU torch.addcmul rounds a + b * c once (its AVX2/AVX512 kernels use FMA)
    or twice: found on values where the two differ."""
    a, b, c = torch.tensor([-1.0]), torch.tensor([1.0 + 2.0**-23]), torch.tensor([1.0 - 2.0**-23])  # b c = 1 - 2^-46
    return torch.addcmul(a, b, c).item() != (a + b * c).item()


def _flags() -> list[str]:
    fused = _torch_fuses_multiply_add()
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    return [*FLAGS, f"-DFACEEDIT_FUSED={int(fused)}", *(["-mfma"] if fused and x86 else [])]


def _built() -> Path:
    """Path of the built library: from the cache, or compiled now."""
    compiler, flags = _compiler(), _flags()
    source = SOURCE.read_bytes()
    words = [" ".join(compiler), " ".join(flags), platform.machine()]
    key = hashlib.sha256(b"\0".join([source, *(w.encode() for w in words)]))
    path = faceedit_home() / "native" / f"raster-{key.hexdigest()[:16]}{'.dll' if sys.platform == 'win32' else '.so'}"
    if path.exists():
        return path
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / path.name
        done = subprocess.run(
            [*compiler, *flags, "-o", str(out), str(SOURCE), "-lm"],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
        )
        if done.returncode != 0:
            raise OSError(f"{' '.join(compiler)} failed to build {SOURCE.name}: {done.stderr.strip()[-800:]}")
        atomic_write_bytes(path, out.read_bytes())
    log.info("built the rasteriser's C kernels: %s", path)
    return path

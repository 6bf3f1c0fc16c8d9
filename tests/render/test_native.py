"""The rasteriser's C kernel (render/native.py): built where a compiler is, the same z-buffer as the
PyTorch path bit for bit, and the PyTorch path wherever it cannot be had."""

import shutil

import numpy as np
import pytest
import torch

from faceedit_core.render import native
from faceedit_core.render import rasterize as raster

HAVE_CC = bool(shutil.which("cc") or shutil.which("gcc") or shutil.which("clang"))


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """library() with an empty cache of its own: the kernel is built (or not) anew."""
    monkeypatch.setenv("FACEEDIT_HOME", str(tmp_path))
    native.library.cache_clear()
    yield tmp_path
    native.library.cache_clear()


def z_buffer(tri, F, H, W, cull, lib):
    """keys [tri.shape[2] // F * H * W] of `_coverage` with the kernel (lib) or without (None)."""
    keys = torch.empty(tri.shape[2] // F * H * W, dtype=torch.long)
    original = native.library
    native.library = lambda: lib
    try:
        raster._coverage(tri, F, H, W, cull, keys, raster.CHUNK)
    finally:
        native.library = original
    return keys


def overlapping_views(seed, n_faces=300, n_images=3, H=48, W=64):
    """tri [4,3,n_images*n_faces] of random triangles over several images: overlapping, some
    large, some off screen, some with corners in front of the near plane or behind the eye."""
    rng = np.random.default_rng(seed)
    clip = rng.uniform(-1.2, 1.2, size=(n_images, 3 * n_faces, 4)).astype(np.float32)
    clip[..., 2] = rng.uniform(-1.3, 0.95, size=clip.shape[:2])
    clip[..., 3] = rng.uniform(0.6, 1.4, size=clip.shape[:2])
    clip[:, :9, 3] = -0.5  # three triangles with a corner behind the eye
    clip[:, 9:30, :2] *= 8  # and seven far larger than the frame
    faces = torch.arange(3 * n_faces).reshape(-1, 3)
    tri = raster.face_corners(torch.from_numpy(clip), faces, H, W)  # [4,B,3,F]
    return tri.transpose(1, 2).reshape(4, 3, -1), n_faces, H, W


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler (cc, gcc, clang) on PATH: the PyTorch path runs instead")
def test_the_kernel_is_built_and_cached_where_a_compiler_is(fresh_build):
    lib = native.library()
    assert lib is not None
    built = list((fresh_build / "native").glob("raster-*"))
    assert len(built) == 1 and not list((fresh_build / "native").glob(".*tmp"))


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler (cc, gcc, clang) on PATH: the PyTorch path runs instead")
@pytest.mark.parametrize("cull", [False, True])
@pytest.mark.parametrize("seed", [0, 1])
def test_the_kernel_fills_the_same_z_buffer_as_the_pytorch_path(seed, cull):
    tri, F, H, W = overlapping_views(seed)
    lib = native.library()
    ours, torch_path = z_buffer(tri, F, H, W, cull, lib), z_buffer(tri, F, H, W, cull, None)
    assert torch.equal(ours, torch_path)
    assert (ours != raster._NO_HIT).float().mean() > 0.5  # a busy frame, not an empty one


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler (cc, gcc, clang) on PATH: the PyTorch path runs instead")
def test_the_kernel_equals_the_pytorch_path_on_the_default_head():
    """Depth bits included: the kernel rounds its multiply-adds as this torch's addcmul does."""
    from faceedit_core.flame.ict import load_ict_head
    from faceedit_core.flame.layer import FlameLayer
    from faceedit_core.params import FlameParams
    from faceedit_core.render.cameras import flame_to_world, turntable

    head = load_ict_head("semantic")
    layer = FlameLayer(head.model, head.landmarks)
    with torch.no_grad():
        verts = layer(FlameParams.zeros(1, layer.n_shape, layer.n_exp)).vertices
    clip = turntable(3).project(flame_to_world(verts[0]))
    faces = torch.as_tensor(head.model.f, dtype=torch.long)
    tri = raster.face_corners(clip, faces, 384, 384).transpose(1, 2).reshape(4, 3, -1)
    lib = native.library()
    ours = z_buffer(tri, len(faces), 384, 384, True, lib)
    assert torch.equal(ours, z_buffer(tri, len(faces), 384, 384, True, None))
    assert (ours != raster._NO_HIT).sum() > 3 * 20000


def test_without_a_compiler_the_pytorch_path_runs(fresh_build, monkeypatch, caplog):
    monkeypatch.setenv("CC", str(fresh_build / "no-such-compiler"))
    assert native.library() is None
    assert "C kernels are unavailable" in caplog.text and "no-such-compiler" in caplog.text
    clip = torch.tensor([[[-1.0, 1.0, 0.5, 1.0], [1.0, 1.0, 0.5, 1.0], [-1.0, -1.0, 0.5, 1.0]]])
    frags = raster.rasterize(clip, torch.tensor([[0, 1, 2]]), (8, 8))
    i, j = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    assert np.array_equal(frags.mask[0].numpy(), (j + 0.5) + (i + 0.5) <= 8)


def test_faceedit_native_0_turns_the_kernel_off(fresh_build, monkeypatch):
    monkeypatch.setenv("FACEEDIT_NATIVE", "0")
    assert native.library() is None
    assert not (fresh_build / "native").exists()


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler (cc, gcc, clang) on PATH: the PyTorch path runs instead")
def test_a_failed_build_says_what_the_compiler_said_and_leaves_nothing(fresh_build, monkeypatch, tmp_path_factory):
    bad = tmp_path_factory.mktemp("src") / "raster.c"
    bad.write_text("void faceedit_coverage(void) { this is not C; }\n")
    monkeypatch.setattr(native, "SOURCE", bad)
    with pytest.raises(OSError, match="(?s)failed to build raster.c: .*error"):
        native._built()
    assert not (fresh_build / "native").exists() or not list((fresh_build / "native").iterdir())


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler (cc, gcc, clang) on PATH: the PyTorch path runs instead")
def test_a_built_kernel_is_reused_and_an_edited_one_rebuilt(fresh_build, monkeypatch, tmp_path_factory):
    first = native._built()

    def no_compiler(*args, **kwargs):
        raise AssertionError("the cached kernel should have been used")

    monkeypatch.setattr(native.subprocess, "run", no_compiler)
    assert native._built() == first
    monkeypatch.undo()
    monkeypatch.setenv("FACEEDIT_HOME", str(fresh_build))
    edited = tmp_path_factory.mktemp("src") / "raster.c"
    edited.write_text(native.SOURCE.read_text() + "\n/* edited */\n")
    monkeypatch.setattr(native, "SOURCE", edited)
    assert native._built() != first and first.exists()


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler (cc, gcc, clang) on PATH: the PyTorch path runs instead")
def test_the_kernels_render_the_default_head_exactly_as_the_pytorch_path(monkeypatch):
    """Coverage, covered pixels, shading and resolve together: a turntable and a single view (on the
    caller's thread), mouth open, bit for bit."""
    from faceedit_core.flame.ict import load_ict_head
    from faceedit_core.flame.layer import FlameLayer
    from faceedit_core.params import FlameParams
    from faceedit_core.render.cameras import turntable
    from faceedit_core.render.ict_materials import preview_renderer

    head = load_ict_head("semantic")
    layer, renderer = FlameLayer(head.model, head.landmarks), preview_renderer(head)
    params = FlameParams.zeros(1, layer.n_shape, layer.n_exp)
    params.jaw_pose[:, 0], params.expression[:, :12] = 0.3, 0.6
    with torch.no_grad():
        verts = layer(params).vertices
    assert native.library() is not None
    ours = [renderer.render(verts, turntable(n), 160) for n in (3, 1)]
    monkeypatch.setattr(native, "library", lambda: None)
    for image, n in zip(ours, (3, 1)):
        assert torch.equal(image, renderer.render(verts, turntable(n), 160))
        assert (image[..., 3] > 0).float().mean() > 0.15


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler (cc, gcc, clang) on PATH: the PyTorch path runs instead")
@pytest.mark.parametrize("s", [2, 3])
def test_covered_pixels_and_resolve_match_the_pytorch_path_at_any_size(s, monkeypatch):
    from faceedit_core.render.preview import _resolve_planes

    tri, F, H, W = overlapping_views(3, n_faces=60, n_images=1, H=7 * s, W=11 * s)
    x = 0.3 + 0.35 * torch.tanh(tri[0] / W * 2 - 1)  # the left of the frame stays background
    clip = torch.stack([x, 1 - tri[1] / H * 2, tri[2], torch.ones_like(tri[2])], -1)  # [3,F,4]
    views = clip.transpose(0, 1).reshape(1, -1, 4)  # corner by corner back to vertices
    faces = torch.arange(3 * F).view(F, 3)
    colours = torch.rand(9, F, generator=torch.Generator().manual_seed(s)) * 0.4 - 0.1  # over and under [0,1]
    got = {}
    for path in ("native", "torch"):
        if path == "torch":
            monkeypatch.setattr(native, "library", lambda: None)
        (covered,) = raster.rasterize(views, faces, (H, W), frames=False, barycentrics=False)
        out = torch.full((H // s, W // s, 4), float("nan"))
        got[path] = covered, _resolve_planes(covered, colours, s, out)
    (a, image), (b, reference) = got["native"], got["torch"]
    assert torch.equal(a.hit, b.hit) and torch.equal(a.face, b.face) and len(a.hit) > H * W // 5
    assert torch.equal(image, reference) and not image.isnan().any()
    assert ((image[..., :3] == 0) | (image[..., :3] == 1)).any() and (image[..., 3] == 0).any()


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler (cc, gcc, clang) on PATH: the PyTorch path runs instead")
def test_a_cache_folder_that_cannot_be_written_leaves_the_pytorch_path(fresh_build, monkeypatch, caplog):
    blocked = fresh_build / "a-file-not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv("FACEEDIT_HOME", str(blocked))
    assert native.library() is None
    assert "C kernels are unavailable" in caplog.text


@pytest.mark.skipif(not HAVE_CC, reason="no C compiler (cc, gcc, clang) on PATH: the PyTorch path runs instead")
def test_the_kernels_refuse_buffers_of_the_wrong_size_instead_of_writing_past_them():
    from faceedit_core.errors import InputError
    from faceedit_core.render.preview import _resolve_planes

    assert native.library() is not None
    tri, F, H, W = overlapping_views(4, n_faces=20, n_images=2, H=16, W=20)
    with pytest.raises(InputError, match="z-buffer of 320 keys for 40 triangles"):
        raster._coverage(tri, F, H, W, False, torch.empty(H * W, dtype=torch.long), raster.CHUNK)
    covered = raster.Covered(torch.tensor([0, 5]), torch.tensor([0, 1]), None, None, (16, 20))
    with pytest.raises(InputError, match=r"out must be \[H/s,W/s,4\]"):
        _resolve_planes(covered, torch.zeros(9, 2), 2, torch.empty(7, 10, 4))
    with pytest.raises(InputError, match=r"resolve of 16x20 samples at 3x"):
        _resolve_planes(covered, torch.zeros(9, 2), 3, torch.empty(5, 6, 4))

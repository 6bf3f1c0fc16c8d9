"""The PyTorch rasteriser against a brute-force per-pixel z-buffer and analytic cases."""

import math
import threading

import numpy as np
import pytest
import torch

from faceedit_core.errors import InputError
from faceedit_core.render.rasterize import face_corners, interpolate, interpolate_screen, rasterize, screen_planes


@pytest.fixture(params=["native", "torch"])
def coverage_path(request, monkeypatch):
    """A coverage test runs twice: on the C kernel (render/native.py) and on the PyTorch path."""
    from faceedit_core.render import native

    if request.param == "torch":
        monkeypatch.setattr(native, "library", lambda: None)
    elif native.library() is None:
        pytest.skip("no C compiler here to build the kernel (tests/render/test_native.py says why)")
    return request.param


def brute_force(clip, faces, H, W, cull=False):
    """Per-pixel loop over every triangle: the reference the fast path must equal."""
    ndc = clip[:, :3] / clip[:, 3:4]
    px = (ndc[:, 0] + 1) * 0.5 * W
    py = (1 - ndc[:, 1]) * 0.5 * H
    face_id = -np.ones((H, W), int)
    zbuf = np.full((H, W), np.inf)
    for f, (a, b, c) in enumerate(faces):
        X, Y, Z = px[[a, b, c]], py[[a, b, c]], ndc[[a, b, c], 2]
        area = (X[1] - X[0]) * (Y[2] - Y[0]) - (X[2] - X[0]) * (Y[1] - Y[0])
        if abs(area) < 1e-12 or (cull and area >= 0):
            continue
        for i in range(H):
            for j in range(W):
                sx, sy = j + 0.5, i + 0.5
                e = [
                    (X[2] - X[1]) * (sy - Y[1]) - (Y[2] - Y[1]) * (sx - X[1]),
                    (X[0] - X[2]) * (sy - Y[2]) - (Y[0] - Y[2]) * (sx - X[2]),
                    (X[1] - X[0]) * (sy - Y[0]) - (Y[1] - Y[0]) * (sx - X[0]),
                ]
                bary = np.array(e) / area
                if (bary >= 0).all():
                    z = bary @ Z
                    if z < zbuf[i, j]:
                        zbuf[i, j], face_id[i, j] = z, f
    return face_id


def random_mesh(seed, n_faces=25):
    rng = np.random.default_rng(seed)
    verts = rng.uniform(-1, 1, size=(3 * n_faces, 3)).astype(np.float32)
    verts[:, 2] = rng.uniform(0.1, 0.9, size=3 * n_faces)
    clip = np.concatenate([verts, np.ones((len(verts), 1), np.float32)], 1)
    return clip, np.arange(3 * n_faces).reshape(-1, 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("cull", [False, True])
@pytest.mark.usefixtures("coverage_path")
def test_matches_brute_force_z_buffer(seed, cull):
    clip, faces = random_mesh(seed)
    ours = rasterize(torch.from_numpy(clip)[None], torch.from_numpy(faces), (24, 32), cull_backfaces=cull).face_id[0]
    ref = brute_force(clip, faces, 24, 32, cull)
    # pixels exactly on a shared edge may go to either triangle; nothing else may differ
    assert (ours.numpy() != ref).mean() < 0.01


@pytest.mark.usefixtures("coverage_path")
def test_triangle_covered_pixels_are_the_analytic_set():
    # right triangle with vertices on pixel-grid lines: covers pixel centres with x + y < 8 on an 8x8 image
    clip = torch.tensor([[[-1.0, 1.0, 0.5, 1.0], [1.0, 1.0, 0.5, 1.0], [-1.0, -1.0, 0.5, 1.0]]])
    frags = rasterize(clip, torch.tensor([[0, 1, 2]]), (8, 8))
    i, j = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    expected = (j + 0.5) + (i + 0.5) <= 8
    assert np.array_equal(frags.mask[0].numpy(), expected)


@pytest.mark.usefixtures("coverage_path")
def test_cube_silhouette_area():
    # unit cube rotated 45 degrees about y under an orthographic view: silhouette sqrt(2) x 1
    s = 0.5
    corners = torch.tensor([[x, y, z] for x in (-s, s) for y in (-s, s) for z in (-s, s)], dtype=torch.float32)
    a = math.radians(45)
    R = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    v = corners @ R.T
    quads = torch.tensor([[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]])
    faces = quads[:, [0, 1, 2, 0, 2, 3]].reshape(12, 3)  # each quad as two triangles
    clip = torch.cat([v, torch.ones(8, 1)], 1)
    clip[:, 2] = (v[:, 2] + 1) / 2
    size = 200
    frags = rasterize(clip[None], faces, (size, size))
    area = frags.mask.float().sum().item() * (2 / size) ** 2
    assert area == pytest.approx(math.sqrt(2) * 1.0, rel=0.02)


@pytest.mark.usefixtures("coverage_path")
def test_nearer_triangle_wins_and_depth_interpolates():
    near = [[-1, -1, 0.2, 1], [1, -1, 0.2, 1], [0, 1, 0.2, 1]]
    far = [[-1, -1, 0.6, 1], [1, -1, 0.6, 1], [0, 1, 0.6, 1]]
    clip = torch.tensor([far + near], dtype=torch.float32)
    frags = rasterize(clip, torch.tensor([[0, 1, 2], [3, 4, 5]]), (16, 16))
    covered = frags.mask[0]
    assert (frags.face_id[0][covered] == 1).all()
    torch.testing.assert_close(frags.depth[0][covered], torch.full_like(frags.depth[0][covered], 0.2))


def test_interpolation_gradients_reach_vertices():
    clip = torch.tensor([[[-0.8, -0.8, 0.5, 1.0], [0.8, -0.8, 0.5, 1.0], [0.0, 0.8, 0.5, 1.0]]], requires_grad=True)
    colours = torch.tensor([[[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]]])
    frags = rasterize(clip, torch.tensor([[0, 1, 2]]), (16, 16))
    img = interpolate(colours, frags, torch.tensor([[0, 1, 2]]))
    img[..., 0].sum().backward()
    assert clip.grad is not None and clip.grad[0, :, :2].abs().sum() > 0
    # barycentrics sum to one on covered pixels; interpolated colours too
    torch.testing.assert_close(img[0][frags.mask[0]].sum(-1), torch.ones(int(frags.mask.sum())))


def test_perspective_correct_barycentrics():
    # a quad receding in depth: the screen midpoint of its far edge pair is not the 3-D midpoint
    clip = torch.tensor([[[-1, -1, 0.1, 1.0], [1, -1, 0.1, 1.0], [-1, 1, 0.5, 4.0], [1, 1, 0.5, 4.0]]])
    clip[0, 2:, :3] *= 4.0  # homogeneous: the far edge has w = 4
    faces = torch.tensor([[0, 1, 3], [0, 3, 2]])
    frags = rasterize(clip, faces, (32, 32))
    t = interpolate(torch.tensor([[[0.0], [0.0], [1.0], [1.0]]]), frags, faces)[0, :, 16, 0]
    # row 16's centre is at ndc y = -1/32; along the quad ndc y = (-1 + 5t) / (1 + 3t), so t = 0.19 there
    # (screen-linear interpolation would give 0.48)
    assert t[16].item() == pytest.approx(0.969 / 5.094, abs=0.01)


def test_bad_input_is_named():
    with pytest.raises(InputError, match=r"\[B,V,4\]"):
        rasterize(torch.zeros(1, 3, 3), torch.tensor([[0, 1, 2]]), (8, 8))
    with pytest.raises(InputError, match="outside 1..4096"):
        rasterize(torch.zeros(1, 3, 4), torch.tensor([[0, 1, 2]]), (0, 8))


@pytest.mark.usefixtures("coverage_path")
def test_a_mesh_without_faces_covers_nothing():
    clip = torch.rand(2, 5, 4) + 0.5
    none = torch.zeros(0, 3, dtype=torch.long)
    assert not rasterize(clip, none, (8, 8)).mask.any()
    assert [len(c.hit) for c in rasterize(clip, none, (8, 8), frames=False, barycentrics=False)] == [0, 0]


@pytest.mark.usefixtures("coverage_path")
def test_equal_depths_go_to_the_lower_face_id():
    # two coplanar copies of a triangle: the brute force keeps the first one drawn, and so must we
    tri = [[-0.9, -0.9, 0.4, 1.0], [0.9, -0.9, 0.4, 1.0], [0.0, 0.9, 0.4, 1.0]]
    frags = rasterize(torch.tensor([tri + tri]), torch.tensor([[3, 4, 5], [0, 1, 2]]), (16, 16))
    assert frags.mask.sum() > 50 and (frags.face_id[frags.mask] == 0).all()


@pytest.mark.usefixtures("coverage_path")
def test_batched_views_equal_single_views_and_chunks_do_not_matter(monkeypatch):
    # views differing in homogeneous scale and offset, one of them wholly off screen
    clip, faces = random_mesh(5, n_faces=40)
    clip = torch.from_numpy(clip)
    views = torch.stack(
        [clip, clip * 2.0, clip + torch.tensor([0.3, -0.2, 0.0, 0.0]), clip + torch.tensor([5.0, 0, 0, 0])]
    )
    faces = torch.from_numpy(faces)
    batched = rasterize(views, faces, (20, 28), cull_backfaces=True)
    assert not batched.mask[3].any()
    import faceedit_core.render.rasterize as raster

    monkeypatch.setattr(raster, "CHUNK", 7)  # many small triangle groups (one row each) and candidate groups
    chunked = rasterize(views, faces, (20, 28), cull_backfaces=True)
    flat = torch.empty(len(views) * 20 * 28, dtype=torch.long)  # one flattened pass, as on CUDA
    hit, bary, depth = raster._covered_pixels(views, faces.long(), 20, 28, True, flat, 7)
    assert torch.equal(flat.view(-1, 20, 28), batched.face_id)
    torch.testing.assert_close(bary.t(), batched.bary.view(-1, 3)[hit])
    torch.testing.assert_close(depth, batched.depth.view(-1)[hit])
    for b in range(len(views)):
        single = rasterize(views[b : b + 1], faces, (20, 28), cull_backfaces=True)
        assert torch.equal(single.face_id[0], batched.face_id[b])
        assert torch.equal(chunked.face_id[b], batched.face_id[b])
        torch.testing.assert_close(single.bary[0], batched.bary[b])


def test_gradients_flow_through_a_batch_rasterised_image_by_image():
    clip, faces = random_mesh(6, n_faces=30)
    views = torch.from_numpy(np.stack([clip, clip * 1.5])).requires_grad_(True)
    faces = torch.from_numpy(faces)
    frags = rasterize(views, faces, (16, 16))
    colour = interpolate(torch.rand(2, views.shape[1], 3), frags, faces)
    colour.sum().backward()
    assert views.grad is not None and views.grad[0].abs().sum() > 0 and views.grad[1].abs().sum() > 0


def test_the_batch_pool_runs_one_intra_op_thread_per_worker_and_leaves_the_caller_alone():
    """Workers with OpenMP teams of their own would oversubscribe the cores for the whole process."""
    import faceedit_core.render.rasterize as raster

    clip, faces = random_mesh(7, n_faces=20)
    before = torch.get_num_threads()
    rasterize(torch.from_numpy(np.stack([clip, clip * 1.2])), torch.from_numpy(faces), (12, 12))
    assert raster._POOL is not None
    assert set(raster._POOL.map(lambda _: torch.get_num_threads(), range(8))) == {1}
    assert torch.get_num_threads() == before
    later = []  # a thread started afterwards (a server job, say) still gets the caller's count
    thread = threading.Thread(target=lambda: later.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    assert later == [before]


def test_interpolation_reads_each_images_own_attributes_and_leaves_background_zero():
    clip, faces = random_mesh(8, n_faces=30)
    views = torch.from_numpy(np.stack([clip, clip]))
    faces = torch.from_numpy(faces)
    frags = rasterize(views, faces, (18, 22))
    attrs = torch.rand(views.shape[1], 4) + 0.5
    out = interpolate(torch.stack([attrs, 2 * attrs]), frags, faces)
    shared = interpolate(attrs, frags, faces)
    assert frags.mask.any() and (~frags.mask).any()
    assert (out[~frags.mask] == 0).all() and (out[frags.mask] > 0).all()
    torch.testing.assert_close(out[0], shared[0])
    torch.testing.assert_close(out[1], 2 * shared[1])
    # a covered pixel is the barycentric blend of its face's corners
    b, y, x = frags.mask.nonzero()[0].tolist()
    corners = attrs[faces[frags.face_id[b, y, x]]]
    torch.testing.assert_close(shared[b, y, x], (frags.bary[b, y, x, :, None] * corners).sum(0))


@pytest.mark.usefixtures("coverage_path")
def test_large_triangle_rows_are_exact():
    # a thin sliver and a large triangle: every covered pixel centre, and no other, per the brute force
    clip = np.array(
        [
            [-1.0, 0.93, 0.3, 1],
            [1.0, 0.97, 0.3, 1],
            [0.2, 0.91, 0.3, 1],
            [-0.95, -0.9, 0.5, 1],
            [0.9, -0.6, 0.5, 1],
            [-0.3, 0.85, 0.5, 1],
        ],
        np.float32,
    )
    faces = np.array([[0, 1, 2], [3, 4, 5]])
    ours = rasterize(torch.from_numpy(clip)[None], torch.from_numpy(faces), (40, 64)).face_id[0].numpy()
    ref = brute_force(clip, faces, 40, 64)
    assert (ref == 1).sum() > 500 and (ours != ref).sum() <= 2


@pytest.mark.skipif(not torch.cuda.is_available(), reason="nvdiffrast parity needs a CUDA GPU")
def test_nvdiffrast_parity():
    # nvdiffrast (docs, "Rasterization"): (u, v, z/w, triangle_id + 1) per pixel, rows bottom-up,
    # (u, v) = (1, 0) at the triangle's first vertex and (0, 1) at its second, depth test GL_LESS;
    # perspective-correct barycentrics, so a random homogeneous scale per vertex must not matter
    pytest.importorskip("nvdiffrast.torch", reason="nvdiffrast is not installed (docs/rendering.md says how)")
    clip, faces = random_mesh(4)
    w = np.random.default_rng(7).uniform(1.0, 3.0, size=(len(clip), 1)).astype(np.float32)
    clip_t = torch.from_numpy(clip * w)[None].cuda()
    faces_t = torch.from_numpy(faces).cuda()
    ours = rasterize(clip_t, faces_t, (64, 64), backend="torch")
    theirs = rasterize(clip_t, faces_t, (64, 64), backend="nvdiffrast")
    assert ours.mask.sum() > 500
    assert (ours.face_id != theirs.face_id).float().mean() < 0.01
    both = ours.mask & theirs.mask & (ours.face_id == theirs.face_id)
    torch.testing.assert_close(ours.bary[both], theirs.bary[both], atol=1e-3, rtol=0)
    torch.testing.assert_close(ours.depth[both], theirs.depth[both], atol=1e-4, rtol=0)


def reference_fragments(clip, faces, face_id, H, W):
    """Perspective-correct barycentrics and depth z/w of each covered pixel's face, in float64."""
    clip = clip.astype(np.float64)
    px = (clip[:, 0] / clip[:, 3] + 1) * 0.5 * W
    py = (1 - clip[:, 1] / clip[:, 3]) * 0.5 * H
    z = clip[:, 2] / clip[:, 3]
    bary, depth = np.zeros((H, W, 3)), np.ones((H, W))
    for i, j in zip(*np.nonzero(face_id >= 0)):
        c = faces[face_id[i, j]]
        X, Y = px[c], py[c]
        sx, sy = j + 0.5, i + 0.5
        e = np.array(
            [
                (X[(k + 2) % 3] - X[(k + 1) % 3]) * (sy - Y[(k + 1) % 3])
                - (Y[(k + 2) % 3] - Y[(k + 1) % 3]) * (sx - X[(k + 1) % 3])
                for k in range(3)
            ]
        )
        persp = e / clip[c, 3]
        bary[i, j] = persp / persp.sum()
        depth[i, j] = e @ z[c] / e.sum()
    return bary, depth


@pytest.mark.parametrize("seed", [0, 3])
def test_barycentrics_and_depth_match_the_reference(seed):
    clip, faces = random_mesh(seed, n_faces=30)
    clip *= np.random.default_rng(seed).uniform(0.5, 3.0, size=(len(clip), 1)).astype(np.float32)  # homogeneous w
    frags = rasterize(torch.from_numpy(clip)[None], torch.from_numpy(faces), (24, 32))
    bary, depth = reference_fragments(clip, faces, frags.face_id[0].numpy(), 24, 32)
    assert frags.mask.sum() > 200
    np.testing.assert_allclose(frags.bary[0].numpy(), bary, atol=2e-5)
    np.testing.assert_allclose(frags.depth[0].numpy(), depth, atol=2e-5)


def test_gradients_of_barycentrics_and_depth_are_exact():
    # float64 finite differences through the batch pool's tracked path and the single-image path
    clip, faces = random_mesh(9, n_faces=12)
    views = torch.from_numpy(np.stack([clip, clip * 1.3])).double().requires_grad_(True)
    faces = torch.from_numpy(faces)
    weights = torch.rand(2, 10, 12, 4, dtype=torch.float64)

    def loss(v):
        frags = rasterize(v, faces, (10, 12))
        return (torch.cat([frags.bary, frags.depth[..., None]], -1) * weights[: len(v)]).sum()

    for v in (views, views[:1]):
        torch.autograd.gradcheck(loss, (v,), eps=1e-7, atol=1e-5)


def test_the_rasteriser_runs_compiled_and_equals_its_python_source():
    """TorchScript runs the per-image work without the GIL; the compiled and Python functions agree."""
    import faceedit_core.render.rasterize as raster

    compiled = raster._compiled_covered_pixels()
    assert isinstance(compiled, torch.jit.ScriptFunction)
    assert isinstance(raster._compiled_covered_faces(), torch.jit.ScriptFunction)
    clip, faces = random_mesh(11, n_faces=40)
    views = torch.from_numpy(np.stack([clip, clip * 1.7 + 0.1]))
    faces = torch.from_numpy(faces)
    ids = [torch.empty(2 * 16 * 20, dtype=torch.long) for _ in range(2)]
    ours = compiled(views, faces, 16, 20, True, ids[0], 5)
    python = raster._covered_pixels(views, faces, 16, 20, True, ids[1], 5)
    assert torch.equal(ids[0], ids[1]) and (ids[0] >= 0).sum() > 100
    for a, b in zip(ours, python):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_batch_under_no_grad_records_no_graph():
    clip, faces = random_mesh(12, n_faces=20)
    views = torch.from_numpy(np.stack([clip, clip])).requires_grad_(True)
    with torch.no_grad():
        frags = rasterize(views, torch.from_numpy(faces), (12, 12))
    assert not frags.bary.requires_grad and not frags.depth.requires_grad
    frags = rasterize(views, torch.from_numpy(faces), (12, 12))
    assert frags.bary.requires_grad and frags.depth.requires_grad


def test_without_torchscript_the_rasteriser_runs_as_python(monkeypatch, caplog):
    import faceedit_core.render.rasterize as raster

    def no_script(fn):
        raise RuntimeError("TorchScript is not available")

    monkeypatch.setattr(torch.jit, "script", no_script)
    raster._compiled_covered_pixels.cache_clear()
    raster._compiled_covered_faces.cache_clear()
    try:
        assert raster._compiled_covered_pixels() is raster._covered_pixels
        assert raster._compiled_covered_faces() is raster._covered_faces
        assert "runs uncompiled" in caplog.text
        clip, faces = random_mesh(13, n_faces=20)
        views = torch.from_numpy(np.stack([clip, clip * 1.1]))
        frags = rasterize(views, torch.from_numpy(faces), (14, 18))
        assert torch.equal(frags.face_id[0], rasterize(views[:1], torch.from_numpy(faces), (14, 18)).face_id[0])
        covered = rasterize(views, torch.from_numpy(faces), (14, 18), frames=False, barycentrics=False)
        assert torch.equal(covered[1].face, frags.covered_images()[1].face)
    finally:
        raster._compiled_covered_pixels.cache_clear()
        raster._compiled_covered_faces.cache_clear()


class _NvdiffrastLike:
    """nvdiffrast's documented `rasterize` output, made by this project's rasteriser on CPU: (u, v,
    z/w, triangle id + 1) per pixel, rows bottom-up, u and v weighting the triangle's vertices 0 and
    1; it culls nothing. Lets the backend's own logic (culling per image, ids mapped back) run here."""

    @staticmethod
    def RasterizeCudaContext(device):  # noqa: N802 - nvdiffrast's name
        return object()

    @staticmethod
    def rasterize(ctx, pos, tri, resolution):
        frags = rasterize(pos, tri.long(), resolution, backend="torch")
        rast = torch.cat([frags.bary[..., :2], frags.depth[..., None], (frags.face_id + 1).float()[..., None]], -1)
        return torch.flip(rast * frags.mask[..., None], dims=[1]), None


@pytest.mark.parametrize("cull", [False, True])
def test_the_nvdiffrast_path_culls_per_image_and_maps_ids_back(monkeypatch, cull):
    import faceedit_core.render.rasterize as raster

    monkeypatch.setattr(raster, "_nvdiffrast", lambda: _NvdiffrastLike)
    monkeypatch.setattr(raster, "_CONTEXTS", {})
    clip, faces = random_mesh(14, n_faces=40)
    views = torch.from_numpy(
        np.stack([clip, clip * np.array([-1, 1, 1, 1], np.float32)])
    )  # mirrored: other faces culled
    faces = torch.from_numpy(faces)
    theirs = raster._rasterize_nvdiffrast(views, faces, 20, 24, cull)
    ours = rasterize(views, faces, (20, 24), cull_backfaces=cull, backend="torch")
    assert ours.mask.sum() > 200 and torch.equal(theirs.face_id, ours.face_id)
    torch.testing.assert_close(theirs.bary, ours.bary)
    torch.testing.assert_close(theirs.depth, ours.depth)
    back = torch.tensor([[[-0.5, -0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0], [0.5, -0.5, 0.5, 1.0]]])  # clockwise in NDC
    assert (raster._rasterize_nvdiffrast(back, torch.tensor([[0, 1, 2]]), 8, 8, cull).face_id >= 0).any() != cull


def test_covered_pixels_without_frames_equal_the_frames_and_each_runs_per_image():
    """frames=False gives, image by image, exactly the covered pixels of the frames (CPU pool and a
    single image alike, the z-buffer reused from call to call), and each= is applied to every image."""
    clip, faces = random_mesh(7, n_faces=40)
    clip = torch.from_numpy(clip)
    views = torch.stack(
        [clip, clip * 1.5, clip + torch.tensor([0.2, 0.1, 0.0, 0.0]), clip + torch.tensor([5.0, 0, 0, 0])]
    )
    faces = torch.from_numpy(faces)
    frames = rasterize(views, faces, (18, 26), cull_backfaces=True)
    for batch in (views, views[1:2]):
        want = rasterize(batch, faces, (18, 26), cull_backfaces=True).covered_images()
        for _ in range(2):  # the second call reuses the workers' z-buffers
            got = rasterize(batch, faces, (18, 26), cull_backfaces=True, frames=False)
            assert len(got) == len(batch)
            for g, w in zip(got, want):
                assert torch.equal(g.hit, w.hit) and torch.equal(g.face, w.face) and g.size == (18, 26)
                torch.testing.assert_close(g.bary, w.bary)
                torch.testing.assert_close(g.depth, w.depth)
    assert len(frames.covered_images()[3].hit) == 0  # the view off screen covers nothing
    counts = rasterize(views, faces, (18, 26), cull_backfaces=True, frames=False, each=lambda b, c: (b, len(c.hit)))
    assert counts == [(b, int(frames.mask[b].sum())) for b in range(4)]
    with pytest.raises(InputError, match="frames=False"):
        rasterize(views, faces, (18, 26), each=lambda b, c: None)
    # coverage only: the same pixels and faces, no barycentrics
    for got, want in zip(
        rasterize(views, faces, (18, 26), True, frames=False, barycentrics=False), frames.covered_images()
    ):
        assert torch.equal(got.hit, want.hit) and torch.equal(got.face, want.face) and got.bary is None
    with pytest.raises(InputError, match="barycentrics=False"):
        rasterize(views, faces, (18, 26), barycentrics=False)


def test_screen_planes_reproduce_screen_linear_values_and_match_barycentrics_without_perspective():
    """A value linear in pixel coordinates comes back exactly at every covered pixel centre; with
    all corners at one depth (w equal) screen-linear is perspective-correct, so it equals the
    barycentric interpolation; with perspective the two stay close on small triangles."""
    clip, faces = random_mesh(21, n_faces=60)
    clip, faces = torch.from_numpy(clip), torch.from_numpy(faces)
    H, W = 40, 56
    (covered,) = rasterize(clip[None], faces, (H, W), cull_backfaces=True, frames=False, barycentrics=False)
    tri = face_corners(clip[None], faces, H, W)[:, 0]  # [4,3,F]
    linear = torch.stack([0.3 * tri[0] - 0.2 * tri[1] + 1.0, 0.05 * tri[1]])  # [2,3,F] per corner
    got = interpolate_screen(screen_planes(tri, linear), covered)  # [2,P]
    y, x = covered.hit // W + 0.5, covered.hit % W + 0.5
    assert len(covered.hit) > 300
    torch.testing.assert_close(got, torch.stack([0.3 * x - 0.2 * y + 1.0, 0.05 * y]), atol=1e-4, rtol=0)

    values = torch.rand(len(clip), 3, generator=torch.Generator().manual_seed(0))
    for w_scale, tolerance in ((0.0, 2e-5), (0.3, 0.05)):
        views = clip.clone()
        views[:, :3] *= 1 + w_scale * clip[:, 2:3]  # w = 1 + w_scale * z: perspective when w_scale > 0
        views[:, 3] = 1 + w_scale * clip[:, 2]
        frags = rasterize(views[None], faces, (H, W), cull_backfaces=True)
        (covered,) = frags.covered_images()
        tri = face_corners(views[None], faces, H, W)[:, 0]
        screen = interpolate_screen(screen_planes(tri, values[faces].permute(2, 1, 0)), covered)
        correct = interpolate(values, frags, faces).view(-1, 3)[covered.hit].t()
        assert (screen - correct).abs().max() <= tolerance

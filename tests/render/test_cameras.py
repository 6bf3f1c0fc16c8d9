"""EG3D cameras: conventions, projection, turntables, limits."""

import math

import pytest
import torch

from faceedit_core.errors import InputError
from faceedit_core.render.cameras import FOCAL, Cameras, flame_to_world, orbit, turntable


def test_frontal_camera_matches_eg3d():
    cams = orbit([0.0], [0.0])
    c2w = cams.cam2world[0]
    torch.testing.assert_close(c2w[:3, 3], torch.tensor([0.0, 0.0, 0.2 + 2.7]))
    torch.testing.assert_close(c2w[:3, 2], torch.tensor([0.0, 0.0, -1.0]))  # looks at the face (-z)
    torch.testing.assert_close(c2w[:3, 1], torch.tensor([0.0, -1.0, 0.0]))  # OpenCV: y down
    c = cams.eg3d_c()
    assert c.shape == (1, 25) and c[0, 16].item() == pytest.approx(FOCAL)
    torch.testing.assert_close(Cameras.from_eg3d_c(c).cam2world, cams.cam2world)


def test_focal_is_eg3ds_18_837_degree_fov():
    # EG3D: focal = 1 / (tan(fov / 2) * 1.414) in normalised image units
    assert 1 / (math.tan(math.radians(18.837 / 2)) * 1.414) == pytest.approx(FOCAL, abs=2e-3)


def test_projection_puts_the_pivot_at_the_centre_and_up_is_up():
    cams = orbit([0.0, 45.0, -90.0], [0.0, 20.0, -10.0])
    pts = torch.tensor([[0.0, 0.0, 0.2], [0.0, 0.3, 0.2]])
    clip = cams.project(pts)
    ndc = clip[..., :2] / clip[..., 3:]
    torch.testing.assert_close(ndc[:, 0], torch.zeros(3, 2), atol=1e-5, rtol=0)
    assert (ndc[:, 1, 1] > 0).all()  # a point above the pivot is above the centre in every view


def test_turntable_spacing_and_limits():
    cams = turntable(8)
    assert len(cams) == 8
    pos = cams.cam2world[:, :3, 3]
    radii = (pos - torch.tensor([0.0, -0.06, -0.03])).norm(dim=1)
    torch.testing.assert_close(radii, torch.full((8,), 3.4))
    yaw = torch.atan2(pos[:, 0] - 0.0, pos[:, 2] + 0.03)
    steps = torch.remainder(yaw.diff(), 2 * math.pi)
    torch.testing.assert_close(steps, torch.full((7,), 2 * math.pi / 8), atol=1e-5, rtol=0)
    with pytest.raises(InputError, match="views must be within 1..64"):
        turntable(65)
    with pytest.raises(InputError, match="pitch"):
        orbit([0.0], [90.0])
    with pytest.raises(InputError, match=r"\[N,25\]"):
        Cameras.from_eg3d_c(torch.zeros(2, 16))


def test_flame_to_world_is_next3ds_mapping():
    v = torch.tensor([[0.0, 0.01, 0.01], [0.1, 0.0, 0.0]])
    torch.testing.assert_close(flame_to_world(v), torch.tensor([[0.0, 0.0, 0.0], [0.25, -0.025, -0.025]]))


def test_next3d_plane_views():
    from faceedit_core.render.cameras import NEXT3D_VIEWS, next3d_plane_clip

    tip = torch.tensor([[[0.0, 0.01, 0.11], [0.05, 0.01, 0.01]]])  # nose tip ahead, a point on the +x side
    clip = next3d_plane_clip(tip)
    assert clip.shape == (1, len(NEXT3D_VIEWS), 2, 4)
    front, plus90, minus90, top = clip[0]
    torch.testing.assert_close(front[0, :2], torch.tensor([0.0, 0.0]))  # (v + shift) * 5
    assert front[0, 2] < front[1, 2]  # the nose is nearest from the front
    assert plus90[0, 0] > 0.4 and minus90[0, 0] < -0.4  # the nose points sideways
    torch.testing.assert_close(top[0, 1], torch.tensor(-0.5))  # from the top, forward is down

"""The preview renderer on the demo head: it draws a lit, textured head, framed in every view."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from faceedit_core.cli import main
from faceedit_core.errors import InputError
from faceedit_core.factory import build_editor
from faceedit_core.params import FlameParams
from faceedit_core.render.cameras import orbit, turntable
from faceedit_core.render.images import contact_sheet


@pytest.fixture(scope="module")
def editor():
    return build_editor()


def test_turntable_frames_the_head_in_every_view(editor):
    images = editor.render(FlameParams.zeros(1, 100, 50), turntable(6), 96)
    assert images.shape == (1, 6, 96, 96, 4) and images.dtype == np.uint8
    for img in images[0]:
        alpha = img[..., 3] > 128
        coverage = alpha.mean()
        assert 0.12 < coverage < 0.7  # the head is there and not cropped to the frame
        assert not alpha[0].any() or alpha[0].mean() < 0.5  # not cut across the top row


def test_face_has_its_colours(editor):
    img = editor.render(FlameParams.zeros(1, 100, 50), orbit([0.0], [0.0]), 160)[0, 0]
    rgb = img[..., :3].astype(float)
    covered = img[..., 3] > 250
    reds = (rgb[..., 0] > rgb[..., 2] + 40) & covered  # skin and lips
    dark = (rgb.sum(-1) < 150) & covered  # hair, brows, pupils
    assert reds.mean() > 0.1 and dark.mean() > 0.02


def test_expression_changes_the_pixels_around_the_mouth_only(editor):
    cams = orbit([0.0], [0.0])
    neutral = FlameParams.zeros(1, 100, 50)
    smile = neutral.clone()
    smile.expression[0, 7] = 1.0
    a = editor.render(neutral, cams, 128)[0, 0].astype(int)
    b = editor.render(smile, cams, 128)[0, 0].astype(int)
    diff = np.abs(a - b)[..., :3].sum(-1) > 30
    rows = np.nonzero(diff.any(1))[0]
    assert diff.sum() > 20 and rows.min() > 60  # changes sit in the lower half of the face


def test_bad_sizes_are_refused(editor):
    with pytest.raises(InputError, match="outside 16..2048"):
        editor.render(FlameParams.zeros(1, 100, 50), orbit([0.0], [0.0]), 4096)


def test_cli_writes_views_and_a_contact_sheet(tmp_path):
    result = CliRunner().invoke(
        main, ["render", "--views", "3", "--size", "64", "--expression", "eyes_closed=1", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "contact_sheet.png",
        "view_00.png",
        "view_01.png",
        "view_02.png",
    ]
    assert Image.open(tmp_path / "contact_sheet.png").size == (192, 64)


def test_contact_sheet_layout():
    tiles = np.zeros((2, 3, 4, 5, 4), np.uint8)
    tiles[1, 2, ..., :3] = 200
    tiles[1, 2, ..., 3] = 255
    sheet = contact_sheet(tiles)
    assert sheet.shape == (8, 15, 3)
    assert (sheet[4:, 10:] == 200).all() and (sheet[:4, :10] != 200).all()


def test_supersampled_edges_keep_the_colour_of_their_covered_samples():
    from faceedit_core.render.preview import _resolve

    samples = torch.zeros(1, 4, 4, 4)
    samples[0, 0, 0] = torch.tensor([0.8, 0.4, 0.2, 1.0])  # one of four samples covered: an edge pixel
    samples[0, 2:, 2:] = torch.tensor([0.1, 0.5, 0.9, 1.0])  # a fully covered pixel
    out = _resolve(samples, 2)[0]
    torch.testing.assert_close(out[0, 0], torch.tensor([0.8, 0.4, 0.2, 0.25]))  # straight alpha, no dark fringe
    torch.testing.assert_close(out[1, 1], torch.tensor([0.1, 0.5, 0.9, 1.0]))
    assert (out[0, 1] == 0).all() and (out[1, 0] == 0).all()  # background: transparent black


def test_background_is_transparent_black(editor):
    img = editor.render(FlameParams.zeros(1, 100, 50), orbit([0.0], [0.0]), 64)[0, 0]
    background = img[..., 3] == 0
    assert background.mean() > 0.3 and (img[background] == 0).all()


def test_no_seam_line_down_the_back_of_the_head():
    # the skin island's last texels must not bleed the eyes' sclera through bilinear sampling
    from faceedit_core.flame.default_head import load_demo_flame
    from faceedit_core.render.albedo import demo_albedo
    from faceedit_core.render.preview import PreviewRenderer

    layer = load_demo_flame()
    renderer = PreviewRenderer(layer.faces, layer.uvs, layer.uv_faces, demo_albedo(), supersample=1)
    back = turntable(8)
    back = type(back)(back.cam2world[:1], back.intrinsics[:1])
    img = renderer.render(layer(FlameParams.zeros(1, 100, 50)).vertices, back, 512)[0, 0].numpy()
    lum = img[:, 192:320, :3].mean(-1)  # the middle of the back of the skull, where the UV seam runs
    hair = (img[:, 192:320, 3] == 1) & (lum < 0.3)
    bump = np.abs(2 * lum[:, 1:-1] - lum[:, :-2] - lum[:, 2:])  # a one-pixel line stands out here
    inside = hair[:, 1:-1] & hair[:, :-2] & hair[:, 2:]
    assert inside.sum() > 10000 and bump[inside].max() < 0.06

"""Render memory stays flat in the number of views and items: the server asks the editor for one
item and a few views at a time and keeps only PNGs; the preview renderer rasterises a bounded
number of samples per call; a render beyond the pixel limit is refused before any work."""

import numpy as np
import pytest
import torch

from backend_server import handlers
from faceedit_core.render import preview
from faceedit_core.render.cameras import turntable
from faceedit_wire import limits
from faceedit_wire import protocol as P


class RecordingEditor:
    """Renders blank images and records the (items, views, size) of every call."""

    tier = "preview"

    def __init__(self):
        self.calls = []

    def render(self, params, cameras, size, progress=None, cancel=None):
        self.calls.append((params.batch_size, len(cameras), size))
        return np.zeros((params.batch_size, len(cameras), size, size, 4), np.uint8)


def params(batch: int) -> dict:
    return {"shape": np.zeros((batch, 100), np.float32), "expression": np.zeros((batch, 50), np.float32)}


def ctx(events: list) -> dict:
    return {"progress": events.append, "cancelled": lambda: False}


def test_the_server_renders_one_item_and_a_few_views_per_editor_call():
    editor, events = RecordingEditor(), []
    result = handlers.render(editor, {"params": params(2), "size": 1024, "turntable": {"views": 10}}, ctx(events))
    per_call = handlers.RENDER_CHUNK_PIXELS // (1024 * 1024)
    assert all(items == 1 and 1 <= views <= per_call for items, views, _ in editor.calls)
    assert sum(views for _, views, _ in editor.calls) == 20
    assert [len(item) for item in result["images"]] == [10, 10]
    assert all(png.startswith(b"\x89PNG") for item in result["images"] for png in item)
    assert [e["step"] for e in events][-1] == 20 and all(e["total"] == 20 for e in events)


def test_a_render_beyond_the_pixel_limit_is_refused_before_any_work():
    editor = RecordingEditor()
    args = {"params": params(16), "size": 1024, "turntable": {"views": 64}}
    with pytest.raises(P.ProtocolError) as info:
        handlers.render(editor, args, ctx([]))
    assert info.value.code == P.TOO_LARGE and f"the limit is {limits.MAX_RENDER_PIXELS}" in str(info.value)
    assert "'size'" in str(info.value) and editor.calls == []
    handlers.render(editor, {**args, "params": params(1)}, ctx([]))  # 64 views at 1024 px: at the limit
    assert sum(views for _, views, _ in editor.calls) == 64


def test_the_preview_renderer_rasterises_a_bounded_number_of_samples_per_call(monkeypatch):
    from faceedit_core.flame.default_head import load_demo_flame
    from faceedit_core.params import FlameParams

    layer = load_demo_flame()
    with torch.no_grad():
        verts = layer(FlameParams.zeros(1, layer.n_shape, layer.n_exp)).vertices
    renderer = preview.PreviewRenderer(layer.model.f)
    cameras, size = turntable(6), 128
    whole = renderer.render(verts, cameras, size)

    samples, rasterize = [], preview.rasterize

    def recording(clip, *args, **kwargs):
        samples.append(len(clip))
        return rasterize(clip, *args, **kwargs)

    monkeypatch.setattr(preview, "rasterize", recording)
    monkeypatch.setattr(preview, "RASTER_SAMPLES", 2 * (2 * size) ** 2)  # two views of 2x-supersampled samples
    chunked = renderer.render(verts, cameras, size)
    assert samples == [2, 2, 2]
    assert torch.equal(chunked, whole)

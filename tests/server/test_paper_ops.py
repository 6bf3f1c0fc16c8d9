"""The paper tier's ops over real sockets (tiny models in the official file formats): `invert`
saves a named latent that later edits choose as their identity; the preview tier refuses it,
naming the tier it needs."""

import numpy as np
import pytest

from backend_server.server import Server
from faceedit_wire import protocol as P
from faceedit_wire.client import ServerError


@pytest.fixture(scope="module")
def paper_editor(tmp_path_factory):
    from faceedit_core.factory import build_editor
    from tests.helpers.paper import write_models_dir

    return build_editor(write_models_dir(tmp_path_factory.mktemp("models"), guidance=False))


def _photo_and_params(editor) -> tuple[bytes, dict]:
    """A PNG the tiny Next3D renders of seed 7 from the front, and its FLAME parameters as wire arrays."""
    from faceedit_core.params import FlameParams
    from faceedit_core.render.cameras import orbit
    from faceedit_core.render.images import png_bytes

    params = FlameParams.zeros(1, editor.layer.n_shape, editor.layer.n_exp)
    size = editor.generator.config.output_resolution
    image = editor.render(params, orbit([0.0], [0.0]), size, ws=editor.identity_latent(seed=7))
    return png_bytes(image[0, 0]), {k: v.astype(np.float32) for k, v in params.to_numpy().items()}


def test_invert_over_the_wire_saves_a_latent_that_edits_use(serve, client_factory, paper_editor):
    server = serve(Server(lambda: paper_editor, "tcp://127.0.0.1:*"))
    client = client_factory(server.bound_address, timeout_s=60, retries=0)
    assert "invert" in client.call("hello")["capabilities"]
    photo, params = _photo_and_params(paper_editor)
    events = []
    out = client.call("invert", {"photo": photo, "params": params, "name": "wired", "steps": 2}, events.append)
    assert out["latent"] == "wired" and out["ws"].shape == (1, 28, 512) and out["cameras"].shape == (1, 25)
    assert [e["step"] for e in events] == [1, 2] and np.isfinite(out["losses"]["total"])
    saved = paper_editor.identity_latent(latent="wired", names_only=True).numpy()
    np.testing.assert_array_equal(saved, out["ws"])
    view = {"params": params, "size": 32, "cameras": out["cameras"], "identity": {"latent": "wired"}}
    rendered = client.call("render", view)
    assert rendered["images"][0][0].startswith(b"\x89PNG")
    with pytest.raises(ServerError, match="field 'mode'") as bad:
        client.call("invert", {"photo": photo, "params": params, "mode": "z"})
    assert bad.value.code == P.INVALID_FIELD


def test_the_preview_tier_refuses_invert_naming_the_tier(stub_server, client_factory):
    client = client_factory(stub_server.bound_address, timeout_s=30, retries=0)
    with pytest.raises(ServerError, match=r"needs the paper tier \(faceedit-server --models DIR\)") as err:
        client.call("invert", {"photo": b"\x89PNG", "params": {}})
    assert err.value.code == P.INVALID_FIELD

"""Clients learn nothing about the server's files: mapper ids are checked against the store (the
same answer whatever lies in the folder), and no reply carries an absolute server path."""

import numpy as np
import pytest

from backend_server.replies import scrub_paths
from faceedit_core.errors import MissingModelError
from faceedit_wire import protocol as P
from faceedit_wire.client import Client, ServerError
from tests.helpers.server import fast_editor

PARAMS = {"shape": np.zeros((1, 100), np.float32), "expression": np.zeros((1, 50), np.float32)}


@pytest.fixture
def preview_client(preview_server, client_factory):
    return client_factory(preview_server.bound_address, timeout_s=120, retries=0)


def test_mapper_ids_name_stored_mappers_or_are_unknown_whatever_the_folder_holds(preview_client):
    folder = fast_editor().store.folder
    folder.mkdir(parents=True, exist_ok=True)
    junk = {"stray": '{"format": "secret", "weights_file": "x.safetensors"}', "pv-f0123456789abcdef": "{not json"}
    for name, text in junk.items():  # manifests without weights: not mappers of the store
        (folder / f"{name}.json").write_text(text)
    for mapper_id in [*junk, "pv-t0123456789abcdef", "pv-0000000000000000"]:
        with pytest.raises(ServerError) as info:
            preview_client.call("edit", {"params": PARAMS, "mapper_ids": [mapper_id]})
        assert info.value.code == P.INVALID_FIELD and str(info.value) == f"unknown mapper id '{mapper_id}'"
    for path in ("../../../../etc/hostname", "/etc/hostname"):
        with pytest.raises(ServerError, match="is not a mapper name"):
            preview_client.call("edit", {"params": PARAMS, "mapper_ids": [path]})


def test_hello_names_model_files_without_their_folders(stub_server_with):
    models = {"flame": "/srv/models/flame/flame2023.pkl", "landmarks": ["/srv/models/lmk.npy"], "next3d": None}
    server = stub_server_with(models=models)
    client = Client(server.bound_address, timeout_s=30, retries=0)
    try:
        assert client.call("hello")["models"] == {"flame": "flame2023.pkl", "landmarks": ["lmk.npy"], "next3d": None}
    finally:
        client.close()


def test_missing_model_errors_keep_the_file_and_where_to_get_it_but_not_the_folder(stub_server, handler):
    def missing(editor, args, ctx):
        raise MissingModelError(
            "FLAME model missing: put generic_model.pkl in /home/operator/faceedit-models/flame/ "
            "(from https://flame.is.tue.mpg.de/download.php)"
        )

    handler("train", missing)
    client = Client(stub_server.bound_address, timeout_s=30, retries=0)
    try:
        with pytest.raises(ServerError) as info:
            client.call("train", {"prompt": "smile"})
    finally:
        client.close()
    message = str(info.value)
    assert info.value.code == P.NOT_FOUND and "/home/operator" not in message
    assert "generic_model.pkl" in message and "https://flame.is.tue.mpg.de/download.php" in message


@pytest.mark.parametrize(
    "text,expected",
    [
        ("No such file: '/srv/a/b/flame.pkl'", "No such file: '.../flame.pkl'"),
        ("cache ~/.cache/faceedit/mappers/pv-1.json", "cache .../pv-1.json"),
        (r"C:\Users\op\models\x.npz is locked", ".../x.npz is locked"),
        ("AU1/AU2 in docs/server.md, 16/64 views", "AU1/AU2 in docs/server.md, 16/64 views"),
        ("see https://example.org/a/b", "see https://example.org/a/b"),
    ],
)
def test_scrub_paths_cuts_absolute_paths_to_their_last_part(text, expected):
    assert scrub_paths(text) == expected

"""Mapper manifests whose config asks for a huge network: refused before the network is built (issue 20)."""

from __future__ import annotations

import json

import pytest

from faceedit_core.errors import InputError
from faceedit_core.mappers import DualMappers, MapperConfig
from faceedit_core.storage import checkpoints
from faceedit_core.storage.mapper_store import MapperStore
from tests.helpers import hostile_files as H

LOAD = "tests.helpers.hostile_files.load_paper_mapper"
SMALL = MapperConfig(n_exp=10, texture_levels=(1, 2), hidden=8, attn_dim=4, psi_tokens=2, layers=2)


def _with_config(tmp_path, **change):
    store = MapperStore(tmp_path, "paper")
    store.save("m", DualMappers(SMALL), {"prompt": "smile"})
    manifest = checkpoints.read_manifest(tmp_path / "m")
    manifest["mapper_config"].update(change)
    checkpoints.manifest_path(tmp_path / "m").write_text(json.dumps(manifest))
    return store, checkpoints.manifest_path(tmp_path / "m")


@pytest.mark.parametrize(
    "change, match",
    [
        ({"hidden": 20000}, "hidden"),  # over every cap: 1.5 GB before its weights were compared
        ({"hidden": 4096, "layers": 16}, "do not match"),  # within the caps: 1 GB, refused by shape
    ],
    ids=["hidden-20000", "hidden-4096-layers-16"],
)
def test_a_config_asking_for_a_huge_network_is_refused_with_bounded_memory(tmp_path, change, match):
    _, manifest = _with_config(tmp_path, **change)
    H.assert_refused(H.measure_load(manifest, LOAD), match)


@pytest.mark.parametrize(
    "change",
    [
        {"hidden": "256"},
        {"hidden": [1] * 1000},
        {"layers": 0},
        {"layers": 17},
        {"texture_levels": [1, 1]},
        {"texture_levels": [100]},
        {"texture_branch": "yes"},
        {"n_exp": True},
        {"unknown_field": 1},
        {"hidden": {"nested": 1}},
    ],
)
def test_malformed_configs_are_input_errors(tmp_path, change):
    store, _ = _with_config(tmp_path, **change)
    with pytest.raises(InputError):
        store.load("m")


def test_a_well_formed_mapper_still_loads(tmp_path):
    store, _ = _with_config(tmp_path)
    mapper, manifest = store.load("m")
    assert mapper.config == SMALL and manifest["prompt"] == "smile"

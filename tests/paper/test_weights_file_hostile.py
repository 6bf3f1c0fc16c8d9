"""CLIP / ArcFace weight files that claim more than they hold (issue 20): torch zips with expanded
tensors, TorchScript archives with a deflated gigabyte or an expanded buffer."""

from __future__ import annotations

import zipfile

import pytest
import torch

from faceedit_core.errors import InputError, UnsafeFileError
from faceedit_core.paper.weights_file import read_state_dict
from tests.helpers import hostile_files as H

READ = "faceedit_core.paper.weights_file.read_state_dict"


test_weight_file_bombs_are_refused_with_bounded_memory = H.refusal_test(
    READ,
    "ViT-B-32.pt",
    2_000_000,
    {
        "torch-zip-expanded-fp16": (H.torch_zip_expanded_half, "zero or negative strides"),
        "torchscript-deflated-1GB": (H.torchscript_compressed_storage, "unpack to"),
        "torchscript-expanded-buffer": (H.torchscript_expanded, "zero or negative strides"),
    },
)


def test_views_that_are_not_expanded_still_load(tmp_path):
    base = torch.arange(12.0).reshape(3, 4)
    torch.save({"a": base.t(), "b": base[:, 1], "c": base.half()}, tmp_path / "w.pt")
    sd = read_state_dict(tmp_path / "w.pt")
    assert torch.equal(sd["a"], base.t()) and torch.equal(sd["b"], base[:, 1]) and sd["c"].dtype == torch.float32


def test_torchscript_pickles_that_are_not_utf8_or_malformed_are_faceedit_errors(tmp_path):
    src = H._script_save(H._TinyScript(), tmp_path / "tiny.pt")
    with zipfile.ZipFile(src) as z:
        data_pkl = next(n for n in z.namelist() if n.endswith("/data.pkl"))
    for name, pkl in {
        "latin": b"\x80\x02U\x02\xff\xfe.",  # a py2 str that is not UTF-8 (UnicodeDecodeError before)
        "pid": b"\x80\x02(X\x07\x00\x00\x00storageK\x01tQ.",  # a short persistent id (ValueError before)
        "cut": b"\x80\x02}q\x00(",
    }.items():
        bad = H._rezip(src, tmp_path / f"{name}.pt", {data_pkl: pkl}, set())
        with pytest.raises((InputError, UnsafeFileError)):
            read_state_dict(bad)


def test_files_that_are_not_weights_are_faceedit_errors(tmp_path):
    for name, data in {"junk.pt": b"PK\x03\x04junk", "empty.safetensors": b"", "text.bin": b"hello"}.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises((InputError, UnsafeFileError)):
            read_state_dict(tmp_path / name)

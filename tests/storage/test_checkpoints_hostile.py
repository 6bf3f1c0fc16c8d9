"""Checkpoint saves under kills, failures and concurrent writers: the last complete pair always loads.

A checkpoint is a manifest `<stem>.json` naming its weights file. Each save writes tensors whose
every value is the save's number `i`, and a manifest carrying the same `i` (and the writer's name),
so a loaded pair whose tensors and manifest disagree is caught, not only a pair that fails to load.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from faceedit_core.errors import InputError
from faceedit_core.storage import checkpoints
from tests.helpers.paths import REPO_ROOT


def _tensors(i: int) -> dict[str, torch.Tensor]:
    return {"a": torch.full((64, 64), float(i)), "b": torch.full((300,), float(i)).double()}


def _check_pair(stem, writer: str | None = None) -> int:
    """Load the checkpoint and return its save number, asserting tensors and manifest agree."""
    tensors, manifest = checkpoints.load(stem)
    i = manifest["i"]
    assert writer is None or manifest["writer"] == writer
    assert torch.all(tensors["a"] == i) and torch.all(tensors["b"] == i), f"tensors of save {i} do not match it"
    return i


def _leftovers(folder, stem_name: str) -> tuple[list[str], list[str]]:
    names = sorted(os.listdir(folder))
    tmp = [n for n in names if n.endswith(".tmp")]
    weights = [n for n in names if n.startswith(stem_name + ".") and n.endswith(".safetensors")]
    return tmp, weights


class Killed(BaseException):
    """What a kill looks like to the code under test: not an Exception, so nothing swallows it."""


@pytest.mark.parametrize("where", ["weights", "manifest"])
def test_a_save_interrupted_at_either_rename_leaves_the_previous_pair(tmp_path, monkeypatch, where):
    stem = tmp_path / "mapper"
    checkpoints.save(stem, _tensors(1), {"i": 1, "writer": "t"})
    real_replace = os.replace

    def dying_replace(src, dst, *a, **k):
        is_manifest = str(dst).endswith(".json")
        if is_manifest == (where == "manifest"):
            raise Killed(f"killed before renaming onto {dst}")
        return real_replace(src, dst, *a, **k)

    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(Killed):
        checkpoints.save(stem, _tensors(2), {"i": 2, "writer": "t"})
    monkeypatch.setattr(os, "replace", real_replace)
    assert _check_pair(stem) == 1
    checkpoints.save(stem, _tensors(3), {"i": 3, "writer": "t"})
    assert _check_pair(stem) == 3
    tmp, weights = _leftovers(tmp_path, "mapper")
    assert tmp == [] and len(weights) == 1, (tmp, weights)


@pytest.mark.slow
def test_random_kills_of_an_overwrite_loop_always_leave_a_loadable_pair(tmp_path):
    """SIGKILL a process that overwrites one checkpoint in a loop at random moments (30 times);
    after each kill the pair on disk loads and agrees with itself."""
    stem = tmp_path / "ckpt"
    checkpoints.save(stem, _tensors(0), {"i": 0, "writer": "t"})
    rng = random.Random(20)
    seen = set()
    for kill in range(30):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: overwrite forever, never return into pytest
            try:
                os.close(read_end)
                os.write(write_end, b"r")
                i = 1000 * (kill + 1)
                while True:
                    i += 1
                    checkpoints.save(stem, _tensors(i), {"i": i, "writer": "t"})
            finally:
                os._exit(0)
        os.close(write_end)
        assert os.read(read_end, 1) == b"r"
        os.close(read_end)
        time.sleep(rng.uniform(0.0, 0.3))
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        seen.add(_check_pair(stem))
    assert len(seen) > 10, f"the kills hit too few distinct saves ({sorted(seen)}): the loop did not run"
    checkpoints.save(stem, _tensors(7), {"i": 7, "writer": "t"})  # the next save cleans what kills left
    assert _check_pair(stem) == 7
    tmp, weights = _leftovers(tmp_path, "ckpt")
    assert tmp == [] and len(weights) == 1, (tmp, weights)


WRITER = textwrap.dedent(
    """
    import sys, torch
    from faceedit_core.storage import checkpoints
    stem, name, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for i in range(n):
        value = i + (0 if name == "A" else 10_000)
        tensors = {"a": torch.full((64, 64), float(value)), "b": torch.full((300,), float(value)).double()}
        checkpoints.save(stem, tensors, {"i": value, "writer": name})
        loaded, manifest = checkpoints.load(stem)
        j = manifest["i"]
        assert torch.all(loaded["a"] == j) and torch.all(loaded["b"] == j), (j, manifest)
    print("done", name)
    """
)


@pytest.mark.slow
def test_two_processes_saving_the_same_stem_40_times_never_fail_and_a_reader_always_loads(tmp_path):
    stem = tmp_path / "shared"
    checkpoints.save(stem, _tensors(-1), {"i": -1, "writer": "t"})
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(stem), name, "40"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for name in ("A", "B")
    ]
    reads, failures = 0, []
    while any(w.poll() is None for w in writers):  # read while they write (the reader takes no lock)
        try:
            _check_pair(stem)
            reads += 1
        except (InputError, AssertionError, OSError) as exc:
            failures.append(f"{type(exc).__name__}: {exc}")
        time.sleep(0.002)
    outputs = [w.communicate() for w in writers]
    for w, (out, err) in zip(writers, outputs):
        assert w.returncode == 0 and out.startswith("done"), err[-2000:]
    assert failures == [], failures[:5]
    assert reads > 0
    assert _check_pair(stem) in (39, 10_039)
    tmp, weights = _leftovers(tmp_path, "shared")
    assert tmp == [] and len(weights) == 1, (tmp, weights)


def test_a_manifest_that_is_not_ours_is_an_input_error(tmp_path):
    stem = tmp_path / "x"
    checkpoints.save(stem, _tensors(1), {"i": 1, "writer": "t"})
    manifest = checkpoints.manifest_path(stem)
    for text in (b"[" * 100_000, b"\xff\xfe not utf-8", b'{"weights_file": "../../etc/passwd.safetensors"}'):
        manifest.write_bytes(text)
        with pytest.raises(InputError):
            checkpoints.load(stem)
    manifest.write_bytes(b" " * (checkpoints.MAX_MANIFEST_BYTES + 1))
    with pytest.raises(InputError, match="over"):
        checkpoints.load(stem)


def test_saving_one_stem_keeps_another_stems_files(tmp_path):
    checkpoints.save(tmp_path / "run", _tensors(1), {"i": 1, "writer": "t"})
    checkpoints.save(tmp_path / "run.best", _tensors(2), {"i": 2, "writer": "t"})
    (tmp_path / "run.best.safetensors").write_bytes(b"an older stem's weights")
    (tmp_path / ".run.best.json.abc123.tmp").write_bytes(b"a live temporary of another stem")
    checkpoints.save(tmp_path / "run", _tensors(3), {"i": 3, "writer": "t"})
    assert (tmp_path / "run.best.safetensors").exists() and (tmp_path / ".run.best.json.abc123.tmp").exists()
    assert _check_pair(tmp_path / "run.best") == 2 and _check_pair(tmp_path / "run") == 3

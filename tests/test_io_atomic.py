"""io.save replaces the weights and their JSON as a pair: a save killed at any point leaves the
old pair or the new pair loadable, never a mixture or nothing (issue 18).

Each kill is simulated by raising from inside io.save at one step (monkeypatch), with the file
being written cut to half its length where the step is a write, as a real kill could leave it.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from minisegnet import io, models


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (not even except Exception clauses)."""


def _model(seed):
    return models.build("segnet_basic", 3, preset="small", seed=seed)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


# the steps of io.save, in order, and which pair must load after a kill just before (or, for
# "during", in the middle of) each
KILLS = [
    ("before the weights are written", "old"),
    ("during the weights write", "old"),
    ("before the weights are flushed", "old"),
    ("before the weights are hashed", "old"),
    ("during the JSON write", "old"),
    ("before the weights are renamed", "old"),
    ("between the two renames", "new"),
    ("never", "new"),
]


def _killing_save(monkeypatch, kill, model, path, extra):
    import safetensors.numpy

    real_save_file, real_fsync_file = safetensors.numpy.save_file, io._fsync_file
    real_sha256, real_fsync, real_replace = io._sha256, io.os.fsync, io.os.replace
    renames = []

    def save_file(tensors, filename, metadata=None):
        if kill == "before the weights are written":
            raise Killed
        real_save_file(tensors, filename, metadata=metadata)
        if kill == "during the weights write":
            _truncate(io._tmp(path.with_suffix(".safetensors")))
            raise Killed

    def fsync_file(p):
        if kill == "before the weights are flushed":
            raise Killed
        real_fsync_file(p)

    def sha256(p):
        if kill == "before the weights are hashed":
            raise Killed
        return real_sha256(p)

    def fsync(fd):
        json_tmp = io._tmp(path.with_suffix(".json"))
        if kill == "during the JSON write" and json_tmp.exists():  # not the weights' fsync
            _truncate(json_tmp)
            raise Killed
        real_fsync(fd)

    def replace(src, dst):
        renames.append(dst)
        if kill == "before the weights are renamed" and len(renames) == 1:
            raise Killed
        if kill == "between the two renames" and len(renames) == 2:
            raise Killed
        real_replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr(safetensors.numpy, "save_file", save_file)
        m.setattr(io, "_fsync_file", fsync_file)
        m.setattr(io, "_sha256", sha256)
        m.setattr(io.os, "fsync", fsync)
        m.setattr(io.os, "replace", replace)
        try:
            io.save(model, path, extra=extra)
        except Killed:
            return False
    return True


def _same_weights(model, other) -> bool:
    a, b = model.state_dict(), other.state_dict()
    return set(a) == set(b) and all(np.array_equal(np.asarray(a[k]), np.asarray(b[k])) for k in a)


@pytest.mark.parametrize("kill,survivor", KILLS, ids=[k for k, _ in KILLS])
def test_a_killed_save_leaves_the_old_or_the_new_pair(tmp_path, monkeypatch, kill, survivor):
    old, new = _model(0), _model(1)
    assert not _same_weights(old, new)
    path = tmp_path / "model"
    io.save(old, path, extra={"which": "old"})

    finished = _killing_save(monkeypatch, kill, new, path, {"which": "new"})
    assert finished == (kill == "never")

    loaded = io.load_model(path)  # the sha256 in the JSON is checked against the weights
    expected = old if survivor == "old" else new
    assert _same_weights(loaded, expected)
    assert io.read_config(path)["extra"] == {"which": survivor}
    assert json.loads((tmp_path / "model.json").read_text())["extra"] == {"which": survivor}

    # the next save is not disturbed by what the killed one left behind
    io.save(old, path, extra={"which": "again"})
    assert _same_weights(io.load_model(path), old)
    assert io.read_config(path)["extra"] == {"which": "again"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]


def test_the_pending_json_is_used_when_the_folder_is_read_only(tmp_path, monkeypatch):
    """Between the renames, in a folder that cannot be written now: the new pair still loads."""
    old, new = _model(0), _model(1)
    path = tmp_path / "model"
    io.save(old, path, extra={"which": "old"})
    _killing_save(monkeypatch, "between the two renames", new, path, {"which": "new"})

    def refuse(src, dst):
        raise PermissionError(13, "Permission denied", str(dst))

    monkeypatch.setattr(io.os, "replace", refuse)
    assert io.read_config(path)["extra"] == {"which": "new"}
    assert _same_weights(io.load_model(path), new)
    assert json.loads((tmp_path / "model.json").read_text())["extra"] == {"which": "old"}


def test_a_stale_pending_json_is_ignored(tmp_path):
    """A temporary JSON left by a save killed before its weights arrived records other weights:
    it is not taken for the current pair's."""
    old, new = _model(0), _model(1)
    path = tmp_path / "model"
    io.save(new, path, extra={"which": "new"})
    io.save(old, path, extra={"which": "old"})
    (tmp_path / "model.json").rename(tmp_path / ".model.json.tmp")  # records the old weights
    io.save(new, path, extra={"which": "new"})
    (tmp_path / ".model.json.tmp").write_text((tmp_path / "model.json").read_text())
    io.save(old, path, extra={"which": "old"})
    # the leftover was overwritten by that save and renamed: nothing pending remains
    assert not (tmp_path / ".model.json.tmp").exists()
    stale = json.loads((tmp_path / "model.json").read_text())
    stale["extra"] = {"which": "stale"}
    stale["sha256"] = "0" * 64
    (tmp_path / ".model.json.tmp").write_text(json.dumps(stale))
    assert io.read_config(path)["extra"] == {"which": "old"}
    assert _same_weights(io.load_model(path), old)

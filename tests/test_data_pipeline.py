"""The CamVid training pipeline: ScaledCrop is RandomScale + RandomCrop without the wasted
pixels, threaded decoding changes nothing, and the epoch log shows data against compute time."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minisegnet.data import CamVid, DataLoader, transforms
from tests.camvid_fixture import camvid_train_args, make_camvid


@pytest.mark.parametrize("size, low, high", [(16, 0.5, 2.0), (40, 0.5, 1.5), (8, 1.0, 1.0)])
def test_scaled_crop_equals_scale_then_crop(size, low, high):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (27, 35, 3), dtype=np.uint8)
    label = rng.integers(0, 12, (27, 35)).astype(np.uint8)
    slow = transforms.Compose([transforms.RandomScale(low, high), transforms.RandomCrop(size, 255)])
    fast = transforms.ScaledCrop(size, low, high, 255)
    for seed in range(20):
        a_img, a_lab = slow(image, label, np.random.default_rng(seed))
        b_img, b_lab = fast(image, label, np.random.default_rng(seed))
        np.testing.assert_allclose(transforms.to_float(a_img), b_img, atol=1e-6)
        np.testing.assert_array_equal(a_lab, b_lab)
        assert b_img.shape == (size, size, 3)


def test_train_transform_uses_scaled_crop():
    tf = transforms.train_transform(32)
    assert isinstance(tf.transforms[0], transforms.ScaledCrop)
    assert isinstance(
        transforms.train_transform(32, scale=None).transforms[0], transforms.RandomCrop
    )


def test_threaded_loading_gives_the_same_batches(tmp_path):
    ds = CamVid(make_camvid(tmp_path), "train")
    tf = transforms.train_transform(16)
    one = DataLoader(ds, 3, tf, shuffle=True, seed=1, workers=1)
    three = DataLoader(ds, 3, tf, shuffle=True, seed=1, workers=3)
    for (xa, ya), (xb, yb) in zip(one.epoch(2), three.epoch(2)):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert three.load_seconds > 0
    with pytest.raises(ValueError, match="workers must be a positive integer"):
        DataLoader(ds, 3, tf, workers=0)


def test_epoch_log_shows_data_and_compute_time(tmp_path, capsys):
    from minisegnet.cli import main

    root = make_camvid(tmp_path / "c")
    run = tmp_path / "run"
    args = camvid_train_args(root)
    assert main([*args, "--no-progress", "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "s loading" in out and "waited for, compute" in out
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert record["data_load_seconds"] > 0 and record["compute_seconds"] > 0
    assert record["data_wait_seconds"] >= 0

"""predict's pictures carry a legend (minisegnet/legend.py); the run's predictions.png shows
frames spread over the split."""

from __future__ import annotations

import numpy as np
from PIL import Image

from minisegnet.data.folders import CAMVID_CLASSES
from minisegnet.data.palette import CAMVID_PALETTE
from minisegnet.legend import legend_strip, with_legend, write_prediction
from minisegnet.train import preview_indices


def _has_colour(picture, colour) -> bool:
    return bool((np.asarray(picture)[..., :3] == np.asarray(colour)).all(-1).any())


def test_legend_strip_draws_a_swatch_per_class_and_wraps():
    wide = legend_strip(600, [0, 3, 8], CAMVID_PALETTE, CAMVID_CLASSES)
    narrow = legend_strip(60, [0, 3, 8], CAMVID_PALETTE, CAMVID_CLASSES)
    assert wide.shape[1] == 600 and narrow.shape[1] == 60
    assert narrow.shape[0] > wide.shape[0]  # one entry per row
    for c in (0, 3, 8):
        assert _has_colour(wide, CAMVID_PALETTE[c]) and _has_colour(narrow, CAMVID_PALETTE[c])
    assert not _has_colour(wide, CAMVID_PALETTE[6])  # sign is not listed
    picture = np.zeros((20, 600, 3), np.uint8)
    assert with_legend(picture, [0], CAMVID_PALETTE, CAMVID_CLASSES).shape[0] > 20


def test_write_prediction_files(tmp_path):
    image = np.random.default_rng(0).integers(0, 256, (36, 48, 3), dtype=np.uint8)
    pred = np.zeros((36, 48), np.int64)
    pred[:, 24:] = 6  # sky and sign
    paths = write_prediction(tmp_path, "f", image, pred, CAMVID_PALETTE, CAMVID_CLASSES)
    mask = Image.open(paths["mask"])
    assert np.array_equal(np.array(mask), pred) and mask.info["classes"].startswith("0=sky")
    over = np.array(Image.open(paths["overlay"]))
    assert over.shape[1] == 48 and over.shape[0] > 36
    assert _has_colour(over[36:], CAMVID_PALETTE[6]) and _has_colour(over[36:], CAMVID_PALETTE[0])
    assert Image.open(paths["figure"]).size[0] > 3 * 48


def test_preview_frames_are_spread_over_the_split():
    assert preview_indices(101, 6) == [0, 20, 40, 60, 80, 100]
    assert preview_indices(3, 6) == [0, 1, 2]
    assert preview_indices(10, 1) == [0] and preview_indices(10, 0) == []

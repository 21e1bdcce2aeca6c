"""The built-in dataset: deterministic, labels in range, every class present, not solvable by
colour alone."""

from __future__ import annotations

import numpy as np
import pytest

from minisegnet.data import SyntheticShapes, open_dataset
from minisegnet.data import synthetic as syn


def test_same_seed_same_data_and_prefixes_agree():
    a_img, a_lab = syn.generate(70, 32, seed=3)
    b_img, b_lab = syn.generate(70, 32, seed=3)
    np.testing.assert_array_equal(a_img, b_img)
    np.testing.assert_array_equal(a_lab, b_lab)
    # image i depends only on (seed, stream, i), not on how many were asked for
    c_img, c_lab = syn.generate(5, 32, seed=3)
    np.testing.assert_array_equal(c_img, a_img[:5])
    np.testing.assert_array_equal(c_lab, a_lab[:5])


def test_seeds_and_splits_differ():
    a, _ = syn.generate(4, 32, seed=0)
    b, _ = syn.generate(4, 32, seed=1)
    assert not np.array_equal(a, b)
    train = SyntheticShapes("train", size=32, length=4, seed=0)
    val = SyntheticShapes("val", size=32, length=4, seed=0)
    assert not np.array_equal(train.images, val.images)


def test_shapes_dtypes_and_label_range():
    ds = open_dataset("builtin", "train", size=48, length=200, seed=0)
    assert len(ds) == 200 and ds.num_classes == len(ds.class_names) == 5
    image, label = ds[0]
    assert image.shape == (48, 48, 3) and image.dtype == np.uint8
    assert label.shape == (48, 48) and label.dtype == np.uint8
    values = np.unique(ds.labels)
    assert values.min() >= 0 and values.max() < ds.num_classes  # no ignore pixels
    assert set(values.tolist()) == set(range(ds.num_classes)), "every class must occur"
    counts = np.bincount(ds.labels.reshape(-1), minlength=5)
    assert (counts[1:] / counts.sum() > 0.01).all(), "object classes are not vanishingly rare"
    assert ds.palette.shape == (5, 3)


def test_colour_alone_does_not_tell_the_classes_apart():
    """The best colour -> class lookup (a histogram of quantised colours fitted on one set of
    images) scores near chance (0.25 for four object classes) on another set."""

    def codes(seed):
        images, labels = syn.generate(150, 48, seed=seed)
        obj = labels > 0
        q = (images[obj] // 32).astype(np.int64)  # 8 levels per channel
        return q[:, 0] * 64 + q[:, 1] * 8 + q[:, 2], labels[obj].astype(np.int64)

    code, cls = codes(5)
    table = np.zeros((512, 5), dtype=np.int64)
    np.add.at(table, (code, cls), 1)
    code, cls = codes(6)
    accuracy = (table.argmax(axis=1)[code] == cls).mean()
    assert accuracy < 0.4, f"colour predicts the object class too well ({accuracy:.2f})"


def test_hundreds_of_images_in_seconds():
    import time

    t0 = time.perf_counter()
    syn.generate(256, 64, seed=0)
    assert time.perf_counter() - t0 < 10  # about 0.4 s on the 2-core machine


@pytest.mark.parametrize("kwargs, match", [
    ({"n": -1}, "n must be"), ({"n": 2, "size": 4}, "size must be"),
    ({"n": 2, "seed": -3}, "seed must be"),
])  # fmt: skip
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        syn.generate(**kwargs)


def test_bad_split():
    with pytest.raises(ValueError, match="split must be one of"):
        SyntheticShapes("training")

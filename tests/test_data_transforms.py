"""Transforms keep labels integral (nearest neighbour, only known values or the ignore value) and
aligned with the image; the loader is deterministic, threaded and reports loading errors;
median frequency weights match a hand computation."""

from __future__ import annotations

import numpy as np
import pytest

from minisegnet.data import DataError, DataLoader, median_frequency_weights
from minisegnet.data import transforms as T


def blocks(h=40, w=56, seed=0, block=8):
    """A label map of ``block`` x ``block`` squares of classes 0..4, and an image whose red channel is 40 * class:
    wherever a transform keeps them aligned, round(red / 40) equals the label."""
    rng = np.random.default_rng(seed)
    label = np.kron(rng.integers(0, 5, (h // block, w // block)), np.ones((block, block), np.int64))
    label = label.astype(np.uint8)
    image = np.zeros((h, w, 3), dtype=np.uint8)
    image[..., 0] = label * 40
    image[..., 1] = 100
    return image, label


def interior(label, r=1):
    """Pixels whose (2r+1)^2 neighbourhood holds one label (bilinear cannot blur them)."""
    pad = np.pad(label.astype(np.int64), r, constant_values=-1)
    same = np.ones(label.shape, dtype=bool)
    h, w = label.shape
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            same &= pad[r + dy : r + dy + h, r + dx : r + dx + w] == label
    return same


def check_aligned(image, label, ignore=255, min_fraction=0.3, r=1):
    image = T.to_float(image)
    values = set(np.unique(label).tolist())
    assert values <= set(range(5)) | {ignore}, f"invented label values {values}"
    assert label.dtype.kind in "iu"
    inner = interior(label, r) & (label != ignore)
    assert inner.mean() > min_fraction * (label != ignore).mean()
    decoded = np.round(image[..., 0] * 255 / 40)
    np.testing.assert_array_equal(decoded[inner], label[inner])


@pytest.mark.parametrize("transform", [
    T.RandomScale(0.5, 2.0), T.RandomCrop(32), T.RandomCrop(64), T.RandomHorizontalFlip(1.0),
    T.RandomRotation(30), T.Resize(37), T.Resize((20, 90)), T.CenterCrop(24), T.CenterCrop(70),
])  # fmt: skip
def test_labels_stay_integral_and_aligned(transform):
    for seed in range(4):
        image, label = blocks(seed=seed)
        out_image, out_label = transform(image, label, np.random.default_rng(seed))
        assert out_image.shape[:2] == out_label.shape
        check_aligned(out_image, out_label)


def test_composed_augmentation_stays_aligned():
    # two resamplings in a row blur the image over two pixels: check 5x5 interiors
    tf = T.Compose(
        [T.RandomScale(0.7, 1.6), T.RandomCrop(40), T.RandomHorizontalFlip(), T.RandomRotation(10)]
    )
    for seed in range(6):
        image, label = blocks(64, 64, seed=seed, block=16)
        out_image, out_label = tf(image, label, np.random.default_rng(seed))
        assert out_label.shape == (40, 40)
        check_aligned(out_image, out_label, r=2)


def test_padding_uses_the_ignore_value():
    image, label = blocks(16, 16)
    _, out = T.RandomCrop(24, ignore_index=255)(image, label, np.random.default_rng(0))
    assert out.shape == (24, 24)
    assert (out[16:, :] == 255).all() and (out[:, 16:] == 255).all()
    assert (out[:16, :16] == label).all()


def test_rotation_fills_corners_with_ignore():
    image, label = blocks(40, 40)
    for seed in range(6):
        angle = np.random.default_rng(seed).uniform(-45, 45)  # the angle the transform draws
        _, out = T.RandomRotation(45)(image, label, np.random.default_rng(seed))
        corners = out[[0, 0, -1, -1], [0, -1, 0, -1]]
        assert (corners == 255).all() == (abs(angle) > 5), (angle, corners)


def test_flip_mirrors_both():
    image, label = blocks()
    out_image, out_label = T.RandomHorizontalFlip(1.0)(image, label, np.random.default_rng(0))
    np.testing.assert_array_equal(out_label, label[:, ::-1])
    np.testing.assert_array_equal(out_image, image[:, ::-1])


def test_colour_jitter_changes_only_the_image():
    image, label = blocks()
    out_image, out_label = T.ColorJitter(0.4, 0.4, 0.4)(image, label, np.random.default_rng(0))
    assert out_label is label
    assert out_image.dtype == np.float32 and 0 <= out_image.min() and out_image.max() <= 1
    assert not np.allclose(out_image, T.to_float(image))


def test_normalize_gives_chw_float32_and_int64_labels():
    image, label = blocks()
    x, y = T.Normalize()(image, label)
    assert x.shape == (3, 40, 56) and x.dtype == np.float32
    assert y.dtype == np.int64
    expected = (100 / 255 - T.IMAGENET_MEAN[1]) / T.IMAGENET_STD[1]
    np.testing.assert_allclose(x[1], expected, rtol=1e-5)


def test_resize_nearest_picks_centres():
    label = np.array([[1, 2], [3, 4]], dtype=np.uint8)
    _, up = T.resize(None, label, 4, 4)
    np.testing.assert_array_equal(up, np.kron(label, np.ones((2, 2), dtype=np.uint8)))


def test_mismatched_sizes_are_refused():
    image, label = blocks()
    with pytest.raises(ValueError, match="differ"):
        T.Compose([T.RandomHorizontalFlip()])(image[:-1], label, np.random.default_rng(0))


# --------------------------------------------------------------------------- loader


class Toy:
    num_classes, ignore_index = 5, 255
    class_names = tuple("abcde")

    def __init__(self, n=10, fail_at=None):
        self.n, self.fail_at = n, fail_at

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.fail_at:
            raise DataError(f"label item{i}.png holds values [9] that are neither a class")
        image, label = blocks(16, 16, seed=i)
        return image, label


def test_loader_batches_and_is_deterministic():
    tf = T.Compose(
        [T.RandomScale(0.8, 1.2), T.RandomCrop(12), T.RandomHorizontalFlip(), T.Normalize()]
    )
    a = DataLoader(Toy(10), batch_size=4, transform=tf, shuffle=True, seed=3)
    b = DataLoader(Toy(10), batch_size=4, transform=tf, shuffle=True, seed=3, prefetch=0)
    assert len(a) == 3
    ea, eb = list(a.epoch(1)), list(b.epoch(1))
    assert [x.shape for x, _ in ea] == [(4, 3, 12, 12), (4, 3, 12, 12), (2, 3, 12, 12)]
    for (xa, ya), (xb, yb) in zip(ea, eb):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
        assert ya.dtype == np.int64
    # resuming inside an epoch serves the very same remaining batches
    tail = list(a.epoch(1, start_batch=1))
    for (xa, _), (xt, _) in zip(ea[1:], tail):
        np.testing.assert_array_equal(xa, xt)
    # epochs are shuffled differently; every sample is served once
    assert not np.array_equal(a.order(0), a.order(1))
    assert sorted(a.order(1).tolist()) == list(range(10))
    assert DataLoader(Toy(10), 4, drop_last=True).__len__() == 2


def test_loader_reraises_errors_of_the_thread():
    loader = DataLoader(Toy(10, fail_at=6), batch_size=2)
    with pytest.raises(DataError, match="item6.png"):
        for _ in loader.epoch(0):
            pass


def test_loader_can_be_abandoned_midway():
    import threading

    before = threading.active_count()
    loader = DataLoader(Toy(40), batch_size=2, prefetch=1)
    for i, _ in enumerate(loader.epoch(0)):
        if i == 2:
            break
    assert threading.active_count() == before


def test_loader_uses_a_thread_not_a_process():
    import threading

    names = []

    class Spy(Toy):
        def __getitem__(self, i):
            names.append(threading.current_thread().name)
            return super().__getitem__(i)

    list(DataLoader(Spy(4), batch_size=2).epoch(0))  # the prefetch thread's decoding pool
    assert names and all(n.startswith("minisegnet-load_") for n in names), names
    names.clear()
    list(DataLoader(Spy(4), batch_size=2, workers=1).epoch(0))  # the prefetch thread itself
    assert set(names) == {"minisegnet-loader"}


# --------------------------------------------------------------------------- class weights


def test_median_frequency_weights_by_hand():
    a = np.array([[0, 0, 0, 1]])  # 4 labelled pixels, classes 0 and 1
    b = np.array([[0, 2, 255, 255]])  # 2 labelled pixels, classes 0 and 2
    w = median_frequency_weights([a, b], num_classes=4)
    # freq(0) = 4 / 6, freq(1) = 1 / 4, freq(2) = 1 / 2 (only images containing c count);
    # class 3 never appears: weight 0, left out of the median (median of 2/3, 1/4, 1/2 = 1/2)
    np.testing.assert_allclose(w, [0.5 / (4 / 6), 0.5 / 0.25, 1.0, 0.0], rtol=1e-6)


def test_median_frequency_weights_refuse_bad_labels():
    with pytest.raises(ValueError, match=r"\[7\]"):
        median_frequency_weights([np.array([[0, 7]])], num_classes=3)

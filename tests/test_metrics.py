"""Metrics against confusion matrices and scores computed by hand (FCN paper definitions)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from minisegnet import metrics


def test_confusion_matrix_by_hand_with_ignore():
    target = np.array([[0, 0, 1], [2, 255, 1]])
    pred = np.array([[0, 1, 1], [1, 2, 1]])  # the 255 pixel's prediction (2) must not count
    n = metrics.confusion_matrix(pred, target, 3)
    expected = np.array([[1, 1, 0], [0, 2, 0], [0, 1, 0]])
    np.testing.assert_array_equal(n, expected)
    assert n.dtype == np.int64


def test_scores_by_hand():
    n = np.array([[1, 1, 0], [0, 2, 0], [0, 1, 0]])
    s = metrics.scores(n)
    # t = [2, 2, 1], p = [1, 4, 0], tp = [1, 2, 0]
    assert s["pixel_acc"] == pytest.approx(3 / 5)
    assert s["mean_acc"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    iou = [1 / (2 + 1 - 1), 2 / (2 + 4 - 2), 0 / (1 + 0 - 0)]
    np.testing.assert_allclose(s["iou"], iou)
    assert s["miou"] == pytest.approx(np.mean(iou))
    assert s["fwiou"] == pytest.approx(2 / 5 * iou[0] + 2 / 5 * iou[1] + 1 / 5 * iou[2])


def test_worked_example_of_the_docstring():
    n = metrics.confusion_matrix(np.array([0, 1, 1, 0]), np.array([0, 0, 1, 255]), 2)
    np.testing.assert_array_equal(n, [[1, 1], [0, 1]])
    s = metrics.scores(n)
    assert s["pixel_acc"] == pytest.approx(2 / 3)
    assert s["miou"] == pytest.approx(0.5)
    assert s["fwiou"] == pytest.approx(0.5)


def test_class_absent_from_truth_and_prediction_is_left_out():
    # class 2 never occurs in either: it must not drag the means down with a 0 (or a NaN)
    n = np.array([[3, 1, 0], [1, 3, 0], [0, 0, 0]])
    s = metrics.scores(n)
    assert math.isnan(s["iou"][2]) and math.isnan(s["acc"][2])
    assert s["miou"] == pytest.approx(np.mean([3 / 5, 3 / 5]))
    assert s["mean_acc"] == pytest.approx(0.75)
    assert s["fwiou"] == pytest.approx(3 / 5)


def test_class_predicted_but_absent_from_truth_counts_as_zero_iou():
    n = np.array([[3, 1], [0, 0]])  # one pixel of class 0 predicted as 1, no true 1
    s = metrics.scores(n)
    assert s["iou"][1] == 0.0
    assert s["miou"] == pytest.approx((3 / 4 + 0) / 2)
    assert math.isnan(s["acc"][1])
    assert s["mean_acc"] == pytest.approx(3 / 4)  # accuracy undefined for it: left out


def test_accumulated_matrix_not_per_image_mean():
    # image 1: tiny and wrong; image 2: big and right. Per-image averaging would give 0.5.
    t1, p1 = np.array([1]), np.array([0])
    t2, p2 = np.array([1] * 99), np.array([1] * 99)
    meter = metrics.ConfusionMeter(2)
    meter.add(p1, t1)
    meter.add(p2, t2)
    s = meter.scores()
    assert s["pixel_acc"] == pytest.approx(0.99)
    # IoU of class 1: 99 / (100 + 99 - 99); class 0: 0 / (0 + 1 - 0)
    assert s["miou"] == pytest.approx((99 / 100 + 0) / 2)


@given(st.integers(0, 10_000), st.integers(1, 5))
def test_matrices_of_batches_add(seed, k):
    rng = np.random.default_rng(seed)
    target = rng.integers(0, k, (3, 5, 7))
    target[rng.random(target.shape) < 0.2] = 255
    pred = rng.integers(0, k, (3, 5, 7))
    whole = metrics.confusion_matrix(pred, target, k)
    parts = sum(metrics.confusion_matrix(pred[i], target[i], k) for i in range(3))
    np.testing.assert_array_equal(whole, parts)
    assert whole.sum() == (target != 255).sum()


def test_perfect_prediction_scores_one():
    target = np.array([[0, 1], [2, 255]])
    s = metrics.scores(metrics.confusion_matrix(np.array([[0, 1], [2, 0]]), target, 3))
    assert s["pixel_acc"] == s["mean_acc"] == s["miou"] == s["fwiou"] == 1.0


@pytest.mark.parametrize(
    "pred, target, match",
    [
        (np.array([0, 1]), np.array([0]), "shape"),
        (np.array([0.0, 1.0]), np.array([0, 1]), "integer"),
        (np.array([0, 1]), np.array([0, 7]), r"target holds values \[7\]"),
        (np.array([0, 5]), np.array([0, 1]), r"pred holds values \[5\]"),
    ],
)
def test_bad_inputs_name_the_problem(pred, target, match):
    with pytest.raises((ValueError, TypeError), match=match):
        metrics.confusion_matrix(pred, target, 3)


def test_format_table_lists_every_class():
    s = metrics.scores(np.array([[3, 1], [0, 0]]))
    table = metrics.format_table(s, ["bg", "thing"])
    assert "| thing |   0.0 |   n/a |" in table
    assert "mean IoU |  37.5" in table

"""Cross-entropy: values against a direct formula, gradients, weights, ignore label, errors."""

from __future__ import annotations

import numpy as np
import pytest

import minisegnet as ms
import minisegnet.functional as F
from minisegnet.gradcheck import gradcheck
from tests.helpers import assert_cross_entropy_matches_torch


def _direct(logits, target, weight=None, ignore_index=255):
    """Loss written the slow, obvious way: one position at a time."""
    z = np.moveaxis(logits, 1, -1).reshape(-1, logits.shape[1])
    t = target.reshape(-1)
    total, norm = 0.0, 0.0
    for zi, ti in zip(z, t):
        if ti == ignore_index:
            continue
        w = 1.0 if weight is None else weight[ti]
        total += -w * (zi[ti] - np.log(np.exp(zi - zi.max()).sum()) - zi.max())
        norm += w
    return total, norm


@pytest.mark.parametrize("spatial", [False, True])
@pytest.mark.parametrize("weighted", [False, True])
def test_values_match_direct_formula(spatial, weighted):
    rng = np.random.default_rng(0)
    shape = (3, 5, 4, 6) if spatial else (7, 5)
    logits = rng.normal(0, 3, shape)
    target = rng.integers(0, 5, (shape[0],) + shape[2:])
    target.reshape(-1)[::4] = 255
    weight = rng.uniform(0.2, 3.0, 5) if weighted else None
    total, norm = _direct(logits, target, weight)
    x = ms.tensor(logits, dtype=np.float64)
    np.testing.assert_allclose(F.cross_entropy(x, target, weight).item(), total / norm, rtol=1e-12)
    np.testing.assert_allclose(
        F.cross_entropy(x, target, weight, reduction="sum").item(), total, rtol=1e-12
    )
    none = F.cross_entropy(x, target, weight, reduction="none")
    assert none.shape == target.shape
    assert np.all(none.numpy()[target == 255] == 0)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_gradcheck_with_weights_and_ignored_pixels(reduction):
    rng = np.random.default_rng(1)
    x = ms.tensor(rng.normal(0, 2, (2, 4, 3, 3)), dtype=np.float64, requires_grad=True)
    target = rng.integers(0, 4, (2, 3, 3))
    target[0, 1, :] = 255
    weight = np.array([0.5, 1.0, 2.0, 3.0])
    assert gradcheck(lambda x: F.cross_entropy(x, target, weight, reduction=reduction), [x])


def test_large_logits_are_stable():
    x = ms.tensor([[1000.0, 0.0, -1000.0]], requires_grad=True)
    loss = F.cross_entropy(x, [0])
    assert np.isfinite(loss.item()) and loss.item() == pytest.approx(0.0, abs=1e-6)
    loss.backward()
    assert np.all(np.isfinite(x.grad))


def test_all_ignored_gives_zero_loss_and_zero_gradient():
    x = ms.tensor(np.ones((1, 3, 2, 2)), requires_grad=True)
    loss = F.cross_entropy(x, np.full((1, 2, 2), 255))
    assert loss.item() == 0.0
    loss.backward()
    assert np.all(x.grad == 0)


def test_custom_ignore_index():
    x = ms.tensor(np.zeros((2, 3)))
    assert F.cross_entropy(x, [-1, 1], ignore_index=-1).item() == pytest.approx(np.log(3))


def test_label_out_of_range_is_reported_with_values():
    x = ms.tensor(np.zeros((1, 3, 2, 2)))
    with pytest.raises(ValueError, match=r"values \[3, 7\].*\[0, 3\).*ignore_index=255"):
        F.cross_entropy(x, np.array([[[0, 3], [7, 255]]]))
    with pytest.raises(ValueError, match=r"\[-2\]"):
        F.cross_entropy(x, np.array([[[0, -2], [1, 1]]]))


def test_shape_and_dtype_errors_name_the_argument():
    x = ms.tensor(np.zeros((2, 3, 4, 4)))
    with pytest.raises(ValueError, match=r"target must have shape \(2, 4, 4\).*got \(2, 4, 5\)"):
        F.cross_entropy(x, np.zeros((2, 4, 5), int))
    with pytest.raises(TypeError, match="target must hold integer"):
        F.cross_entropy(x, np.zeros((2, 4, 4)))
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\)"):
        F.cross_entropy(x, np.zeros((2, 4, 4), int), weight=np.ones(4))
    with pytest.raises(ValueError, match="input must be"):
        F.cross_entropy(ms.tensor(np.zeros((2, 3, 4))), np.zeros((2, 4), int))
    with pytest.raises(ValueError, match="reduction"):
        F.cross_entropy(x, np.zeros((2, 4, 4), int), reduction="avg")
    with pytest.raises(TypeError, match="input must be a minisegnet Tensor"):
        F.cross_entropy(np.zeros((2, 3)), [0, 1])


def test_matches_torch_when_available():
    pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 1, (2, 4, 3, 5)).astype(np.float32)
    target = rng.integers(0, 4, (2, 3, 5))
    target[1, 0, :] = 255
    weight = np.array([1.0, 2.0, 0.5, 1.5], np.float32)
    assert_cross_entropy_matches_torch(logits, target, weight, grad_atol=1e-7)

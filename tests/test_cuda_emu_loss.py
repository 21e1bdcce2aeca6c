"""Softmax cross-entropy CUDA kernels (minisegnet/cuda/loss.py) on cuda-emu."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import assert_matches
from tests.test_cuda_common import FLOATS, cross_entropy_np, needs_emu, ops_ref, rand

CASES = [((2, 4, 3, 5), True), ((2, 4, 3, 5), False), ((6, 5), True), ((1, 21, 4, 4), True)]

pytestmark = needs_emu


def _inputs(shape, dtype, weighted, seed=0):
    rng = np.random.default_rng(seed)
    logits = rand(shape, dtype, low=-4, high=4)
    target_shape = (shape[0],) + shape[2:]
    target = rng.integers(0, shape[1], size=target_shape)
    target.reshape(-1)[::3] = 255  # every third position ignored
    weight = rand((shape[1],), dtype, seed=seed + 1, low=0.1, high=2.0) if weighted else None
    return logits, target, weight


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,weighted", CASES)
def test_cross_entropy_forward_backward(shape, weighted, dtype):
    from minisegnet.cuda.loss import cross_entropy_backward, cross_entropy_forward

    logits, target, weight = _inputs(shape, dtype, weighted)
    loss, wpos = cross_entropy_forward(logits, target, weight, 255)
    loss_np, wpos_np, softmax = cross_entropy_np(logits, target, weight, 255)
    assert loss.shape == target.shape and loss.dtype == dtype
    assert_matches(loss, loss_np, dtype, "loss")
    assert_matches(wpos, wpos_np, dtype, "weight per position")
    assert (loss[target == 255] == 0).all()
    scale = rand(target.shape, dtype, seed=7)
    dz = cross_entropy_backward(logits, target, weight, 255, scale)
    onehot = np.eye(shape[1])[np.where(target == 255, 0, target)]
    expected = (softmax - onehot) * (wpos_np * scale)[..., None]  # (N, ..., C)
    assert_matches(dz, np.moveaxis(expected, -1, 1), dtype, "dlogits")
    dz1 = cross_entropy_backward(logits, target, weight, 255, dtype(0.25))  # one scale for all
    assert_matches(dz1, np.moveaxis((softmax - onehot) * wpos_np[..., None] * 0.25, -1, 1), dtype)


def test_extreme_logits_stay_finite():
    from minisegnet.cuda.loss import cross_entropy_backward, cross_entropy_forward

    logits = np.array([[1000.0, -1000.0, 0.0]], np.float32)
    loss, _ = cross_entropy_forward(logits, np.array([1]), None, -100)
    assert np.isfinite(loss).all() and loss[0] == pytest.approx(2000.0)
    dz = cross_entropy_backward(logits, np.array([1]), None, -100, np.ones(1, np.float32))
    np.testing.assert_allclose(dz, [[1.0, -1.0, 0.0]], atol=1e-6)


@pytest.mark.parametrize("dtype", FLOATS)
def test_against_the_ops_reference(dtype):
    from minisegnet.cuda.loss import cross_entropy_backward, cross_entropy_forward

    fw = ops_ref("loss", "cross_entropy_forward_ref")
    bw = ops_ref("loss", "cross_entropy_backward_ref")
    for shape, weighted in CASES:
        logits, target, weight = _inputs(shape, dtype, weighted)
        for got, want in zip(
            cross_entropy_forward(logits, target, weight, 255), fw(logits, target, weight, 255)
        ):
            assert_matches(got, want, dtype)
        scale = rand(target.shape, dtype, seed=7)
        assert_matches(
            cross_entropy_backward(logits, target, weight, 255, scale),
            bw(logits, target, weight, 255, scale),
            dtype,
        )


def test_bad_targets_are_errors():
    from minisegnet.cuda.loss import cross_entropy_forward

    logits = np.zeros((2, 3, 2, 2), np.float32)
    with pytest.raises(ValueError, match=r"\[7\]"):
        cross_entropy_forward(logits, np.full((2, 2, 2), 7), None, 255)
    with pytest.raises(TypeError, match="integer"):
        cross_entropy_forward(logits, np.zeros((2, 2, 2), np.float32), None, 255)
    with pytest.raises(ValueError, match="target must have shape"):
        cross_entropy_forward(logits, np.zeros((2, 2), np.int64), None, 255)
    with pytest.raises(ValueError, match="weight"):
        cross_entropy_forward(logits, np.zeros((2, 2, 2), np.int64), np.ones(3), 255)
    loss, _ = cross_entropy_forward(logits, np.zeros((2, 2, 2), np.uint8), None, 255)  # converted
    assert loss.shape == (2, 2, 2)

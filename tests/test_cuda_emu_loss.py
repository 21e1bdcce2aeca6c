"""Softmax cross-entropy CUDA kernels (minisegnet/cuda/loss.py) on cuda-emu."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import assert_matches, record_launches
from tests.test_cuda_common import FLOATS, cross_entropy_np, needs_emu, ops_ref_pair, rand

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

    fw, bw = ops_ref_pair("loss", "cross_entropy")
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


# ------------------------------------------------------------------ the fused kernel
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape,weighted", CASES + [((3, 7, 11, 13), True)])  # several blocks
def test_cross_entropy_fused_matches_forward_and_backward(shape, weighted, dtype):
    from minisegnet.cuda.loss import (
        cross_entropy_backward,
        cross_entropy_forward,
        cross_entropy_fused,
    )

    logits, target, weight = _inputs(shape, dtype, weighted)
    loss, wpos, grad, totals = cross_entropy_fused(logits, target, weight, 255)
    loss_np, wpos_np, _ = cross_entropy_np(logits, target, weight, 255)
    assert_matches(loss, loss_np, dtype, "loss")
    assert_matches(wpos, wpos_np, dtype, "weight per position")
    assert_matches(totals, np.array([loss_np.sum(), wpos_np.sum()]), dtype, "totals")
    ones = np.ones(target.shape, dtype)
    assert_matches(grad, cross_entropy_backward(logits, target, weight, 255, ones), dtype, "grad")
    assert_matches(cross_entropy_forward(logits, target, weight, 255)[0], loss, dtype)


def test_cross_entropy_fused_extreme_logits_stay_finite():
    """The online softmax rescales its running sum when a larger logit comes later."""
    from minisegnet.cuda.loss import cross_entropy_fused

    logits = np.array([[-1000.0, 1000.0, 0.0], [0.0, 5.0, 1000.0]], np.float32)
    loss, _, grad, totals = cross_entropy_fused(logits, np.array([0, 2]), None, -100)
    np.testing.assert_allclose(loss, [2000.0, 0.0], atol=1e-3)
    np.testing.assert_allclose(grad, [[-1.0, 1.0, 0.0], [0.0, 0.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(totals, [2000.0, 2.0], atol=1e-3)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("fused", [True, False])
def test_cross_entropy_op_fused_path_matches_numpy(reduction, fused, monkeypatch):
    """F.cross_entropy on cuda-emu, fused kernel on and off, against the numpy backend: value
    and gradient, with class weights and ignored pixels (and an all-ignored batch)."""
    import minisegnet as ms
    import minisegnet.functional as F
    from minisegnet.ops import loss as loss_op

    monkeypatch.setattr(loss_op, "CUDA_FUSED", fused)
    logits, target, weight = _inputs((2, 5, 3, 4), np.float64, True)
    all_ignored = np.full_like(target, 255)
    for tgt in (target, all_ignored):
        results = []
        for name in ("numpy", "cuda-emu"):
            with ms.backend.use(name):
                z = ms.tensor(logits, requires_grad=True, dtype=np.float64)
                out = F.cross_entropy(
                    z, ms.tensor(tgt), weight=ms.tensor(weight, dtype=np.float64),
                    ignore_index=255, reduction=reduction,
                )  # fmt: skip
                dy = rand(out.shape, np.float64, seed=3) if out.ndim else None
                out.backward(dy)
                results.append((out.numpy(), z.grad))
        (y0, g0), (y1, g1) = results
        np.testing.assert_allclose(y1, y0, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(g1, g0, rtol=1e-12, atol=1e-12)


def test_cross_entropy_op_uses_one_kernel_while_training(monkeypatch):
    import minisegnet as ms
    import minisegnet.functional as F

    seen = record_launches(monkeypatch, "minisegnet.cuda.loss")
    logits, target, _ = _inputs((1, 3, 2, 2), np.float32, False)
    with ms.backend.use("cuda-emu"):
        z = ms.tensor(logits, requires_grad=True)
        F.cross_entropy(z, ms.tensor(target), ignore_index=255).backward()
        assert seen == ["cross_entropy_fused<float>"]
        seen.clear()
        with ms.no_grad():
            F.cross_entropy(z, ms.tensor(target), ignore_index=255)
        assert seen == ["cross_entropy_forward<float>"]

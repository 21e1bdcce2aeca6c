"""The vectorised cross-entropy passes (ops/loss_fused.py) against the reference of
ops/loss.py: their exp, the two kernels on hypothesis-drawn problems, and the whole loss through
autograd (reductions, class weights, ignore_index, dy != 1, a second backward with
retain_graph, what the forward keeps)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minisegnet as ms
import minisegnet.functional as F
from minisegnet.ops import loss, loss_fused
from tests.helpers import assert_matches


def test_exp_matches_numpy_over_its_range():
    x = np.concatenate([-np.linspace(0, 87, 200_001), [-0.0, -1e-30, -1e-7]]).astype(np.float32)
    got = np.array([loss_fused._exp_nonpositive(v) for v in x[::97]], np.float32)
    want = np.exp(x[::97].astype(np.float64))
    np.testing.assert_allclose(got, want, rtol=3e-7, atol=0)
    # below the normal range: a tiny positive number, never NaN/inf
    assert 0 < loss_fused._exp_nonpositive(np.float32(-1000.0)) < 1e-37


@st.composite
def problems(draw):
    spatial = draw(st.booleans())
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 25))
    hw = (draw(st.integers(1, 9)), draw(st.integers(1, 600))) if spatial else ()
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    ignore_index = draw(st.sampled_from([255, -100, 0]))
    logits = rng.normal(0, draw(st.sampled_from([0.1, 4.0, 40.0])), (n, c) + hw)
    target = rng.integers(0, c, (n,) + hw)
    target[rng.random(target.shape) < draw(st.floats(0, 1))] = ignore_index
    weight = rng.uniform(0.1, 3, c).astype(np.float32) if draw(st.booleans()) else None
    reduction = draw(st.sampled_from(["mean", "sum", "none"]))
    return logits.astype(np.float32), target, weight, ignore_index, reduction


@settings(max_examples=60, deadline=None)
@given(problem=problems())
def test_fused_pass_matches_reference(problem):
    logits, target, weight, ignore_index, reduction = problem
    loss_pos, w_pos, grad = loss_fused.cross_entropy_fused(
        logits, target, weight, ignore_index, reduction
    )
    loss_ref, w_ref = loss.cross_entropy_forward_ref(logits, target, weight, ignore_index)
    assert loss_pos.dtype == w_pos.dtype == grad.dtype == np.float32
    assert_matches(loss_pos, loss_ref, np.float32, "loss per position")
    assert_matches(w_pos, w_ref, np.float32, "weight per position")
    total = float(w_ref.sum(dtype=np.float64))
    factor = (1 / total if total > 0 else 0.0) if reduction == "mean" else 1.0
    scale = np.full(target.shape, factor, np.float32)
    grad_ref = loss.cross_entropy_backward_ref(logits, target, weight, ignore_index, scale)
    assert_matches(grad, grad_ref, np.float32, "dlogits")
    assert np.all(np.moveaxis(grad, 1, -1)[target == ignore_index] == 0)
    # the readable NumPy statement of the pass says the same
    n, c = logits.shape[:2]
    w = np.ones(c, np.float32) if weight is None else weight
    flat = (logits.reshape(n, c, -1), target.reshape(n, -1), w, ignore_index, factor)
    l2, w2, g2 = loss_fused.cross_entropy_fused_ref(*flat)
    assert_matches(l2.reshape(target.shape), loss_ref, np.float32, "readable loss")
    assert_matches(g2.reshape(logits.shape), grad_ref, np.float32, "readable dlogits")


def _loss_and_grad(backend, logits, target, weight, reduction, dy):
    with ms.backend.use(backend):
        x = ms.tensor(logits, requires_grad=True)
        w = None if weight is None else ms.tensor(weight)
        y = F.cross_entropy(x, ms.tensor(target), weight=w, ignore_index=255, reduction=reduction)
        (y * ms.tensor(dy)).sum().backward()
        return y.data.copy(), np.array(x.grad)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_loss_through_autograd_matches_numpy_backend(reduction, weighted):
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (2, 21, 7, 33)).astype(np.float32)
    target = rng.integers(0, 21, (2, 7, 33)).astype(np.uint8)
    target[:, :2] = 255
    weight = rng.uniform(0.2, 2, 21).astype(np.float32) if weighted else None
    dy = np.float32(2.5) if reduction != "none" else rng.normal(size=target.shape)
    dy = np.asarray(dy, np.float32)
    y, g = _loss_and_grad("numba", logits, target, weight, reduction, dy)
    y_ref, g_ref = _loss_and_grad("numpy", logits, target, weight, reduction, dy)
    assert_matches(y, y_ref, np.float32, "loss")
    assert_matches(g, g_ref, np.float32, "dlogits")


def test_all_ignored_gives_zero_loss_and_gradient():
    logits = np.ones((1, 3, 2, 2), np.float32)
    target = np.full((1, 2, 2), 255)
    y, g = _loss_and_grad("numba", logits, target, None, "mean", np.float32(1))
    assert float(y) == 0 and np.all(g == 0)


@pytest.mark.parametrize("dy", [1.0, 0.4])
def test_second_backward_with_retained_graph_gives_the_gradient_again(dy):
    """The backward reads the forward's sums without changing them: two passes through a
    retained graph give the two-kernel path's gradient twice, for dy = 1 and dy != 1."""
    rng = np.random.default_rng(2)
    logits = rng.normal(size=(2, 5, 4, 4)).astype(np.float32)
    target = rng.integers(0, 5, (2, 4, 4))
    scale = np.full(target.shape, dy / target.size, np.float32)
    expected = loss.cross_entropy_backward_ref(logits, target, None, 255, scale)
    x = ms.tensor(logits, requires_grad=True)
    y = F.cross_entropy(x, ms.tensor(target)) * dy
    y.backward(retain_graph=True)
    assert_matches(x.grad, expected, np.float32, "dlogits, first pass")
    y.backward()
    assert_matches(x.grad, 2 * expected, np.float32, "accumulated dlogits")


def test_float64_keeps_the_two_kernels_and_no_gradient_takes_the_forward_pass():
    assert not loss_fused.applies(np.zeros((1, 2), np.float64))
    assert not loss_fused.applies(np.zeros((0, 2), np.float32))
    logits = np.random.default_rng(3).normal(size=(3, 4)).astype(np.float32)
    with ms.no_grad():
        y = F.cross_entropy(ms.tensor(logits), ms.tensor(np.array([0, 1, 255])))
    ref, w = loss.cross_entropy_forward_ref(logits, np.array([0, 1, 255]), None, 255)
    assert_matches(y.data, ref.sum() / w.sum(), np.float32, "loss")


def test_forward_keeps_two_numbers_per_pixel_not_a_gradient():
    """Between forward and backward the passes keep the max and 1 / softmax sum per pixel
    ((N, L) each), beside what the readable path keeps; the gradient is made by the backward."""
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(2, 7, 4, 5)).astype(np.float32)
    y = F.cross_entropy(ms.tensor(logits, requires_grad=True), ms.tensor(np.zeros((2, 4, 5), int)))
    saved = vars(y.creator.saved)
    z_max, s_inv = saved["softmax_sums"]
    assert z_max.shape == s_inv.shape == (2, 20) and z_max.dtype == np.float32
    np.testing.assert_allclose(z_max, logits.reshape(2, 7, 20).max(axis=1))
    e = np.exp(logits.reshape(2, 7, 20).astype(np.float64) - z_max[:, None])
    np.testing.assert_allclose(s_inv, 1 / e.sum(axis=1), rtol=1e-6)
    logits_sized = [k for k, v in saved.items() if getattr(v, "shape", None) == logits.shape]
    assert logits_sized == ["logits"]  # the logits the graph holds anyway, no gradient

"""Cross-entropy kernels (the contract's forward/backward) against the reference, and the whole
loss on every backend. Values and gradients of the reference itself are tested in
test_loss.py."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minisegnet as ms
import minisegnet.functional as F
from minisegnet.gradcheck import gradcheck
from minisegnet.ops import loss
from tests.conftest import FIXTURE_OK
from tests.helpers import assert_cross_entropy_matches_torch, assert_matches

CUDA_MODULE = "minisegnet.cuda.loss"
importlib.import_module(CUDA_MODULE)  # the kernels under test: missing is a failure, not a skip


@st.composite
def problems(draw):
    """Logits (N, C) or (N, C, H, W), labels with some ignored, optional weights."""
    spatial = draw(st.booleans())
    n, c = draw(st.integers(1, 3)), draw(st.integers(1, 6))
    hw = (draw(st.integers(1, 9)), draw(st.integers(1, 40))) if spatial else ()
    seed = draw(st.integers(0, 2**16))
    ignore_index = draw(st.sampled_from([255, -100, 0]))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, (n, c) + hw).astype(dtype)
    target = rng.integers(0, c, (n,) + hw)
    target[rng.random(target.shape) < draw(st.floats(0, 1))] = ignore_index
    weight = rng.uniform(0.1, 3, c).astype(dtype) if draw(st.booleans()) else None
    scale = rng.normal(0, 1, target.shape).astype(dtype)
    return logits, target, weight, ignore_index, scale


@FIXTURE_OK
@given(problem=problems())
def test_kernels_match_reference(kernel_backend, problem):
    logits, target, weight, ignore_index, scale = problem
    dtype = logits.dtype
    loss_pos, w_pos = loss._impl("cross_entropy_forward")(logits, target, weight, ignore_index)
    loss_ref, w_ref = loss.cross_entropy_forward_ref(logits, target, weight, ignore_index)
    assert loss_pos.shape == w_pos.shape == target.shape
    assert loss_pos.dtype == w_pos.dtype == dtype
    assert_matches(loss_pos, loss_ref, dtype, "loss per position")
    assert_matches(w_pos, w_ref, dtype, "weight per position")
    assert np.all(loss_pos[target == ignore_index] == 0)
    dz = loss._impl("cross_entropy_backward")(logits, target, weight, ignore_index, scale)
    assert dz.shape == logits.shape and dz.dtype == dtype
    dz_ref = loss.cross_entropy_backward_ref(logits, target, weight, ignore_index, scale)
    assert_matches(dz, dz_ref, dtype, "dlogits")
    ignored = np.moveaxis(dz, 1, -1)[target == ignore_index]
    assert np.all(ignored == 0)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("shape", [(5, 4), (2, 4, 7, 9)])
def test_loss_agrees_across_backends(shape, reduction):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, shape).astype(np.float32)
    target = rng.integers(0, 4, (shape[0],) + shape[2:]).astype(np.uint8)  # label maps: uint8
    target.reshape(-1)[::3] = 255
    weight = np.array([0.5, 1.0, 2.0, 3.0], np.float32)
    dy = rng.normal(0, 1, target.shape).astype(np.float32) if reduction == "none" else None
    results = []
    for name in ("numpy", "numba"):
        with ms.backend.use(name):
            x = ms.tensor(logits, requires_grad=True)
            value = F.cross_entropy(x, target, weight, reduction=reduction)
            value.backward(dy)
            results.append((value.numpy(), x.grad))
    assert_matches(results[1][0], results[0][0], np.float32, "loss")
    assert_matches(results[1][1], results[0][1], np.float32, "gradient")


def test_numba_gradcheck_with_weights_and_ignored_pixels():
    rng = np.random.default_rng(1)
    x = ms.tensor(rng.normal(0, 2, (2, 4, 3, 3)), dtype=np.float64, requires_grad=True)
    target = rng.integers(0, 4, (2, 3, 3))
    target[0, 1, :] = 255
    weight = np.array([0.5, 1.0, 2.0, 3.0])
    with ms.backend.use("numba"):
        assert gradcheck(lambda x: F.cross_entropy(x, target, weight), [x], mode="full")


def test_numba_matches_torch():
    pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 2, (2, 5, 17, 33)).astype(np.float32)
    target = rng.integers(0, 5, (2, 17, 33))
    target[:, :4] = 255
    weight = rng.uniform(0.5, 2, 5).astype(np.float32)
    with ms.backend.use("numba"):
        assert_cross_entropy_matches_torch(logits, target, weight, grad_atol=1e-8)


def test_numba_edge_cases():
    with ms.backend.use("numba"):
        x = ms.tensor(np.ones((1, 3, 2, 2)), requires_grad=True)
        value = F.cross_entropy(x, np.full((1, 2, 2), 255))
        assert value.item() == 0.0
        value.backward()
        assert np.all(x.grad == 0)
        big = ms.tensor([[1000.0, 0.0, -1000.0]], requires_grad=True)
        value = F.cross_entropy(big, [0])
        assert value.item() == pytest.approx(0.0, abs=1e-6)
        value.backward()
        assert np.all(np.isfinite(big.grad))
        one_class = ms.tensor(np.zeros((4, 1, 3, 3)), requires_grad=True)
        assert F.cross_entropy(one_class, np.zeros((4, 3, 3), int)).item() == 0.0


def test_numba_reports_bad_labels_like_the_reference():
    with ms.backend.use("numba"):
        x = ms.tensor(np.zeros((1, 3, 2, 2)))
        with pytest.raises(ValueError, match=r"values \[3, 7\].*\[0, 3\).*ignore_index=255"):
            F.cross_entropy(x, np.array([[[0, 3], [7, 255]]]))

"""Average and adaptive average pooling (minisegnet/ops/avg_pooling.py): gradients of the
references, every backend against the references, PyTorch's numbers, PSPNet's bins."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minisegnet as ms
import minisegnet.functional as F
from minisegnet import nn
from minisegnet.gradcheck import gradcheck
from minisegnet.ops import avg_pooling
from tests.conftest import FIXTURE_OK
from tests.helpers import assert_matches, distinct, tensor_of
from tests.test_pooling import pool_cases


@st.composite
def adaptive_cases(draw, max_size: int = 12):
    """Input sizes and bin counts, including more bins than pixels and None (keep)."""
    h, w = draw(st.integers(1, max_size)), draw(st.integers(1, max_size))
    out = (draw(st.one_of(st.integers(1, 8), st.none())), draw(st.integers(1, 8)))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w)
    return {"shape": shape, "output_size": out, "seed": draw(st.integers(0, 2**16))}


def avg_args(case):
    return case["kernel"], case["stride"], case["padding"], case["ceil_mode"]


def run(backend_name, fn, x, dy):
    with ms.backend.use(backend_name):
        t = tensor_of(x, requires_grad=True)
        y = fn(t)
        y.backward(dy)
        return y.numpy(), t.grad


def output_of(fn, x):
    with ms.backend.use("numpy"):
        return fn(tensor_of(x)).shape


def assert_backend_matches_reference(backend_name, fn, x, dy_seed):
    """``fn`` forward and backward on ``backend_name`` against the reference: y and dx, their
    values and dtype (``x``'s)."""
    dtype = x.dtype
    dy = distinct(output_of(fn, x), dy_seed, dtype)
    y_ref, dx_ref = run("numpy", fn, x, dy)
    y, dx = run(backend_name, fn, x, dy)
    assert y.dtype == dtype and dx.dtype == dtype
    assert_matches(y, y_ref, dtype, what="y")
    assert_matches(dx, dx_ref, dtype, what="dx")


# ----------------------------------------------------------------------------- avg_pool2d
@given(case=pool_cases(max_size=7), count_include_pad=st.booleans())
def test_avg_reference_gradient(case, count_include_pad):
    x = tensor_of(distinct(case["shape"], case["seed"]), requires_grad=True)
    with ms.backend.use("numpy"):
        gradcheck(lambda t: F.avg_pool2d(t, *avg_args(case), count_include_pad), [x])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@FIXTURE_OK
@given(case=pool_cases(), count_include_pad=st.booleans())
def test_avg_backend_matches_reference(kernel_backend, dtype, case, count_include_pad):
    x = distinct(case["shape"], case["seed"], dtype)

    def fn(t):
        return F.avg_pool2d(t, *avg_args(case), count_include_pad)

    assert_backend_matches_reference(kernel_backend, fn, x, case["seed"] + 1)


@given(case=pool_cases(), count_include_pad=st.booleans())
def test_avg_matches_torch(case, count_include_pad):
    torch = pytest.importorskip("torch")
    x = distinct(case["shape"], case["seed"])
    kernel, stride, padding, ceil_mode = avg_args(case)

    def fn(t):
        return F.avg_pool2d(t, kernel, stride, padding, ceil_mode, count_include_pad)

    dy = distinct(output_of(fn, x), case["seed"] + 1)
    y, dx = run("numba", fn, x, dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.avg_pool2d(
        tx, kernel, stride, padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad
    )
    ty.backward(torch.tensor(dy))
    assert_matches(y, ty.detach().numpy(), np.float64)
    assert_matches(dx, tx.grad.numpy(), np.float64)


def test_avg_divisor_rules():
    x = tensor_of(np.ones((1, 1, 3, 3)))
    # zero padding counts with count_include_pad (corner window: 4 ones of 9), not without
    with_pad = F.avg_pool2d(x, 3, 2, 1, count_include_pad=True).numpy()
    np.testing.assert_allclose(with_pad[0, 0], [[4 / 9, 4 / 9], [4 / 9, 4 / 9]])
    without = F.avg_pool2d(x, 3, 2, 1, count_include_pad=False).numpy()
    np.testing.assert_allclose(without, np.ones((1, 1, 2, 2)))
    # a ceil-mode window hanging past the padding divides by the part inside the padded input
    x5 = tensor_of(np.ones((1, 1, 1, 5)))
    y = F.avg_pool2d(x5, (1, 2), (1, 2), ceil_mode=True).numpy()
    np.testing.assert_allclose(y, [[[[1.0, 1.0, 1.0]]]])


# ----------------------------------------------------------------------------- adaptive
@given(case=adaptive_cases(max_size=8))
def test_adaptive_reference_gradient(case):
    x = tensor_of(distinct(case["shape"], case["seed"]), requires_grad=True)
    with ms.backend.use("numpy"):
        gradcheck(lambda t: F.adaptive_avg_pool2d(t, case["output_size"]), [x])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@FIXTURE_OK
@given(case=adaptive_cases())
def test_adaptive_backend_matches_reference(kernel_backend, dtype, case):
    x = distinct(case["shape"], case["seed"], dtype)

    def fn(t):
        return F.adaptive_avg_pool2d(t, case["output_size"])

    assert_backend_matches_reference(kernel_backend, fn, x, case["seed"] + 1)


@given(case=adaptive_cases())
def test_adaptive_matches_torch(case):
    torch = pytest.importorskip("torch")
    x = distinct(case["shape"], case["seed"])

    def fn(t):
        return F.adaptive_avg_pool2d(t, case["output_size"])

    dy = distinct(output_of(fn, x), case["seed"] + 1)
    y, dx = run("numba", fn, x, dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.adaptive_avg_pool2d(tx, case["output_size"])
    ty.backward(torch.tensor(dy))
    assert_matches(y, ty.detach().numpy(), np.float64)
    assert_matches(dx, tx.grad.numpy(), np.float64)


@given(
    bins=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    repeat=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    seed=st.integers(0, 2**16),
)
def test_adaptive_pooling_preserves_the_mean_when_bins_tile_evenly(bins, repeat, seed):
    shape = (2, 3, bins[0] * repeat[0], bins[1] * repeat[1])
    x = distinct(shape, seed)
    y = F.adaptive_avg_pool2d(tensor_of(x), bins).numpy()
    np.testing.assert_allclose(y.mean(axis=(2, 3)), x.mean(axis=(2, 3)), rtol=1e-12, atol=1e-12)


@given(case=adaptive_cases())
def test_adaptive_pooling_weighted_mean_relation(case):
    # in general bins overlap: sum over bins of count * mean = sum over pixels of x * (number
    # of bins containing the pixel)
    x = distinct(case["shape"], case["seed"])
    y = F.adaptive_avg_pool2d(tensor_of(x), case["output_size"]).numpy()
    (h, w), (ho, wo) = x.shape[2:], y.shape[2:]
    h0, h1 = avg_pooling.adaptive_bins(h, ho)
    w0, w1 = avg_pooling.adaptive_bins(w, wo)
    counts = (h1 - h0)[:, None] * (w1 - w0)[None, :]  # (Ho, Wo)
    rows = np.array([((h0 <= i) & (i < h1)).sum() for i in range(h)])
    cols = np.array([((w0 <= i) & (i < w1)).sum() for i in range(w)])
    lhs = (y * counts).sum(axis=(2, 3))
    rhs = (x * rows[:, None] * cols[None, :]).sum(axis=(2, 3))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-10, atol=1e-10)
    # and the covering-bins formula used by the backward agrees with the bins themselves
    first, last = avg_pooling.adaptive_covering(h, ho)
    np.testing.assert_array_equal(last - first + 1, rows)


def test_pspnet_pyramid_bins(any_backend):
    x = distinct((2, 4, 60, 60), seed=7, dtype=np.float32)
    with ms.backend.use(any_backend):
        t = tensor_of(x, requires_grad=True)
        outs = [F.adaptive_avg_pool2d(t, b) for b in (1, 2, 3, 6)]
        assert [o.shape for o in outs] == [(2, 4, b, b) for b in (1, 2, 3, 6)]
        sum(o.sum() for o in outs).backward()
    np.testing.assert_allclose(outs[0].numpy()[:, :, 0, 0], x.mean(axis=(2, 3)), rtol=1e-5)
    np.testing.assert_allclose(
        outs[2].numpy()[:, :, 1, 2], x[:, :, 20:40, 40:].mean(axis=(2, 3)), rtol=1e-4, atol=1e-6
    )
    # each pixel sits in one bin per level: 1/3600 + 1/900 + 1/400 + 1/100
    np.testing.assert_allclose(t.grad, 1 / 3600 + 1 / 900 + 1 / 400 + 1 / 100, rtol=1e-5)


# ----------------------------------------------------------------------------- errors, layers
def test_bad_inputs_raise_clear_errors():
    x = tensor_of(distinct((1, 2, 6, 6), 0, np.float32))
    with pytest.raises(ValueError, match=r"4-D \(N, C, H, W\)"):
        F.avg_pool2d(tensor_of(distinct((2, 6, 6), 0)), 2)
    with pytest.raises(ValueError, match=r"4-D \(N, C, H, W\)"):
        F.adaptive_avg_pool2d(tensor_of(distinct((2, 6, 6), 0)), 2)
    with pytest.raises(ValueError, match="at most half the kernel"):
        F.avg_pool2d(x, 3, padding=2)
    with pytest.raises(ValueError, match="larger than the padded input"):
        F.avg_pool2d(x, 7)
    with pytest.raises(ValueError, match="positive ints or None"):
        F.adaptive_avg_pool2d(x, 0)
    with pytest.raises(TypeError, match="output_size must be an int or a pair"):
        F.adaptive_avg_pool2d(x, (1, 2, 3))
    with pytest.raises(TypeError, match="float32 or float64"):
        F.adaptive_avg_pool2d(tensor_of(np.ones((1, 1, 4, 4), np.int32)), 2)


def test_modules():
    x = tensor_of(distinct((1, 2, 7, 9), 0, np.float32))
    assert nn.AvgPool2d(3, 2, 1, ceil_mode=True)(x).shape == (1, 2, 4, 5)
    assert nn.AdaptiveAvgPool2d((3, None))(x).shape == (1, 2, 3, 9)
    assert nn.AdaptiveAvgPool2d(1)(x).shape == (1, 2, 1, 1)
    assert "count_include_pad=False" in repr(nn.AvgPool2d(2, count_include_pad=False))
    assert "output_size=6" in repr(nn.AdaptiveAvgPool2d(6))

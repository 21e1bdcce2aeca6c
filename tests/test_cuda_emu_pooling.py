"""Pooling CUDA kernels (minisegnet/cuda/pooling.py) on the cuda-emu backend: max pooling with
switches and its backward, max unpooling both ways, average and adaptive average pooling."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import assert_matches
from tests.test_cuda_common import (
    EXAMPLES,
    FLOATS,
    adaptive_matrix,
    avg_pool_backward_np,
    avg_pool_np,
    max_pool_backward_np,
    max_pool_np,
    needs_emu,
    ops_ref_pair,
    rand,
)

# (shape, kernel, stride, padding, out_size); the last two are ceil-mode sizes and overlaps.
CASES = [
    ((2, 3, 8, 8), (2, 2), (2, 2), (0, 0), (4, 4)),
    ((1, 2, 7, 9), (2, 2), (2, 2), (0, 0), (4, 5)),  # ceil mode: windows hang over the edge
    ((2, 2, 7, 6), (3, 3), (2, 2), (1, 1), (4, 3)),  # overlapping windows, padding
    ((1, 1, 5, 6), (3, 2), (1, 2), (1, 0), (5, 3)),
    ((1, 2, 6, 5), (1, 1), (2, 2), (0, 0), (3, 3)),
]

pytestmark = needs_emu


def _out(n, k, s, p):
    return (n + 2 * p - k) // s + 1


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", CASES)
def test_max_pool_forward_backward(case, dtype):
    from minisegnet.cuda.pooling import max_pool2d_backward, max_pool2d_forward

    shape, kernel, stride, padding, out = case
    x = rand(shape, dtype)
    y, idx = max_pool2d_forward(x, kernel, stride, padding, out)
    y_np, idx_np = max_pool_np(x, kernel, stride, padding, out)
    assert idx.dtype == np.uint8 and y.dtype == dtype
    np.testing.assert_array_equal(idx, idx_np)
    np.testing.assert_array_equal(y, y_np.astype(dtype))  # a max is exact
    dy = rand(y.shape, dtype, seed=1)
    dx = max_pool2d_backward(dy, idx, shape[2:], kernel, stride, padding)
    assert_matches(dx, max_pool_backward_np(dy, idx, shape[2:], kernel, stride, padding), dtype)


def test_max_pool_ties_go_to_the_first_and_big_windows_use_int32():
    from minisegnet.cuda.pooling import max_pool2d_forward

    x = np.zeros((1, 1, 2, 4), np.float32)
    x[0, 0, 1, 1] = x[0, 0, 0, 3] = 1.0  # two equal maxima in the one window
    y, idx = max_pool2d_forward(x, (2, 4), (2, 4), (0, 0), (1, 1))
    assert idx[0, 0, 0, 0] == 3 and y[0, 0, 0, 0] == 1.0  # row-major first: (0, 3)
    x = rand((1, 1, 17, 17), np.float64)
    y, idx = max_pool2d_forward(x, (17, 16), (1, 1), (0, 0), (1, 2))  # 272 > 256 positions
    assert idx.dtype == np.int32
    _, idx_np = max_pool_np(x, (17, 16), (1, 1), (0, 0), (1, 2))
    np.testing.assert_array_equal(idx, idx_np)


def test_max_pool_nan_wins():
    from minisegnet.cuda.pooling import max_pool2d_forward

    x = np.array([[[[1.0, np.nan], [3.0, 2.0]]]], np.float32)
    y, idx = max_pool2d_forward(x, (2, 2), (2, 2), (0, 0), (1, 1))
    assert np.isnan(y[0, 0, 0, 0]) and idx[0, 0, 0, 0] == 1


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", CASES)
def test_max_unpool_forward_backward(case, dtype):
    """Unpool = place x at the switches (colliding switches add); backward reads dy there."""
    from minisegnet.cuda.pooling import (
        max_pool2d_forward,
        max_unpool2d_backward,
        max_unpool2d_forward,
    )

    shape, kernel, stride, padding, out = case
    _, idx = max_pool2d_forward(rand(shape, dtype), kernel, stride, padding, out)
    x = rand(idx.shape, dtype, seed=2)
    y = max_unpool2d_forward(x, idx, shape[2:], kernel, stride, padding)
    expected = max_pool_backward_np(x, idx, shape[2:], kernel, stride, padding)
    assert_matches(y, expected, dtype, "unpool")
    dy = rand(shape, dtype, seed=3)
    dx = max_unpool2d_backward(dy, idx, kernel, stride, padding)
    kw, (sh, sw), (ph, pw) = kernel[1], stride, padding
    k = idx.astype(int)
    rows = np.arange(idx.shape[2])[:, None] * sh - ph + k // kw
    cols = np.arange(idx.shape[3])[None, :] * sw - pw + k % kw
    n = np.arange(shape[0])[:, None, None, None]
    c = np.arange(shape[1])[None, :, None, None]
    np.testing.assert_array_equal(dx, dy[n, c, rows, cols])


def test_unpool_skips_switches_outside_the_output():
    """A switch pointing past out_size is dropped (never an out-of-bounds write)."""
    from minisegnet.cuda.pooling import max_unpool2d_backward, max_unpool2d_forward

    x = np.ones((1, 1, 2, 2), np.float32)
    idx = np.full((1, 1, 2, 2), 3, np.uint8)  # bottom-right of each 2x2 window
    y = max_unpool2d_forward(x, idx, (3, 3), (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(y[0, 0], [[0, 0, 0], [0, 1, 0], [0, 0, 0]])
    dx = max_unpool2d_backward(np.ones((1, 1, 3, 3), np.float32), idx, (2, 2), (2, 2), (0, 0))
    np.testing.assert_array_equal(dx[0, 0], [[1, 0], [0, 0]])


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", CASES)
def test_avg_pool_forward_backward(case, dtype, count_include_pad):
    from minisegnet.cuda.pooling import avg_pool2d_backward, avg_pool2d_forward

    shape, kernel, stride, padding, out = case
    x = rand(shape, dtype)
    y = avg_pool2d_forward(x, kernel, stride, padding, out, count_include_pad)
    assert_matches(y, avg_pool_np(x, kernel, stride, padding, out, count_include_pad), dtype)
    dy = rand(y.shape, dtype, seed=1)
    dx = avg_pool2d_backward(dy, shape[2:], kernel, stride, padding, count_include_pad)
    expected = avg_pool_backward_np(dy, shape[2:], kernel, stride, padding, count_include_pad)
    assert_matches(dx, expected, dtype)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize(
    "shape,out",
    [
        ((2, 3, 7, 9), (3, 4)),
        ((1, 2, 6, 6), (1, 1)),
        ((1, 1, 12, 10), (6, 3)),
        ((1, 2, 4, 5), (7, 8)),
    ],
)
def test_adaptive_avg_pool(shape, out, dtype):
    from minisegnet.cuda.pooling import adaptive_avg_pool2d_backward, adaptive_avg_pool2d_forward

    x = rand(shape, dtype)
    mh, mw = adaptive_matrix(shape[2], out[0]), adaptive_matrix(shape[3], out[1])
    y = adaptive_avg_pool2d_forward(x, out)
    assert_matches(y, mh @ x.astype(np.float64) @ mw.T, dtype, "adaptive forward")
    dy = rand(y.shape, dtype, seed=1)
    dx = adaptive_avg_pool2d_backward(dy, shape[2:])
    assert_matches(dx, mh.T @ dy.astype(np.float64) @ mw, dtype, "adaptive backward")


@pytest.mark.parametrize("dtype", FLOATS)
def test_against_the_ops_references(dtype):
    from minisegnet.cuda import pooling as cu

    fw, bw = ops_ref_pair("pooling", "max_pool2d")
    unpool, unpool_bw = ops_ref_pair("unpooling", "max_unpool2d")
    avg, avg_bw = ops_ref_pair("avg_pooling", "avg_pool2d")
    ada, ada_bw = ops_ref_pair("avg_pooling", "adaptive_avg_pool2d")
    for shape, kernel, stride, padding, out in CASES:
        geometry = (kernel, stride, padding)
        x = rand(shape, dtype)
        y, idx = cu.max_pool2d_forward(x, *geometry, out)
        y_ref, idx_ref = fw(x, *geometry, out)
        np.testing.assert_array_equal(idx, idx_ref)
        assert idx.dtype == idx_ref.dtype
        assert_matches(y, y_ref, dtype, "max_pool2d_forward")
        dy = rand(y.shape, dtype, seed=1)
        assert_matches(
            cu.max_pool2d_backward(dy, idx, shape[2:], *geometry),
            bw(dy, idx, shape[2:], *geometry),
            dtype,
            "max_pool2d_backward",
        )
        assert_matches(
            cu.max_unpool2d_forward(dy, idx, shape[2:], *geometry),
            unpool(dy, idx, shape[2:], *geometry),
            dtype,
            "max_unpool2d_forward",
        )
        dz = rand(shape, dtype, seed=2)
        assert_matches(
            cu.max_unpool2d_backward(dz, idx, *geometry),
            unpool_bw(dz, idx, *geometry),
            dtype,
            "max_unpool2d_backward",
        )
        for cip in (True, False):
            assert_matches(
                cu.avg_pool2d_forward(x, *geometry, out, cip),
                avg(x, *geometry, out, cip),
                dtype,
                "avg_pool2d_forward",
            )
            assert_matches(
                cu.avg_pool2d_backward(dy, shape[2:], *geometry, cip),
                avg_bw(dy, shape[2:], *geometry, cip),
                dtype,
                "avg_pool2d_backward",
            )
        assert_matches(cu.adaptive_avg_pool2d_forward(x, out), ada(x, out), dtype, "adaptive")
        assert_matches(
            cu.adaptive_avg_pool2d_backward(dy, shape[2:]),
            ada_bw(dy, shape[2:]),
            dtype,
            "adaptive backward",
        )


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    data=st.data(),
    k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
)
def test_max_pool_property(data, k, s):
    """Random geometry (overlapping windows, padding up to k//2, odd sizes): forward equals
    the loop reference, backward equals the scatter reference."""
    from minisegnet.cuda.pooling import max_pool2d_backward, max_pool2d_forward

    p = (data.draw(st.integers(0, k[0] // 2)), data.draw(st.integers(0, k[1] // 2)))
    h = data.draw(st.integers(k[0], 10))
    w = data.draw(st.integers(k[1], 10))
    out = (_out(h, k[0], s[0], p[0]), _out(w, k[1], s[1], p[1]))
    x = rand((2, 2, h, w), np.float64)
    y, idx = max_pool2d_forward(x, k, s, p, out)
    y_np, idx_np = max_pool_np(x, k, s, p, out)
    np.testing.assert_array_equal(idx, idx_np)
    np.testing.assert_array_equal(y, y_np)
    dy = rand(y.shape, np.float64, seed=5)
    np.testing.assert_allclose(
        max_pool2d_backward(dy, idx, (h, w), k, s, p),
        max_pool_backward_np(dy, idx, (h, w), k, s, p),
        rtol=1e-12,
    )


def test_bad_switches_are_errors():
    from minisegnet.cuda.pooling import max_pool2d_backward, max_unpool2d_forward

    dy = np.ones((1, 1, 2, 2), np.float32)
    with pytest.raises(TypeError, match="idx"):
        max_pool2d_backward(dy, np.zeros((1, 1, 2, 2), np.int64), (4, 4), (2, 2), (2, 2), (0, 0))
    with pytest.raises(TypeError, match="uint8"):
        max_pool2d_backward(dy, np.zeros((1, 1, 2, 2), np.int32), (4, 4), (2, 2), (2, 2), (0, 0))
    with pytest.raises(ValueError, match="idx must have shape"):
        max_unpool2d_forward(dy, np.zeros((1, 1, 3, 2), np.uint8), (4, 4), (2, 2), (2, 2), (0, 0))
    with pytest.raises(ValueError, match="C-contiguous"):
        max_unpool2d_forward(
            np.ones((1, 1, 2, 4), np.float32)[..., ::2],
            np.zeros((1, 1, 2, 2), np.uint8),
            (4, 4),
            (2, 2),
            (2, 2),
            (0, 0),
        )

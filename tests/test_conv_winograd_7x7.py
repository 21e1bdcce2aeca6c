"""Winograd F(2x2, 7x7) (ops/conv_winograd_7x7.py): the matrices and the 1-D kernels against
their definitions, the NumPy reference and the worker-thread drivers against the direct
convolution (float64 to 1e-10, float32 within the stated bound) over bands, segments and seams,
the gradients by finite differences, and the numba backend's dispatch."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minisegnet as ms
import minisegnet.functional as F
from minisegnet.gradcheck import gradcheck
from minisegnet.ops import blas_threads, conv
from minisegnet.ops import conv_winograd as cw
from minisegnet.ops import conv_winograd_7x7 as w7

F7 = w7.F2_7X7


def direct(x, w, padding, bias=None):
    return conv._gemm_by_images(x, w, (1, 1), padding, (1, 1), 1, bias)


def direct_data_grad(dy, w, in_size, padding):
    return conv._data_grad_by_images(dy, w, in_size, (1, 1), padding, (1, 1), 1)


def direct_weight_grad(x, dy, padding):
    return conv._weight_grad_by_images(x, dy, (7, 7), (1, 1), padding, (1, 1), 1)


def test_transform_matrices_give_the_1d_minimal_filter():
    # F(2, 7): y = A^T [(G g) * (B^T d)] is the 2-output, 7-tap correlation of an 8-input d
    rng = np.random.default_rng(0)
    d, g = rng.normal(size=8), rng.normal(size=7)
    y = F7.AT @ ((F7.G @ g) * (F7.BT @ d))
    np.testing.assert_allclose(y, [d[i : i + 7] @ g for i in range(2)], rtol=1e-12)
    assert (F7.m, F7.a, F7.r) == (2, 8, 7)


def test_one_dimensional_output_kernels_are_the_matrices():
    """``_at`` and ``_a`` against A^T and A, on float64 and float32 data (kept in float32)."""
    rng = np.random.default_rng(7)
    long, short = rng.normal(size=8), rng.normal(size=2)
    for kernel, matrix, arg in ((w7._at, F7.AT, long), (w7._a, F7.AT.T, short)):
        np.testing.assert_allclose(kernel.py_func(*arg), matrix @ arg, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(kernel(*arg.astype(np.float32)), matrix @ arg, rtol=1e-5)
        compiled = kernel.overloads[(numba.float32,) * len(arg)].signature.return_type
        assert set(compiled.types) == {numba.float32}, compiled


@st.composite
def problems(draw):
    n, c, o = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    ph, pw = draw(st.integers(0, 6)), draw(st.integers(0, 6))
    h = draw(st.integers(max(1, 7 - 2 * ph), 24))
    w = draw(st.integers(max(1, 7 - 2 * pw), 17))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x, wt = rng.normal(size=(n, c, h, w)), rng.normal(size=(o, c, 7, 7))
    bias = rng.normal(size=o) if draw(st.booleans()) else None
    dy = rng.normal(size=(n, o, h + 2 * ph - 6, w + 2 * pw - 6))
    budget = draw(st.sampled_from([1, 20_000, 60_000, w7.BUDGET_BYTES]))  # 1: a tile row each
    segments = draw(st.sampled_from([1, 3, w7.SEGMENTS_PER_WORKER]))
    return x, wt, bias, (ph, pw), dy, budget, segments


@settings(max_examples=60, deadline=None)
@given(problem=problems())
def test_reference_and_drivers_equal_direct_convolution_in_float64(problem):
    """Every budget cuts the images into other bands, every segment count into other runs of
    bands, whose seams the data gradient joins."""
    x, w, bias, padding, dy, budget, segments = problem
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(w7, "BUDGET_BYTES", budget)
        patch.setattr(w7, "SEGMENTS_PER_WORKER", segments)
        _compare_with_direct(x, w, bias, padding, dy)


def _compare_with_direct(x, w, bias, padding, dy):
    size = x.shape[2:]
    want = direct(x, w, padding, bias), direct_data_grad(dy, w, size, padding)
    want += (direct_weight_grad(x, dy, padding),)
    for name, got in (
        ("reference", (
            cw.conv2d_ref(x, w, padding, bias, F7), cw.conv2d_data_grad_ref(dy, w, size, padding, F7),
            cw.conv2d_weight_grad_ref(x, dy, padding, F7),
        )),
        ("numba", (
            w7.conv2d_forward(x, w, padding, bias), w7.conv2d_data_grad(dy, w, size, padding),
            w7.conv2d_weight_grad(x, dy, padding),
        )),
        ("numba, both gradients in one pass", (
            w7.conv2d_forward(x, w, padding, bias), *w7.conv2d_grads(x, dy, w, padding),
        )),
    ):  # fmt: skip
        for what, a, b in zip(("y", "dx", "dw"), got, want):
            assert a.shape == b.shape and a.dtype == np.float64, (name, what)
            np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10, err_msg=f"{name} {what}")


@pytest.mark.parametrize("workers", ["pool", "one thread"])
def test_data_gradient_stores_every_pixel_once(monkeypatch, workers):
    """dx starts as uninitialised memory (``np.empty``): filled with NaN instead, every pixel
    must come out right, with bands of one tile row, segments that meet inside images (seams),
    and with the worker pool or without it."""
    rng = np.random.default_rng(8)
    x, w = rng.normal(size=(2, 3, 29, 13)), rng.normal(size=(2, 3, 7, 7))
    dy = rng.normal(size=(2, 2, 29, 13))
    w7.conv2d_grads(x, dy, w, (3, 3))  # compiled before np is replaced below

    class NaNEmpty:
        def __getattr__(self, name):
            return getattr(np, name)

        @staticmethod
        def empty(shape, dtype=float):
            return np.full(shape, np.nan, dtype)

    monkeypatch.setattr(w7, "np", NaNEmpty())
    monkeypatch.setattr(w7, "BUDGET_BYTES", 1)
    monkeypatch.setattr(w7, "SEGMENTS_PER_WORKER", 3)
    monkeypatch.setattr(blas_threads, "ENABLED", workers == "pool")
    th = -(-29 // 2)
    segments = w7._segments(w7._plan(2, (29, 13), 5, 8)[2], th)
    assert any(segment[0][2] > 0 for segment in segments)  # a seam inside an image
    dx, dw = w7.conv2d_grads(x, dy, w, (3, 3))
    np.testing.assert_allclose(dx, direct_data_grad(dy, w, (29, 13), (3, 3)), rtol=1e-10)
    np.testing.assert_allclose(dw, direct_weight_grad(x, dy, (3, 3)), rtol=1e-10)


def test_segments_leave_three_tile_rows_on_each_side_of_a_seam(monkeypatch):
    chunks = [(n, 1, t, 1) for n in range(2) for t in range(7)]  # 2 images of 7 tile rows
    for per_worker in (1, 2, 4, 8):
        monkeypatch.setattr(w7, "SEGMENTS_PER_WORKER", per_worker)
        segments = w7._segments(chunks, 7)
        assert [c for s in segments for c in s] == chunks  # in order, each chunk once
        for above, below in zip(segments, segments[1:]):
            n, _, t0, _ = below[0]
            if t0 > 0:  # a seam at tile row t0 of image n: 3 rows of it on both sides
                assert sum(c[3] for c in above if c[0] == n) >= 3
                assert sum(c[3] for c in below if c[0] == n) >= 3


@settings(max_examples=20, deadline=None)
@given(problem=problems())
def test_float32_error_stays_within_the_stated_bound(problem):
    x, w, bias, padding, _, _, _ = problem
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    exact = direct(x32.astype(np.float64), w32.astype(np.float64), padding)
    got = w7.conv2d_forward(x32, w32, padding)
    assert got.dtype == np.float32
    bound = cw.error_bound(x32, w32, padding, F7)
    assert np.all(np.abs(got - exact) <= bound), float(np.max(np.abs(got - exact) - bound))


def test_bound_is_not_vacuous_and_float32_error_is_small():
    """Relative to max |y| on 64 channels: 6.0e-6 (the stacked row-shift path 4.7e-7, F(4x4,
    3x3) 5.8e-6 on its problem), bound 1.5e-2; the gradients err alike (5.7e-6, 1.4e-5)."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 64, 24, 24)).astype(np.float32)
    w = (rng.normal(size=(64, 64, 7, 7)) / 56).astype(np.float32)
    dy = rng.normal(size=(2, 64, 24, 24)).astype(np.float32)
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    exact = direct(x64, w64, (3, 3))
    err = np.abs(w7.conv2d_forward(x, w, (3, 3)) - exact)
    bound = cw.error_bound(x, w, (3, 3), F7)
    assert np.all(err <= bound)
    assert bound.max() < 3e-2 * np.abs(exact).max()
    assert err.max() < 3e-5 * np.abs(exact).max()
    dx, dw = w7.conv2d_grads(x, dy, w, (3, 3))
    for got, want in ((dx, direct_data_grad(dy64, w64, (24, 24), (3, 3))),
                      (dw, direct_weight_grad(x64, dy64, (3, 3)))):  # fmt: skip
        assert np.abs(got - want).max() < 5e-5 * np.abs(want).max()


def test_gradients_through_conv2d_by_finite_differences():
    rng = np.random.default_rng(4)
    x = ms.tensor(rng.normal(size=(2, 2, 9, 8)), requires_grad=True, dtype=np.float64)
    w = ms.tensor(rng.normal(size=(3, 2, 7, 7)), requires_grad=True, dtype=np.float64)
    b = ms.tensor(rng.normal(size=3), requires_grad=True, dtype=np.float64)
    with ms.backend.use("numba"), w7.winograd_7x7(True, min_channels=1, any_size=True):
        gradcheck(lambda x, w, b: F.conv2d(x, w, b, padding=3), [x, w, b])


@pytest.mark.parametrize(
    "geometry, taken",
    [
        (dict(stride=1, padding=3), True),
        (dict(stride=1, padding=(0, 5)), True),
        (dict(stride=2, padding=3), False),
        (dict(stride=1, padding=6, dilation=2), False),
        (dict(stride=1, padding=3, groups=2), False),
        (dict(stride=1, padding=7), False),
    ],
)
def test_conv2d_dispatch_and_fallback(monkeypatch, geometry, taken):
    """The numba backend takes F(2x2, 7x7) for stride-1, undilated, ungrouped 7x7 convolutions
    with padding up to 6, in all three products, and the other paths otherwise, with the same
    results either way."""
    calls = []
    for name in ("conv2d_forward", "conv2d_grads", "conv2d_data_grad", "conv2d_weight_grad"):
        real = getattr(w7, name)
        monkeypatch.setattr(
            w7, name, lambda *a, real=real, name=name, **k: calls.append(name) or real(*a, **k)
        )
    rng = np.random.default_rng(5)
    groups = geometry.get("groups", 1)
    x = rng.normal(size=(2, 4, 15, 12))
    w = rng.normal(size=(6, 4 // groups, 7, 7))
    results = {}
    for backend in ("numba", "numpy"):
        xt = ms.tensor(x, requires_grad=True, dtype=np.float64)
        wt = ms.tensor(w, requires_grad=True, dtype=np.float64)
        with ms.backend.use(backend), w7.winograd_7x7(True, min_channels=1, any_size=True):
            y = F.conv2d(xt, wt, **geometry)
            (y * y).sum().backward()
        results[backend] = (y.data, xt.grad, wt.grad)
    assert (calls[:2] == ["conv2d_forward", "conv2d_grads"]) == taken, calls
    for a, b in zip(results["numba"], results["numpy"]):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9)


def test_path_follows_the_measured_size_rule():
    """SegNet-Basic's 64-channel 7x7 convolutions (4x64x96x128 and its halves): the path from
    ``MIN_PIXELS_PER_CHANNEL`` output pixels per image per channel and ``MIN_CHANNELS`` on."""
    geometry = ((7, 7), (1, 1), (3, 3), (1, 1), 1)
    assert w7.applies(64, 64, *geometry, out_size=(96, 128))
    assert w7.applies(64, 64, *geometry, out_size=(48, 64))  # 48 per channel
    assert not w7.applies(64, 64, *geometry, out_size=(24, 32))  # 12: the stacked path won
    assert not w7.applies(3, 64, *geometry, out_size=(96, 128))  # SegNet-Basic's first layer
    assert not w7.applies(16, 16, *geometry, out_size=(64, 64))
    with w7.winograd_7x7(False):
        assert not w7.applies(64, 64, *geometry, out_size=(96, 128))
    with cw.winograd(False):  # every Winograd path off
        assert not w7.applies(64, 64, *geometry, out_size=(96, 128))


def test_padding_beyond_the_tiles_is_refused():
    x, w = np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 7, 7))
    with pytest.raises(ValueError, match=r"padding: at most 6 .* got \(7, 3\)"):
        w7.conv2d_forward(x, w, (7, 3))


def test_other_filter_sizes_are_refused_by_the_3x3_drivers():
    x, w = np.zeros((1, 1, 9, 9)), np.zeros((1, 1, 7, 7))
    with pytest.raises(ValueError, match="for 7x7 filters expected, got one for 3x3"):
        cw.conv2d_forward(x, w, (3, 3))

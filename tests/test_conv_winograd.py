"""Winograd F(2x2, 3x3), F(4x4, 3x3) and F(6x6, 3x3) (ops/conv_winograd.py, conv_winograd_f4.py,
conv_winograd_f6.py): each NumPy transform against its definition, the reference and the Numba
path of every variant
against the direct convolution (float64 to 1e-10; float32 within the stated error bound), the
gradients by finite differences, and the dispatch of ops/conv.py."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import minisegnet as ms
import minisegnet.functional as F
from minisegnet.gradcheck import gradcheck
from minisegnet.ops import conv
from minisegnet.ops import conv_winograd as cw


def direct(x, w, padding, bias=None):
    return conv._gemm_by_images(x, w, (1, 1), padding, (1, 1), 1, bias)


def direct_data_grad(dy, w, in_size, padding):
    return conv._data_grad_by_images(dy, w, in_size, (1, 1), padding, (1, 1), 1)


def direct_weight_grad(x, dy, padding):
    return conv._weight_grad_by_images(x, dy, (3, 3), (1, 1), padding, (1, 1), 1)


VARIANTS = pytest.mark.parametrize("f", [cw.F2, cw.F4, cw.F6], ids=["F2", "F4", "F6"])


@VARIANTS
def test_transform_matrices_give_the_1d_minimal_filter(f):
    # F(m, 3): y = A^T [(G g) * (B^T d)] is the m-output, 3-tap correlation of an (m+2)-input d.
    rng = np.random.default_rng(0)
    d, g = rng.normal(size=f.a), rng.normal(size=3)
    y = f.AT @ ((f.G @ g) * (f.BT @ d))
    np.testing.assert_allclose(y, [d[i : i + 3] @ g for i in range(f.m)], rtol=1e-13)


@pytest.mark.parametrize("name", ["conv_winograd_f4", "conv_winograd_f6"])
def test_one_dimensional_kernels_are_the_matrices(name):
    """The inlined 1-D transforms of ops/conv_winograd_f4.py and _f6.py against B^T, B, A^T, A,
    on float64 and on float32 data (which they keep in float32: their constants are float32)."""
    import importlib

    tile = importlib.import_module(f"minisegnet.ops.{name}")
    rng = np.random.default_rng(7)
    a, m = tile.BT.shape[0], tile.AT.shape[0]
    long, short = rng.normal(size=a), rng.normal(size=m)
    for kernel, matrix, arg in (
        (tile._bt, tile.BT, long), (tile._b, tile.BT.T, long),
        (tile._at, tile.AT, long), (tile._a, tile.AT.T, short),
    ):  # fmt: skip
        np.testing.assert_allclose(kernel.py_func(*arg), matrix @ arg, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(
            kernel(*arg.astype(np.float32)), matrix @ arg, rtol=1e-5, atol=1e-4
        )
        compiled = kernel.overloads[(numba.float32,) * len(arg)].signature.return_type
        assert set(compiled.types) == {numba.float32}, compiled  # no float64 on float32 data


def test_each_transform_matches_its_definition():
    rng = np.random.default_rng(1)
    w = rng.normal(size=(2, 3, 3, 3))
    u = cw.filter_transform_ref(w)
    np.testing.assert_allclose(u.reshape(4, 4, 2, 3)[..., 1, 2], cw.G @ w[1, 2] @ cw.G.T)
    x = rng.normal(size=(1, 2, 5, 6))
    v = cw.input_transform_ref(x, (1, 1), (3, 3))  # padded 7x8: tiles at rows 0, 2, 4
    xp = np.zeros((1, 2, 8, 8))
    xp[:, :, 1:6, 1:7] = x
    tile = xp[0, 1, 2:6, 4:8]  # tile (1, 2) of channel 1
    np.testing.assert_allclose(v.reshape(4, 4, 2, 3, 3)[:, :, 1, 1, 2], cw.BT @ tile @ cw.BT.T)


@st.composite
def problems(draw):
    n, c, o = draw(st.integers(1, 3)), draw(st.integers(1, 7)), draw(st.integers(1, 7))
    ph, pw = draw(st.integers(0, 3)), draw(st.integers(0, 3))
    h = draw(st.integers(max(1, 3 - 2 * ph), 13))
    w = draw(st.integers(max(1, 3 - 2 * pw), 13))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x, wt = rng.normal(size=(n, c, h, w)), rng.normal(size=(o, c, 3, 3))
    bias = rng.normal(size=o) if draw(st.booleans()) else None
    dy = rng.normal(size=(n, o, h + 2 * ph - 2, w + 2 * pw - 2))
    return x, wt, bias, (ph, pw), dy


@settings(max_examples=40, deadline=None)
@given(problem=problems())
def test_reference_and_kernels_equal_direct_convolution_in_float64(problem):
    x, w, bias, padding, dy = problem
    size = x.shape[2:]
    want = direct(x, w, padding, bias), direct_data_grad(dy, w, size, padding)
    want += (direct_weight_grad(x, dy, padding),)
    for f in (cw.F2, cw.F4, cw.F6):
        for name, got in (
            ("reference", (
                cw.conv2d_ref(x, w, padding, bias, f), cw.conv2d_data_grad_ref(dy, w, size, padding, f),
                cw.conv2d_weight_grad_ref(x, dy, padding, f),
            )),
            ("numba", (
                cw.conv2d_forward(x, w, padding, bias, f=f),
                cw.conv2d_data_grad(dy, w, size, padding, f=f),
                cw.conv2d_weight_grad(x, dy, padding, f=f),
            )),
            ("numba, both gradients in one pass", (
                cw.conv2d_forward(x, w, padding, bias, f=f), *cw.conv2d_grads(x, dy, w, padding, f=f),
            )),
        ):  # fmt: skip
            for what, a, b in zip(("y", "dx", "dw"), got, want):
                msg = f"F{f.m} {name} {what}"
                assert a.shape == b.shape and a.dtype == np.float64, msg
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10, err_msg=msg)


@settings(max_examples=30, deadline=None)
@given(problem=problems(), dilation=st.integers(1, 2))
def test_by_worker_schedule_equals_direct_convolution_in_float64(problem, dilation):
    """One tile row per chunk: enough runs of chunks for the workers (``_plan``), on drawn
    shapes, undilated and on the sub-grids of dilation 2."""
    x, w, bias, padding, _ = problem
    padding = tuple(p * dilation for p in padding)
    d = (dilation, dilation)
    size = x.shape[2:]
    out = tuple(size[i] + 2 * padding[i] - 2 * dilation for i in range(2))
    if min(out) < 1:
        return
    dy = np.random.default_rng(int(abs(x).sum() * 1e3) % 2**16).normal(
        size=(x.shape[0], w.shape[0], *out)
    )
    geometry = ((1, 1), padding, d, 1)
    want = (
        conv._gemm_by_images(x, w, *geometry, bias),
        conv._data_grad_by_images(dy, w, size, *geometry),
        conv._weight_grad_by_images(x, dy, (3, 3), *geometry),
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(cw, "BUDGET_BYTES", 1)
        for f in (cw.F4, cw.F6):
            got = (
                cw.conv2d_forward(x, w, padding, bias, d, f=f),
                *cw.conv2d_grads(x, dy, w, padding, d, f=f),
            )
            for what, a, b in zip(("y", "dx", "dw"), got, want):
                np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10, err_msg=f"F{f.m} {what}")


@settings(max_examples=25, deadline=None)
@given(problem=problems())
def test_float32_error_stays_within_the_stated_bound(problem):
    x, w, bias, padding, _ = problem
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    # the bound is for the float32 inputs' exact product: compare with those inputs in float64
    exact = direct(x32.astype(np.float64), w32.astype(np.float64), padding)
    for f in (cw.F2, cw.F4, cw.F6):
        got = cw.conv2d_forward(x32, w32, padding, f=f)
        assert got.dtype == np.float32
        bound = cw.error_bound(x32, w32, padding, f)
        assert np.all(np.abs(got - exact) <= bound), (
            f.m,
            float(np.max(np.abs(got - exact) - bound)),
        )


@pytest.mark.parametrize(
    "f, bound_at_most, error_at_most",
    [(cw.F2, 1e-3, 1e-5), (cw.F4, 1e-2, 3e-5), (cw.F6, 2e-2, 5e-5)],
)
def test_bound_is_not_vacuous_and_float32_error_is_small(f, bound_at_most, error_at_most):
    """Relative to max |y| on 64 channels: F2 errs 3.4e-7 (bound 1.3e-4), F4 5.8e-6 (bound
    5.3e-3), F6 1.1e-5 (bound 1.1e-2); the larger tiles' transforms (entries up to 8 and 1/24,
    then 32 and 1/360) cost about 20x, then 2x more, in float32."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 64, 20, 20)).astype(np.float32)
    w = (rng.normal(size=(64, 64, 3, 3)) / 24).astype(np.float32)
    exact = direct(x.astype(np.float64), w.astype(np.float64), (1, 1))
    err = np.abs(cw.conv2d_forward(x, w, (1, 1), f=f) - exact)
    bound = cw.error_bound(x, w, (1, 1), f)
    assert np.all(err <= bound)
    assert bound.max() < bound_at_most * np.abs(exact).max()  # a useful bound, not a huge one
    assert err.max() < error_at_most * np.abs(exact).max()


@VARIANTS
def test_chunking_by_bands_changes_nothing(monkeypatch, f):
    rng = np.random.default_rng(3)
    x, w = rng.normal(size=(2, 3, 19, 9)), rng.normal(size=(4, 3, 3, 3))
    dy = rng.normal(size=(2, 4, 19, 9))

    def all_three():
        y = cw.conv2d_forward(x, w, (1, 1), f=f)
        return (
            y,
            cw.conv2d_data_grad(dy, w, (19, 9), (1, 1), f=f),
            cw.conv2d_weight_grad(x, dy, (1, 1), f=f),
        )

    whole = all_three()
    monkeypatch.setattr(cw, "BUDGET_BYTES", 1)  # one tile row per chunk
    assert len(cw._chunks(2, 10, 5, 16 * 7 * 8)) == 20
    for a, b in zip(whole, all_three()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("f", [cw.F4, cw.F6], ids=["F4", "F6"])
def test_data_gradient_stores_every_pixel_once_band_by_band(f, d):
    """The F4/F6 adjoint input transform writes dx with ``=`` (the driver does not zero it): run
    band by band onto NaN-filled memory, every pixel must still come out right; with dilation
    d, plane by plane over the d*d sub-grids of each image, which share no pixel."""
    from minisegnet.ops import conv_winograd_dilated as cwd

    rng = np.random.default_rng(8)
    n, c, o, h, w_, pad = 2, 3, 2, 17, 10, (1, 2)
    w = rng.normal(size=(o, c, 3, 3))
    dy = rng.normal(size=(n, o, h + 2 * pad[0] - 2 * d, w_ + 2 * pad[1] - 2 * d))
    hs, ws = cwd.subgrid_size((h, w_), pad, d)
    # the planes in the kernels' order, image-major (f4._subgrid): plane n*d*d + ra*d + rb
    dy_planes = cwd.output_grad_subgrids(dy, (h, w_), pad, d)
    dy_planes = dy_planes.reshape(d * d, n, *dy_planes.shape[1:]).swapaxes(0, 1)
    dy_planes = dy_planes.reshape(d * d * n, *dy_planes.shape[2:])
    th, tw = cw._tiles(hs - 2, ws - 2, f.m)
    k = f.a * f.a
    u_t = cw.filter_transform_ref(w, f).transpose(0, 2, 1)
    q = (u_t @ cw.output_transform_adjoint_ref(dy_planes, f)).reshape(k, c, -1, th, tw)
    input_transform_adjoint = cw._kernels(f)[3]
    dx = np.full((n, c, h, w_), np.nan)
    for b in range(d * d * n):
        for ty0 in range(th):  # one tile row per band, as the smallest budget makes them
            band = np.ascontiguousarray(q[:, :, b : b + 1, ty0 : ty0 + 1].reshape(k, -1))
            input_transform_adjoint(band, (1, 1, tw), dx, b, ty0, *pad, d)
    want = conv._data_grad_by_images(dy, w, (h, w_), (1, 1), pad, (d, d), 1)
    np.testing.assert_allclose(dx, want, rtol=1e-10, atol=1e-10)


@VARIANTS
def test_gradients_through_conv2d_by_finite_differences(f):
    rng = np.random.default_rng(4)
    x = ms.tensor(rng.normal(size=(2, 3, 5, 6)), requires_grad=True, dtype=np.float64)
    w = ms.tensor(rng.normal(size=(4, 3, 3, 3)), requires_grad=True, dtype=np.float64)
    b = ms.tensor(rng.normal(size=4), requires_grad=True, dtype=np.float64)
    with ms.backend.use("numba"), cw.winograd(True, min_channels=1, variant=f, any_size=True):
        gradcheck(lambda x, w, b: F.conv2d(x, w, b, padding=1), [x, w, b])


@pytest.mark.parametrize(
    "geometry, taken",
    [
        (dict(stride=1, padding=1), True),
        (dict(stride=2, padding=1), False),
        (dict(stride=1, padding=2, dilation=2), True),
        (dict(stride=1, padding=2, dilation=(2, 1)), False),
        (dict(stride=1, padding=1, groups=2), False),
    ],
)
def test_conv2d_dispatch_and_fallback(monkeypatch, geometry, taken):
    """The numba backend takes Winograd for stride-1, undilated, ungrouped 3x3 convolutions
    and falls back to ops/conv.py's path otherwise, with the same results either way."""
    calls = []
    real = cw.conv2d_forward
    monkeypatch.setattr(cw, "conv2d_forward", lambda *a, **k: calls.append(1) or real(*a, **k))
    rng = np.random.default_rng(5)
    groups = geometry.get("groups", 1)
    x = rng.normal(size=(2, 4, 13, 12)).astype(np.float32)
    w = rng.normal(size=(6, 4 // groups, 3, 3)).astype(np.float32)
    with ms.backend.use("numba"), cw.winograd(True, min_channels=1, dilated=True, any_size=True):
        y = F.conv2d(ms.tensor(x), ms.tensor(w), **geometry)
    assert bool(calls) == taken
    with ms.backend.use("numpy"):
        y_ref = F.conv2d(ms.tensor(x), ms.tensor(w), **geometry)
    np.testing.assert_allclose(y.data, y_ref.data, rtol=1e-4, atol=1e-4)


@st.composite
def dilated_problems(draw):
    d = draw(st.integers(2, 4))
    n, c, o = draw(st.integers(1, 2)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    ph, pw = draw(st.integers(0, 2 * d + 1)), draw(st.integers(0, 2 * d + 1))
    h = draw(st.integers(max(1, 2 * d + 1 - 2 * ph), 15))
    w = draw(st.integers(max(1, 2 * d + 1 - 2 * pw), 15))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    x, wt = rng.normal(size=(n, c, h, w)), rng.normal(size=(o, c, 3, 3))
    bias = rng.normal(size=o) if draw(st.booleans()) else None
    dy = rng.normal(size=(n, o, h + 2 * ph - 2 * d, w + 2 * pw - 2 * d))
    f = draw(st.sampled_from([cw.F2, cw.F4, cw.F6]))  # F2 copies the sub-grids, F4/F6 read in place
    budget = draw(st.sampled_from([None, 1]))  # 1: one tile row of one sub-grid per chunk
    return x, wt, bias, (ph, pw), d, dy, f, budget


@settings(max_examples=60, deadline=None)
@given(problem=dilated_problems())
def test_dilated_subgrids_equal_direct_dilated_convolution(problem):
    x, w, bias, padding, d, dy, f, budget = problem
    geometry = ((1, 1), padding, (d, d), 1)
    size = x.shape[2:]
    kept, cw.BUDGET_BYTES = cw.BUDGET_BYTES, budget
    try:
        got = [
            cw.conv2d_forward(x, w, padding, bias, (d, d), f=f),
            cw.conv2d_data_grad(dy, w, size, padding, (d, d), f=f),
            cw.conv2d_weight_grad(x, dy, padding, (d, d), f=f),
            *cw.conv2d_grads(x, dy, w, padding, (d, d), f=f),
        ]
    finally:
        cw.BUDGET_BYTES = kept
    want = [
        conv._gemm_by_images(x, w, *geometry, bias),
        conv._data_grad_by_images(dy, w, size, *geometry),
        conv._weight_grad_by_images(x, dy, (3, 3), *geometry),
    ]
    pairs = list(zip(got, want + want[1:]))
    for what, (result, expected) in zip(("y", "dx", "dw", "dx (1 pass)", "dw (1 pass)"), pairs):
        assert result.shape == expected.shape, what
        np.testing.assert_allclose(result, expected, rtol=1e-10, atol=1e-10, err_msg=what)


def test_space_to_batch_round_trip():
    from minisegnet.ops import conv_winograd_dilated as cwd

    a = np.arange(2 * 3 * 6 * 9).reshape(2, 3, 6, 9)
    s = cwd.space_to_batch(a, 3)
    assert s.shape == (18, 3, 2, 3)
    np.testing.assert_array_equal(s[(1 * 3 + 2) * 2, :, 1, 0], a[0, :, 1 * 3 + 1, 0 * 3 + 2])
    np.testing.assert_array_equal(cwd.batch_to_space(s, 3, 2), a)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 2),
    c=st.integers(1, 3),
    h=st.integers(1, 11),
    w=st.integers(1, 11),
    d=st.integers(2, 4),
    ph=st.integers(0, 5),
    pw=st.integers(0, 5),
)
def test_numba_subgrid_copies_equal_the_numpy_definitions(n, c, h, w, d, ph, pw):
    """gather_subgrids / scatter_subgrids (what the drivers call) against the four NumPy
    rearrangements, on odd sizes and paddings wider and narrower than the dilation."""
    from minisegnet.ops import conv_winograd_dilated as cwd

    if h + 2 * ph < 2 * d + 1 or w + 2 * pw < 2 * d + 1:  # no output: the path never sees it
        return
    rng = np.random.default_rng(n * 1000 + h * 31 + w)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    hs, ws = cwd.subgrid_size((h, w), (ph, pw), d)
    x_sub = cwd.gather_subgrids(x, d, (hs, ws), (ph, pw))
    np.testing.assert_array_equal(x_sub, cwd.input_subgrids(x, (ph, pw), d))
    out_size = (h + 2 * ph - 2 * d, w + 2 * pw - 2 * d)
    dy = rng.standard_normal((n, c) + out_size).astype(np.float32)
    dy_sub = cwd.gather_subgrids(dy, d, (hs - 2, ws - 2))
    np.testing.assert_array_equal(dy_sub, cwd.output_grad_subgrids(dy, (h, w), (ph, pw), d))
    np.testing.assert_array_equal(
        cwd.scatter_subgrids(dy_sub, d, n, out_size),
        cwd.output_from_subgrids(dy_sub, d, n, out_size),
    )
    np.testing.assert_array_equal(
        cwd.scatter_subgrids(x_sub, d, n, (h, w), (ph, pw)),
        cwd.input_grad_from_subgrids(x_sub, d, n, (h, w), (ph, pw)),
    )


def test_path_follows_the_measured_size_rule():
    """Winograd for 32+ channels on images with 40+ pixels per channel, and dilated ones with
    64+ channels and 200+ pixels per channel over the batch; F6 on 64k+ output pixels over the
    batch (undilated), else F4."""
    assert cw.VARIANT is None
    assert cw._variant(None, (1, 1), 8 * 128 * 128) is cw.F6
    assert cw._variant(None, (1, 1), 1 * 120 * 160) is cw.F4
    assert cw._variant(None, (2, 2), 8 * 128 * 128) is cw.F4
    assert cw._variant(cw.F2, (1, 1), 8 * 128 * 128) is cw.F2
    assert cw.applies(64, 64, (3, 3), (1, 1), (1, 1), 1, (128, 128))  # 256 pixels per channel
    assert cw.applies(128, 128, (3, 3), (1, 1), (1, 1), 1, (120, 160))  # 150
    assert cw.applies(256, 256, (3, 3), (1, 1), (1, 1), 1, (90, 120))  # 42
    assert not cw.applies(128, 128, (3, 3), (1, 1), (1, 1), 1, (60, 80))  # 38: row shifts
    assert not cw.applies(256, 256, (3, 3), (1, 1), (1, 1), 1, (60, 80))  # 19
    assert cw.applies(32, 32, (3, 3), (1, 1), (1, 1), 1, (40, 40))  # 32 channels, 50
    assert not cw.applies(16, 16, (3, 3), (1, 1), (1, 1), 1, (96, 128))  # too few channels
    with cw.winograd(True, dilated=True):  # dilated: 200+ pixels per channel over the batch
        assert cw.applies(64, 64, (3, 3), (1, 1), (2, 2), 1, (128, 128), batch=8)  # 2048
        assert cw.applies(64, 64, (3, 3), (1, 1), (2, 2), 1, (64, 64), batch=4)  # 256
        assert not cw.applies(64, 64, (3, 3), (1, 1), (2, 2), 1, (60, 80), batch=1)  # 75
        assert not cw.applies(128, 128, (3, 3), (1, 1), (2, 2), 1, (120, 160))  # 150
        assert not cw.applies(512, 512, (3, 3), (1, 1), (4, 4), 1, (60, 80))  # 9.4
        assert not cw.applies(32, 32, (3, 3), (1, 1), (2, 2), 1, (96, 128), batch=4)  # 32 ch
    with cw.winograd(True, variant=cw.F2, any_size=True):
        assert cw._variant(None) is cw.F2
        assert cw.applies(64, 64, (3, 3), (1, 1), (1, 1), 1, (8, 8))


def test_few_channels_keep_the_direct_path():
    assert not cw.applies(3, 64, (3, 3), (1, 1), (1, 1), 1)
    assert cw.applies(64, 64, (3, 3), (1, 1), (1, 1), 1)
    assert not cw.applies(64, 64, (7, 7), (1, 1), (1, 1), 1)
    with cw.winograd(True, dilated=True):
        assert cw.applies(64, 64, (3, 3), (1, 1), (2, 2), 1)
        assert not cw.applies(64, 64, (3, 3), (1, 1), (2, 1), 1)
    with cw.winograd(True, dilated=False):
        assert not cw.applies(64, 64, (3, 3), (1, 1), (2, 2), 1)
    with cw.winograd(False):
        assert not cw.applies(64, 64, (3, 3), (1, 1), (1, 1), 1)


@pytest.mark.parametrize("d", [1, 2])
@pytest.mark.parametrize("f", [cw.F4, cw.F6], ids=["F4", "F6"])
def test_by_worker_schedule_equals_the_shared_one(monkeypatch, f, d):
    """Small chunks make enough runs for the workers (``_plan``): forward, both gradients and
    each gradient alone by worker, against the schedule that runs every kernel over all
    threads; the data gradient's runs start where planes (images, sub-grids) start."""
    from minisegnet.ops import blas_threads

    if blas_threads.pool()[1] < 2:
        pytest.skip("one worker: the by-worker schedule is never taken")
    rng = np.random.default_rng(9)
    x, w = rng.normal(size=(3, 4, 21, 14)), rng.normal(size=(5, 4, 3, 3))
    pad = (d, d)
    dy = rng.normal(size=(3, 5, 21, 14))

    def all_four():
        return (
            cw.conv2d_forward(x, w, pad, dilation=(d, d), f=f),
            *cw.conv2d_grads(x, dy, w, pad, (d, d), f=f),
            cw.conv2d_data_grad(dy, w, (21, 14), pad, (d, d), f=f),
            cw.conv2d_weight_grad(x, dy, pad, (d, d), f=f),
        )

    monkeypatch.setattr(cw, "BUDGET_BYTES", 1)  # one tile row per chunk
    with monkeypatch.context() as m:
        m.setattr(cw, "BY_WORKER", False)
        shared = all_four()
    runs = []
    real_run_each = blas_threads.run_each
    monkeypatch.setattr(
        blas_threads, "run_each", lambda n, *a: runs.append(n) or real_run_each(n, *a)
    )
    by_worker = all_four()
    assert len(runs) == 4 and min(runs) >= blas_threads.pool()[1], runs  # grads: one schedule
    for a, b in zip(by_worker, shared):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_data_gradient_runs_start_where_planes_start():
    chunks = [(n, 1, t, 1) for n in range(3) for t in range(5)]
    for whole_planes in (True, False):
        segments = cw._segments(chunks, whole_planes)
        assert [c for s in segments for c in s] == chunks
        if whole_planes:
            assert all(s[0][2] == 0 for s in segments)
    assert len(cw._segments(chunks, False)) > len(cw._segments(chunks, True))

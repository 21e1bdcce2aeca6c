"""Bilinear and nearest resizing (minisegnet/ops/interpolate.py): gradients of the references,
every backend against the references, PyTorch's numbers (both align_corners conventions, size
or scale_factor), corner pixels, label maps, and the errors."""

from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minisegnet as ms
import minisegnet.functional as F
from minisegnet import nn
from minisegnet.gradcheck import gradcheck
from minisegnet.ops import interpolate as interp
from tests.conftest import FIXTURE_OK
from tests.helpers import assert_matches, distinct, tensor_of

CUDA_MODULE = "minisegnet.cuda.interpolate"
importlib.import_module(CUDA_MODULE)  # the kernels under test: missing is a failure, not a skip


@st.composite
def resize_cases(draw, max_in: int = 9, max_out: int = 20, modes=("bilinear", "nearest")):
    """Input size, then either an output size or scale factors (integer and fractional)."""
    h, w = draw(st.integers(1, max_in)), draw(st.integers(1, max_in))
    mode = draw(st.sampled_from(modes))
    align = draw(st.sampled_from([None, False, True])) if mode == "bilinear" else None
    if draw(st.booleans()):
        size, scale = (draw(st.integers(1, max_out)), draw(st.integers(1, max_out))), None
    else:
        factor = st.one_of(
            st.sampled_from([0.5, 1, 2, 3, 8]), st.floats(0.3, 4.0).map(lambda f: round(f, 3))
        )
        size, scale = None, (draw(factor), draw(factor))
        if min(math.floor(h * scale[0]), math.floor(w * scale[1])) < 1:
            scale = (max(scale[0], 1.0), max(scale[1], 1.0))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w)
    return {
        "shape": shape, "size": size, "scale_factor": scale, "mode": mode,
        "align_corners": align, "seed": draw(st.integers(0, 2**16)),
    }  # fmt: skip


def resize(t, case):
    return F.interpolate(t, case["size"], case["scale_factor"], case["mode"], case["align_corners"])


def run(backend_name, x, dy, case):
    with ms.backend.use(backend_name):
        t = tensor_of(x, requires_grad=True)
        y = resize(t, case)
        y.backward(dy)
        return y.numpy(), t.grad


def out_shape(x, case):
    with ms.backend.use("numpy"):
        return resize(tensor_of(x), case).shape


# ----------------------------------------------------------------------------- gradients
@given(case=resize_cases(max_in=6, max_out=12))
def test_reference_gradient(case):
    x = tensor_of(distinct(case["shape"], case["seed"]), requires_grad=True)
    with ms.backend.use("numpy"):
        gradcheck(lambda t: resize(t, case), [x])


# ----------------------------------------------------------------------------- backends
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@FIXTURE_OK
@given(case=resize_cases())
def test_backend_matches_reference(kernel_backend, dtype, case):
    x = distinct(case["shape"], case["seed"], dtype)
    dy = distinct(out_shape(x, case), case["seed"] + 1, dtype)
    y_ref, dx_ref = run("numpy", x, dy, case)
    y, dx = run(kernel_backend, x, dy, case)
    assert y.dtype == dtype and dx.dtype == dtype
    if case["mode"] == "nearest":
        np.testing.assert_array_equal(y, y_ref)  # a copy: exact
    assert_matches(y, y_ref, dtype, what="y")
    assert_matches(dx, dx_ref, dtype, what="dx")


def test_pspnet_bilinear_x8(any_backend):
    x = distinct((2, 21, 16, 16), 3, np.float32)
    with ms.backend.use(any_backend):
        t = tensor_of(x, requires_grad=True)
        y = F.interpolate(t, scale_factor=8, mode="bilinear", align_corners=False)
        assert y.shape == (2, 21, 128, 128)
        y.sum().backward()
    # every input pixel hands out a total weight of 64 (8 x 8 outputs per pixel on average;
    # exactly 64 away from the borders, where clamping gives the edge pixels more)
    np.testing.assert_allclose(t.grad[:, :, 4:-4, 4:-4], 64.0, rtol=1e-5)
    np.testing.assert_allclose(t.grad.sum(), y.size, rtol=1e-5)


# ----------------------------------------------------------------------------- PyTorch
@given(case=resize_cases())
def test_matches_torch(case):
    torch = pytest.importorskip("torch")
    for dtype in (np.float32, np.float64):
        x = distinct(case["shape"], case["seed"], dtype)
        dy = distinct(out_shape(x, case), case["seed"] + 1, dtype)
        y, dx = run("numba", x, dy, case)
        tx = torch.tensor(x, requires_grad=True)
        ty = torch.nn.functional.interpolate(
            tx, case["size"], case["scale_factor"], case["mode"], case["align_corners"]
        )
        ty.backward(torch.tensor(dy))
        if case["mode"] == "nearest":
            np.testing.assert_array_equal(y, ty.detach().numpy())
        assert_matches(y, ty.detach().numpy(), np.float32, what="y")  # torch maps in float32
        assert_matches(dx, tx.grad.numpy(), np.float32, what="dx")


@pytest.mark.parametrize("in_len, out_len", [(6, 74), (14, 46), (26, 22), (21, 77)])
def test_nearest_indices_computed_in_float32_like_torch(any_backend, in_len, out_len):
    # pairs where float32 and float64 arithmetic floor d * in/out differently: PyTorch uses
    # float32 even for float64 maps
    torch = pytest.importorskip("torch")
    x = np.arange(in_len, dtype=np.float64).reshape(1, 1, 1, in_len)
    expected = torch.nn.functional.interpolate(torch.tensor(x), size=(1, out_len), mode="nearest")
    with ms.backend.use(any_backend):
        got = F.interpolate(tensor_of(x), size=(1, out_len), mode="nearest")
    np.testing.assert_array_equal(got.numpy(), expected.numpy())


# ----------------------------------------------------------------------------- properties
@given(case=resize_cases(modes=("bilinear",)).filter(lambda c: c["align_corners"]))
def test_align_corners_reproduces_the_corner_pixels(case):
    x = distinct(case["shape"], case["seed"])
    y = resize(tensor_of(x), case).numpy()
    (h, w), (ho, wo) = x.shape[2:], y.shape[2:]
    for cy, oy in ((0, 0), (h - 1, ho - 1)):
        for cx, ox in ((0, 0), (w - 1, wo - 1)):
            if (ho > 1 or cy == 0) and (wo > 1 or cx == 0):
                np.testing.assert_allclose(y[:, :, oy, ox], x[:, :, cy, cx], rtol=1e-12)


@given(case=resize_cases(modes=("bilinear",)), value=st.floats(-3, 3))
def test_bilinear_keeps_a_constant_map_constant(case, value):
    y = resize(tensor_of(np.full(case["shape"], value)), case).numpy()
    np.testing.assert_allclose(y, value, rtol=1e-12, atol=1e-12)


def test_worked_example_and_identity():
    x = tensor_of(np.array([[[[1.0, 3.0]]]]))
    half = F.interpolate(x, size=(1, 4), mode="bilinear").numpy()
    np.testing.assert_allclose(half, [[[[1.0, 1.5, 2.5, 3.0]]]])
    corners = F.interpolate(x, size=(1, 4), mode="bilinear", align_corners=True).numpy()
    np.testing.assert_allclose(corners, [[[[1.0, 5 / 3, 7 / 3, 3.0]]]])
    z = tensor_of(distinct((1, 2, 5, 7), 0))
    np.testing.assert_array_equal(F.interpolate(z, size=(5, 7)).numpy(), z.numpy())
    # an axis that keeps its length is copied whatever the scale factor (PyTorch's rule)
    np.testing.assert_array_equal(
        F.interpolate(z, scale_factor=(1.1, 1.0), mode="bilinear").numpy(), z.numpy()
    )


def test_nearest_resizes_label_maps_exactly():
    labels = np.random.default_rng(0).integers(0, 21, (2, 1, 5, 6)).astype(np.int64)
    labels[0, 0, 0, 0] = 255  # the ignore label survives
    for name in ("numpy", "numba"):
        with ms.backend.use(name):
            up = F.interpolate(ms.tensor(labels), scale_factor=2, mode="nearest").numpy()
            down = F.interpolate(ms.tensor(labels), size=(3, 3), mode="nearest").numpy()
        assert up.dtype == np.int64 and up.shape == (2, 1, 10, 12)
        np.testing.assert_array_equal(up, labels.repeat(2, axis=2).repeat(2, axis=3))
        assert set(np.unique(down)) <= set(np.unique(labels))


# ----------------------------------------------------------------------------- errors, layer
def test_bad_inputs_raise_clear_errors():
    x = tensor_of(distinct((1, 2, 4, 4), 0, np.float32))
    with pytest.raises(ValueError, match="align_corners only applies to mode='bilinear'"):
        F.interpolate(x, scale_factor=2, mode="nearest", align_corners=False)
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        F.interpolate(x)
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        F.interpolate(x, size=8, scale_factor=2)
    with pytest.raises(ValueError, match=r"4-D \(N, C, H, W\)"):
        F.interpolate(tensor_of(distinct((2, 4, 4), 0)), scale_factor=2)
    with pytest.raises(ValueError, match="mode must be"):
        F.interpolate(x, scale_factor=2, mode="bicubic")
    with pytest.raises(ValueError, match="size must be a positive int"):
        F.interpolate(x, size=(0, 3))
    with pytest.raises(ValueError, match="empty output"):
        F.interpolate(x, scale_factor=0.1)
    with pytest.raises(TypeError, match="float32 or float64"):
        F.interpolate(ms.tensor(np.ones((1, 1, 2, 2), np.int64)), scale_factor=2)
    with pytest.raises(ValueError, match="exactly one of size and scale_factor"):
        nn.Upsample()
    with pytest.raises(ValueError, match="align_corners only applies"):
        nn.Upsample(scale_factor=2, align_corners=True)


def test_upsample_layer():
    x = tensor_of(distinct((1, 2, 3, 4), 0, np.float32))
    up = nn.Upsample(scale_factor=2)
    assert up.mode == "nearest" and "scale_factor=2" in repr(up)
    np.testing.assert_array_equal(up(x).numpy(), x.numpy().repeat(2, 2).repeat(2, 3))
    bilinear = nn.Upsample(size=(7, 9), mode="bilinear", align_corners=True)
    assert bilinear(x).shape == (1, 2, 7, 9) and "align_corners=True" in repr(bilinear)


def test_tap_ranges_cover_every_tap():
    # the backward's candidate ranges hold every output whose taps read the input index
    for in_len, out_len in [(1, 5), (5, 1), (4, 9), (9, 4), (16, 128), (7, 7)]:
        for align in (False, True):
            i0, i1, l0, l1 = interp.linear_taps(in_len, out_len, align)
            lo, hi = interp.tap_ranges(i0, i1, in_len)
            for d in range(out_len):
                for i in (i0[d], i1[d]):
                    assert lo[i] <= d < hi[i]

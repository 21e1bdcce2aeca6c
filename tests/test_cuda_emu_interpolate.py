"""Bilinear and nearest resizing CUDA kernels (minisegnet/cuda/interpolate.py) on cuda-emu.

The independent reference builds each axis' interpolation matrix A (out, in) from PyTorch's
coordinate rules, so y = Ah x Aw^T and the backward dx = Ah^T dy Aw: a matrix formulation,
unlike the kernels' per-pixel gathers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import assert_matches
from tests.test_cuda_common import (
    EXAMPLES,
    FLOATS,
    bilinear_matrix,
    nearest_index,
    needs_emu,
    ops_ref_pair,
    rand,
)

# (in (H, W), out (H, W), scale_factor or None); those give out = floor(in * scale_factor) and
# the contract's scale, the mapping ratio, is 1/scale_factor (see ratio()).
CASES = [
    ((5, 6), (10, 12), None),
    ((5, 6), (10, 12), (2.0, 2.0)),
    ((7, 9), (17, 26), (2.5, 2.9)),
    ((8, 8), (3, 5), None),  # downsampling
    ((4, 6), (4, 13), None),  # one axis unchanged (copied)
    ((3, 3), (24, 24), (8.0, 8.0)),  # PSPNet-style x8
    ((1, 5), (4, 1), None),  # single rows and columns
]

pytestmark = needs_emu


def ratio(factor):
    """The contract's ``scale`` argument for a PyTorch ``scale_factor``: 1/scale_factor."""
    return None if factor is None else (1.0 / factor[0], 1.0 / factor[1])


def _apply(mh, mw, x):
    return np.einsum("oh,nchw,pw->ncop", mh, x.astype(np.float64), mw)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", CASES)
def test_bilinear_forward_backward(case, dtype, align_corners):
    from minisegnet.cuda.interpolate import bilinear_backward, bilinear_forward

    (hi, wi), (ho, wo), factor = case
    scale = ratio(factor)
    sh, sw = scale or (None, None)
    mh = bilinear_matrix(hi, ho, align_corners, sh, dtype)
    mw = bilinear_matrix(wi, wo, align_corners, sw, dtype)
    x = rand((2, 3, hi, wi), dtype)
    y = bilinear_forward(x, (ho, wo), align_corners, scale)
    assert y.dtype == dtype
    assert_matches(y, _apply(mh, mw, x), dtype, "bilinear forward")
    dy = rand(y.shape, dtype, seed=1)
    dx = bilinear_backward(dy, (hi, wi), align_corners, scale)
    assert_matches(dx, _apply(mh.T, mw.T, dy), dtype, "bilinear backward")


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", CASES + [((4, 5), (8, 10), None), ((6, 9), (4, 6), None)])
def test_nearest_forward_backward(case, dtype):
    from minisegnet.cuda.interpolate import nearest_backward, nearest_forward

    (hi, wi), (ho, wo), factor = case
    scale = ratio(factor)
    sh, sw = scale or (None, None)
    rows, cols = nearest_index(hi, ho, sh), nearest_index(wi, wo, sw)
    x = rand((2, 2, hi, wi), dtype)
    y = nearest_forward(x, (ho, wo), scale)
    np.testing.assert_array_equal(y, x[:, :, rows[:, None], cols[None, :]])
    dy = rand(y.shape, dtype, seed=1)
    mh = np.zeros((ho, hi))
    mh[np.arange(ho), rows] = 1
    mw = np.zeros((wo, wi))
    mw[np.arange(wo), cols] = 1
    assert_matches(nearest_backward(dy, (hi, wi), scale), _apply(mh.T, mw.T, dy), dtype)


@pytest.mark.parametrize("case", CASES)
def test_against_torch(case):
    """PyTorch's F.interpolate and its gradient (optional: needs torch)."""
    torch = pytest.importorskip("torch")
    from minisegnet.cuda import interpolate as cu

    (hi, wi), (ho, wo), factor = case
    scale = ratio(factor)
    x = rand((1, 2, hi, wi), np.float32)
    kw = {"scale_factor": factor, "recompute_scale_factor": False} if factor else {"size": (ho, wo)}
    for mode, align in (("bilinear", False), ("bilinear", True), ("nearest", None)):
        tx = torch.from_numpy(x).requires_grad_()
        extra = {} if align is None else {"align_corners": align}
        ty = torch.nn.functional.interpolate(tx, mode=mode, **kw, **extra)
        assert tuple(ty.shape[2:]) == (ho, wo)
        dy = rand(tuple(ty.shape), np.float32, seed=1)
        ty.backward(torch.from_numpy(dy))
        if mode == "bilinear":
            y, dx = (
                cu.bilinear_forward(x, (ho, wo), align, scale),
                cu.bilinear_backward(dy, (hi, wi), align, scale),
            )
        else:
            y, dx = cu.nearest_forward(x, (ho, wo), scale), cu.nearest_backward(dy, (hi, wi), scale)
        assert_matches(y, ty.detach().numpy(), np.float32, f"{mode} {align} forward")
        assert_matches(dx, tx.grad.numpy(), np.float32, f"{mode} {align} backward")


@pytest.mark.parametrize("dtype", FLOATS)
def test_against_the_ops_references(dtype):
    from minisegnet.cuda import interpolate as cu

    fw, bw = ops_ref_pair("interpolate", "bilinear")
    nfw, nbw = ops_ref_pair("interpolate", "nearest")
    for (hi, wi), out, factor in CASES:
        scale = ratio(factor)
        x = rand((2, 2, hi, wi), dtype)
        for align in (False, True):
            y = cu.bilinear_forward(x, out, align, scale)
            assert_matches(y, fw(x, out, align, scale), dtype, "bilinear_forward")
            dy = rand(y.shape, dtype, seed=1)
            assert_matches(
                cu.bilinear_backward(dy, (hi, wi), align, scale),
                bw(dy, (hi, wi), align, scale),
                dtype,
                "bilinear_backward",
            )
        y = cu.nearest_forward(x, out, scale)
        np.testing.assert_array_equal(y, nfw(x, out, scale))
        dy = rand(y.shape, dtype, seed=2)
        assert_matches(cu.nearest_backward(dy, (hi, wi), scale), nbw(dy, (hi, wi), scale), dtype)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    hi=st.integers(1, 9),
    wi=st.integers(1, 9),
    ho=st.integers(1, 19),
    wo=st.integers(1, 19),
    align=st.booleans(),
)
def test_bilinear_property(hi, wi, ho, wo, align):
    """Any sizes, up or down: the kernels equal the matrix formulation (float64)."""
    from minisegnet.cuda.interpolate import bilinear_backward, bilinear_forward

    mh = bilinear_matrix(hi, ho, align, None, np.float64)
    mw = bilinear_matrix(wi, wo, align, None, np.float64)
    x = np.random.default_rng(0).standard_normal((1, 2, hi, wi))
    np.testing.assert_allclose(
        bilinear_forward(x, (ho, wo), align, None), _apply(mh, mw, x), rtol=1e-12, atol=1e-12
    )
    dy = np.random.default_rng(1).standard_normal((1, 2, ho, wo))
    np.testing.assert_allclose(
        bilinear_backward(dy, (hi, wi), align, None), _apply(mh.T, mw.T, dy), rtol=1e-12, atol=1e-12
    )


def test_bad_arguments():
    from minisegnet.cuda.interpolate import bilinear_forward, nearest_forward

    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(TypeError, match="scale"):
        bilinear_forward(x, (8, 8), False, 2.0)
    with pytest.raises(ValueError, match="out_size"):
        nearest_forward(x, (0, 8), None)
    with pytest.raises(TypeError, match="float32 or float64"):
        nearest_forward(x.astype(np.float16), (8, 8), None)

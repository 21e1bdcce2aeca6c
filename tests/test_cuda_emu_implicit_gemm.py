"""Implicit-GEMM convolution kernels (minisegnet/cuda/implicit_gemm.py) on the cuda-emu backend:
the wrappers against PyTorch-free NumPy references, split-K, and conv2d / conv_transpose2d
through ops/conv.py with the switch on against the NumPy backend and against the im2col
fallback, on hypothesis shapes (strides, paddings, dilations, groups, odd sizes)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minisegnet.ops import conv as conv_op
from tests.helpers import assert_matches, record_launches
from tests.test_conv import STRATEGIES, assert_runs_match, run
from tests.test_cuda_common import (
    EXAMPLES,
    FLOATS,
    col2im_np,
    im2col_np,
    needs_emu,
    out_size,
    rand,
)

pytestmark = needs_emu


def conv_np(x, w, b, stride, padding, dilation, groups):
    """y, through the test's own im2col (float64), one group at a time."""
    n = x.shape[0]
    o, cg, kh, kw = w.shape
    cols = im2col_np(x, (kh, kw), stride, padding, dilation)  # (n, C*kh*kw, P)
    og = o // groups
    y = np.concatenate(
        [
            w[g * og : (g + 1) * og].reshape(og, -1).astype(np.float64)
            @ cols[:, g * cg * kh * kw : (g + 1) * cg * kh * kw]
            for g in range(groups)
        ],
        axis=1,
    )
    if b is not None:
        y += b.reshape(1, -1, 1)
    ho = out_size(x.shape[2], kh, stride[0], padding[0], dilation[0])
    return y.reshape(n, o, ho, -1)


CASES = [  # (x shape, O, kernel, stride, padding, dilation, groups)
    ((2, 3, 7, 9), 5, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    ((1, 4, 8, 6), 6, (3, 2), (2, 1), (0, 2), (2, 1), 2),
    ((2, 70, 5, 5), 66, (3, 3), (2, 2), (1, 1), (1, 1), 1),  # more than one 64-row tile
    ((1, 2, 9, 10), 3, (3, 3), (2, 3), (2, 1), (2, 3), 1),
    ((1, 2, 4, 4), 2, (4, 4), (1, 1), (3, 3), (1, 1), 1),  # kernel larger than the padding's reach
    ((3, 6, 5, 7), 6, (1, 1), (1, 1), (0, 0), (1, 1), 3),
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", CASES)
def test_wrappers_match_numpy(case, dtype):
    """Forward, data and weight gradients against im2col in float64 and its adjoint: the data
    gradient is <dx, x> = <dy, conv(x)>, the weight gradient <dw, w> = <dy, conv(x; w)>."""
    from minisegnet.cuda import implicit_gemm as ig

    shape, o, k, s, p, d, g = case
    x = rand(shape, dtype)
    w = rand((o, shape[1] // g, *k), dtype, seed=1)
    b = rand((o,), dtype, seed=2)
    y = ig.conv2d_forward(x, w, b, s, p, d, g)
    assert y.dtype == dtype
    assert_matches(y, conv_np(x, w, b, s, p, d, g), dtype, "y")
    assert_matches(ig.conv2d_forward(x, w, None, s, p, d, g), conv_np(x, w, None, s, p, d, g),
                   dtype, "y without bias")  # fmt: skip
    dy = rand(y.shape, dtype, seed=3)
    dx = ig.conv2d_data_grad(dy, w, shape[2:], s, p, d, g)
    dw = ig.conv2d_weight_grad(x, dy, k, s, p, d, g)
    assert dx.shape == x.shape and dw.shape == w.shape
    # Both gradients are Jacobian-transposes of the linear map, so with unit probes:
    for i in range(3):
        probe = rand(x.shape, np.float64, seed=10 + i)
        expected = (dy * conv_np(probe, w.astype(np.float64), None, s, p, d, g)).sum()
        np.testing.assert_allclose((dx * probe).sum(), expected, rtol=1e-4 if dtype == np.float32
                                   else 1e-10, atol=1e-3)  # fmt: skip
        probe_w = rand(w.shape, np.float64, seed=20 + i)
        expected = (dy * conv_np(x.astype(np.float64), probe_w, None, s, p, d, g)).sum()
        np.testing.assert_allclose((dw * probe_w).sum(), expected, rtol=1e-4 if dtype == np.float32
                                   else 1e-10, atol=1e-3)  # fmt: skip


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 2),
    c=st.integers(1, 3),
    o=st.integers(1, 3),
    k=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    s=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    d=st.tuples(st.integers(1, 3), st.integers(1, 3)),
)
def test_data_grad_by_stride_phase_is_col2im(data, n, c, o, k, s, d):
    """The stride-phase split (each phase multiplies only its own taps; phases where no tap
    lands, e.g. stride 2 with dilation 2, get zeros) equals col2im(w^T @ dy), odd sizes too."""
    from minisegnet.cuda import implicit_gemm as ig

    p = (data.draw(st.integers(0, k[0])), data.draw(st.integers(0, k[1])))
    h = data.draw(st.integers(max(1, d[0] * (k[0] - 1) + 1 - 2 * p[0]), 16))
    w_ = data.draw(st.integers(max(1, d[1] * (k[1] - 1) + 1 - 2 * p[1]), 16))
    ho, wo = out_size(h, k[0], s[0], p[0], d[0]), out_size(w_, k[1], s[1], p[1], d[1])
    rng = np.random.default_rng(0)
    w = rng.standard_normal((o, c, *k))
    dy = rng.standard_normal((n, o, ho, wo))
    dcols = np.einsum("ok,nop->nkp", w.reshape(o, -1), dy.reshape(n, o, -1))
    expected = col2im_np(dcols, (h, w_), k, s, p, d)
    actual = ig.conv2d_data_grad(dy, w, (h, w_), s, p, d, 1)
    np.testing.assert_allclose(actual, expected, rtol=1e-11, atol=1e-11)


def test_weight_grad_split_k_matches_one_slice(monkeypatch):
    """Many slices (split-K, summed by the wrapper) give the one-slice result."""
    from minisegnet.cuda import implicit_gemm as ig

    x = rand((2, 3, 33, 31), np.float64)
    dy = rand((2, 4, 33, 31), np.float64, seed=1)
    splits, slice_len = ig.weight_grad_splits(2 * 33 * 31, 1)
    assert splits > 1 and slice_len % ig.TILE_K == 0 and splits * slice_len >= 2 * 33 * 31
    many = ig.conv2d_weight_grad(x, dy, (3, 3), (1, 1), (1, 1), (1, 1), 1)
    monkeypatch.setattr(ig, "TARGET_BLOCKS", 1)
    one = ig.conv2d_weight_grad(x, dy, (3, 3), (1, 1), (1, 1), (1, 1), 1)
    np.testing.assert_allclose(many, one, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("op", sorted(STRATEGIES))
@pytest.mark.parametrize("implicit", [True, False])
@settings(max_examples=EXAMPLES, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(FLOATS))
def test_matches_the_reference(implicit, op, data, dtype):
    """Convolution, and transposed convolution through the same three kernels (roles swapped)."""
    case = data.draw(STRATEGIES[op](max_extra=4), "case")
    x, w, b = getattr(case, f"{op}_arrays")(dtype)
    expected = run("numpy", op, case, x, w, b)
    with conv_op.cuda_implicit_gemm(implicit):
        actual = run("cuda-emu", op, case, x, w, b)
    assert_runs_match(actual, expected, dtype)


def test_the_switch_selects_the_kernel(monkeypatch):
    """On with cuda-emu: the implicit-GEMM kernels run and im2col does not; off: the reverse."""
    import minisegnet as ms
    import minisegnet.functional as F

    seen = record_launches(monkeypatch, "minisegnet.cuda.implicit_gemm", "minisegnet.cuda.conv")
    x = rand((1, 2, 6, 6), np.float32)
    w = rand((3, 2, 3, 3), np.float32, seed=1)
    for implicit, wanted, unwanted in ((True, "conv_igemm", "im2col"), (False, "im2col", "igemm")):
        seen.clear()
        with ms.backend.use("cuda-emu"), conv_op.cuda_implicit_gemm(implicit):
            tx = ms.tensor(x, requires_grad=True)
            tw = ms.tensor(w, requires_grad=True)
            F.conv2d(tx, tw, padding=1).sum().backward()
        assert any(wanted in k for k in seen) and not any(unwanted in k for k in seen), seen


def test_errors_name_the_argument():
    from minisegnet.cuda import implicit_gemm as ig

    x = np.zeros((1, 2, 5, 5), np.float32)
    with pytest.raises(TypeError, match="share a dtype"):
        ig.conv2d_forward(x, np.zeros((1, 2, 3, 3)), None, (1, 1), (0, 0), (1, 1), 1)
    with pytest.raises(ValueError, match="w must have 4 dimensions"):
        ig.conv2d_forward(x, np.zeros((2, 9), np.float32), None, (1, 1), (0, 0), (1, 1), 1)
    with pytest.raises(TypeError, match="dtype float32 or float64"):
        ig.conv2d_forward(x.astype(np.int32), x.astype(np.int32), None, 1, 0, 1, 1)

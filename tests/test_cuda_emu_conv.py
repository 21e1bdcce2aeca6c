"""im2col / col2im CUDA kernels (minisegnet/cuda/conv.py) on the cuda-emu backend."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import assert_matches
from tests.test_cuda_common import (
    EXAMPLES,
    FLOATS,
    col2im_np,
    im2col_np,
    needs_emu,
    ops_ref,
    out_size,
    rand,
)

CASES = [  # (shape, kernel, stride, padding, dilation)
    ((2, 3, 7, 9), (3, 3), (1, 1), (1, 1), (1, 1)),
    ((1, 2, 8, 6), (3, 2), (2, 1), (0, 2), (1, 1)),
    ((2, 1, 9, 10), (3, 3), (2, 3), (2, 1), (2, 3)),
    ((1, 4, 5, 5), (1, 1), (1, 1), (0, 0), (1, 1)),
    ((1, 2, 4, 4), (4, 4), (1, 1), (3, 3), (1, 1)),  # kernel larger than the padding's reach
]

pytestmark = needs_emu


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", CASES)
def test_im2col_and_col2im_match_numpy(case, dtype):
    from minisegnet.cuda.conv import col2im, im2col

    shape, kernel, stride, padding, dilation = case
    x = rand(shape, dtype)
    cols = im2col(x, kernel, stride, padding, dilation)
    assert cols.dtype == dtype
    assert_matches(cols, im2col_np(x, kernel, stride, padding, dilation), dtype, "im2col")
    c = rand(cols.shape, dtype, seed=1)
    x_back = col2im(c, shape[2:], kernel, stride, padding, dilation)
    assert x_back.dtype == dtype
    expected = col2im_np(c, shape[2:], kernel, stride, padding, dilation)
    assert_matches(x_back, expected, dtype, "col2im")


@pytest.mark.parametrize("dtype", FLOATS)
def test_against_the_ops_reference(dtype):
    from minisegnet.cuda.conv import col2im, im2col

    im2col_ref = ops_ref("conv", "im2col_ref")
    col2im_ref = ops_ref("conv", "col2im_ref")
    for shape, kernel, stride, padding, dilation in CASES:
        x = rand(shape, dtype)
        cols = im2col(x, kernel, stride, padding, dilation)
        assert_matches(cols, im2col_ref(x, kernel, stride, padding, dilation), dtype, "im2col")
        assert_matches(
            col2im(cols, shape[2:], kernel, stride, padding, dilation),
            col2im_ref(cols, shape[2:], kernel, stride, padding, dilation),
            dtype,
            "col2im",
        )


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    data=st.data(),
    n=st.integers(1, 2),
    c=st.integers(1, 3),
    k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    d=st.tuples(st.integers(1, 3), st.integers(1, 3)),
)
def test_col2im_is_the_adjoint_of_im2col(data, n, c, k, s, d):
    """<im2col(x), cols> == <x, col2im(cols)> for random geometry, odd sizes included."""
    from minisegnet.cuda.conv import col2im, im2col

    p = (data.draw(st.integers(0, k[0])), data.draw(st.integers(0, k[1])))
    h = data.draw(st.integers(max(1, d[0] * (k[0] - 1) + 1 - 2 * p[0]), 11))
    w = data.draw(st.integers(max(1, d[1] * (k[1] - 1) + 1 - 2 * p[1]), 11))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c, h, w))
    cols = im2col(x, k, s, p, d)
    ho, wo = out_size(h, k[0], s[0], p[0], d[0]), out_size(w, k[1], s[1], p[1], d[1])
    assert cols.shape == (n, c * k[0] * k[1], ho * wo)
    np.testing.assert_allclose(cols, im2col_np(x, k, s, p, d), rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(cols.shape)
    dx = col2im(g, (h, w), k, s, p, d)
    np.testing.assert_allclose((cols * g).sum(), (x * dx).sum(), rtol=1e-10)


def test_conv_as_im2col_plus_matmul_matches_torch():
    """A whole convolution: w @ im2col(x), against PyTorch's conv2d (optional)."""
    torch = pytest.importorskip("torch")
    from minisegnet.cuda.conv import im2col

    x = rand((2, 3, 9, 8), np.float32)
    w = rand((4, 3, 3, 3), np.float32, seed=1)
    cols = im2col(x, (3, 3), (2, 1), (1, 2), (1, 2))  # (B, 27, Ho*Wo)
    y = np.matmul(w.reshape(4, -1), cols)  # (B, 4, Ho*Wo)
    expected = torch.nn.functional.conv2d(
        torch.from_numpy(x), torch.from_numpy(w), stride=(2, 1), padding=(1, 2), dilation=(1, 2)
    ).numpy()
    assert_matches(y.reshape(expected.shape), expected, np.float32, "conv2d")


def test_bad_geometry_is_an_error():
    from minisegnet.cuda.conv import col2im, im2col

    x = np.zeros((1, 1, 4, 4), np.float32)
    with pytest.raises(ValueError, match="does not fit"):
        im2col(x, (7, 7), (1, 1), (0, 0), (1, 1))
    with pytest.raises(ValueError, match="stride"):
        im2col(x, (3, 3), (0, 1), (0, 0), (1, 1))
    with pytest.raises(TypeError, match="kernel"):
        im2col(x, "3", (1, 1), (0, 0), (1, 1))
    with pytest.raises(ValueError, match="cols must have shape"):
        col2im(np.zeros((1, 9, 5), np.float32), (4, 4), (3, 3), (1, 1), (0, 0), (1, 1))

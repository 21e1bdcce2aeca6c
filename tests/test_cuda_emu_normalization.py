"""Batch norm (the __syncthreads reductions), LRN and dropout-mask CUDA kernels
(minisegnet/cuda/normalization.py) on cuda-emu."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import assert_matches
from tests.test_cuda_common import (
    FLOATS,
    lrn_backward_np,
    lrn_np,
    needs_emu,
    ops_ref,
    ops_ref_pair,
    rand,
    splitmix_u,
)

# Per-channel value counts N*H*W below, equal to and above the 256-thread block, not multiples.
SHAPES = [(2, 3, 5, 7), (1, 2, 16, 16), (3, 4, 10, 15), (5, 3), (2, 1, 1, 1), (4, 2, 33, 17)]

pytestmark = needs_emu


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_stats_reduction(shape, dtype):
    """The shared-memory tree reduction (block_sum, with __syncthreads) gives the exact mean and
    biased variance: this only works if the emulator's fibers implement the barrier."""
    from minisegnet.cuda.normalization import batch_norm_stats

    x = rand(shape, dtype, low=-3, high=5)
    mean, var = batch_norm_stats(x)
    axes = (0,) + tuple(range(2, x.ndim))
    x64 = x.astype(np.float64)
    rtol = 1e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(mean, x64.mean(axis=axes), rtol=rtol, atol=rtol)
    np.testing.assert_allclose(var, x64.var(axis=axes), rtol=rtol, atol=rtol)


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("shape", SHAPES)
def test_batch_norm_forward_backward(shape, dtype):
    from minisegnet.cuda.normalization import batch_norm_backward, batch_norm_forward

    c = shape[1]
    axes = (0,) + tuple(range(2, len(shape)))
    bshape = (1, c) + (1,) * (len(shape) - 2)
    x, dy = rand(shape, dtype), rand(shape, dtype, seed=1)
    mean = x.astype(np.float64).mean(axis=axes).astype(dtype)
    invstd = (1 / np.sqrt(x.astype(np.float64).var(axis=axes) + 1e-5)).astype(dtype)
    weight, bias = rand((c,), dtype, seed=2), rand((c,), dtype, seed=3)
    y = batch_norm_forward(x, mean, invstd, weight, bias)
    xhat = (x.astype(np.float64) - mean.reshape(bshape)) * invstd.reshape(bshape)
    assert_matches(y, xhat * weight.reshape(bshape) + bias.reshape(bshape), dtype, "forward")
    dx, dweight, dbias = batch_norm_backward(dy, x, mean, invstd, weight)
    m = x.size // c
    db = dy.astype(np.float64).sum(axis=axes)
    dw = (dy * xhat).sum(axis=axes)
    expected_dx = (weight * invstd).reshape(bshape) * (
        dy - (db / m).reshape(bshape) - xhat * (dw / m).reshape(bshape)
    )
    assert_matches(dbias, db, dtype, "dbias")
    assert_matches(dweight, dw, dtype, "dweight")
    assert_matches(dx, expected_dx, dtype, "dx")
    y0 = batch_norm_forward(x, mean, invstd, None, None)  # affine-free
    assert_matches(y0, xhat, dtype, "forward without weight and bias")


@pytest.mark.parametrize("dtype", FLOATS)
def test_batch_norm_against_the_ops_reference(dtype):
    from minisegnet.cuda import normalization as cu

    stats, fw = (
        ops_ref("batch_norm", "batch_norm_stats_ref"),
        ops_ref("batch_norm", "batch_norm_forward_ref"),
    )
    bw = ops_ref("batch_norm", "batch_norm_backward_ref")
    for shape in [s for s in SHAPES if len(s) == 4]:
        x, dy = rand(shape, dtype), rand(shape, dtype, seed=1)
        mean, var = cu.batch_norm_stats(x)
        mean_r, var_r = stats(x)
        assert_matches(mean, mean_r, dtype, "mean")
        assert_matches(var, var_r, dtype, "var")
        invstd = (1 / np.sqrt(var_r + 1e-5)).astype(dtype)
        w, b = rand((shape[1],), dtype, seed=2), rand((shape[1],), dtype, seed=3)
        assert_matches(
            cu.batch_norm_forward(x, mean_r, invstd, w, b), fw(x, mean_r, invstd, w, b), dtype
        )
        for got, want, what in zip(
            cu.batch_norm_backward(dy, x, mean_r, invstd, w),
            bw(dy, x, mean_r, invstd, w),
            ("dx", "dweight", "dbias"),
        ):
            assert_matches(got, want, dtype, what)


LRN_CASES = [
    ((2, 7, 3, 4), 5, 1e-4, 0.75, 1.0),
    ((1, 6, 2, 2), 4, 0.5, 0.6, 2.0),
    ((2, 3, 5), 3, 1.0, 1.0, 1.0),
    ((1, 2, 3, 3), 7, 0.3, 0.5, 1.5),
]


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("case", LRN_CASES)
def test_lrn_forward_backward(case, dtype):
    from minisegnet.cuda.normalization import lrn_backward, lrn_forward

    shape, size, alpha, beta, k = case
    x, dy = rand(shape, dtype), rand(shape, dtype, seed=1)
    y, scale = lrn_forward(x, size, alpha, beta, k)
    y_np, scale_np = lrn_np(x, size, alpha, beta, k)
    assert_matches(scale, scale_np, dtype, "scale")
    assert_matches(y, y_np, dtype, "y")
    dx = lrn_backward(dy, x, y, scale, size, alpha, beta)
    assert_matches(dx, lrn_backward_np(dy, x, size, alpha, beta, k), dtype, "dx")


@pytest.mark.parametrize("dtype", FLOATS)
def test_lrn_against_the_ops_reference(dtype):
    from minisegnet.cuda.normalization import lrn_backward, lrn_forward

    fw, bw = ops_ref_pair("lrn", "lrn")
    for shape, size, alpha, beta, k in LRN_CASES:
        x, dy = rand(shape, dtype), rand(shape, dtype, seed=1)
        y, scale = lrn_forward(x, size, alpha, beta, k)
        y_r, scale_r = fw(x, size, alpha, beta, k)
        assert_matches(y, y_r, dtype, "y")
        assert_matches(scale, scale_r, dtype, "scale")
        assert_matches(
            lrn_backward(dy, x, y, scale, size, alpha, beta),
            bw(dy, x, y_r, scale_r, size, alpha, beta),
            dtype,
            "dx",
        )


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_dropout_mask_is_the_contract_hash(p, per_channel):
    from minisegnet.cuda.normalization import dropout_mask

    shape, seed = (2, 3, 4, 5), 2**63 + 12345  # a seed above 2**63 exercises the uint64 path
    mask = dropout_mask(shape, p, seed, per_channel)
    expected_shape = (2, 3, 1, 1) if per_channel else shape
    assert mask.shape == expected_shape and mask.dtype == np.float32
    keep = np.array([splitmix_u(seed, i) >= p for i in range(mask.size)]).reshape(expected_shape)
    scale = 0.0 if p == 1 else 1 / (1 - p)
    np.testing.assert_array_equal(mask, (keep * scale).astype(np.float32))
    ref = ops_ref("dropout", "dropout_mask_ref")
    np.testing.assert_array_equal(mask, ref(shape, p, seed, per_channel))


def test_dropout_worked_example():
    """The op file's docstring example: seed 0, p 0.5 -> mask [2, 0, 0, 2]."""
    from minisegnet.cuda.normalization import dropout_mask

    np.testing.assert_array_equal(dropout_mask((4,), 0.5, 0, False), [2, 0, 0, 2])


def test_bad_arguments():
    from minisegnet.cuda import normalization as cu

    x = np.ones((2, 3, 4, 4), np.float32)
    with pytest.raises(ValueError, match="mean must be a \\(3,\\) float32"):
        cu.batch_norm_forward(x, np.zeros(3, np.float64), np.ones(3, np.float32), None, None)
    with pytest.raises(ValueError, match="C-contiguous"):
        cu.batch_norm_stats(np.ones((2, 3, 4, 8), np.float32)[..., ::2])
    with pytest.raises(ValueError, match="size"):
        cu.lrn_forward(x, 0, 1e-4, 0.75, 1.0)
    with pytest.raises(ValueError, match="p must be"):
        cu.dropout_mask((2, 3), 1.5, 0, False)
    with pytest.raises(TypeError, match="seed"):
        cu.dropout_mask((2, 3), 0.5, 0.5, False)

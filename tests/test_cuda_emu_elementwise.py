"""Elementwise kernels and the tiled shared-memory GEMM (minisegnet/cuda/elementwise.py,
gemm.py) on cuda-emu."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import assert_matches
from tests.test_cuda_common import FLOATS, needs_emu, rand

pytestmark = needs_emu


@pytest.mark.parametrize("dtype", FLOATS)
def test_elementwise(dtype):
    from minisegnet.cuda import elementwise as ew

    a, b = rand((3, 5, 7), dtype), rand((3, 5, 7), dtype, seed=1)
    np.testing.assert_array_equal(ew.relu_forward(a), np.maximum(a, 0))
    np.testing.assert_array_equal(ew.relu_backward(b, a), np.where(a > 0, b, 0))
    np.testing.assert_array_equal(ew.add(a, b), a + b)
    np.testing.assert_array_equal(ew.mul(a, b), a * b)
    y = b.copy()
    assert ew.axpy(-0.5, a, y) is y
    assert_matches(y, b - 0.5 * a, dtype)
    big = rand((1000,), dtype)  # more than one block, and a partial last block
    np.testing.assert_array_equal(ew.relu_forward(big), np.maximum(big, 0))
    with pytest.raises(ValueError, match="b must match a"):
        ew.add(a, b[:2])


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("m,k,n", [(1, 1, 1), (16, 16, 16), (37, 29, 53), (5, 70, 3), (33, 1, 17)])
def test_tiled_gemm_matches_numpy(m, k, n, dtype):
    """Odd sizes: partial tiles on every edge (the zero-padding loads and the bounds check)."""
    from minisegnet.cuda.gemm import gemm_tiled

    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c = gemm_tiled(a, b)
    expected = a.astype(np.float64) @ b.astype(np.float64)
    tol = 1e-5 * np.sqrt(k) if dtype == np.float32 else 1e-12 * np.sqrt(k)
    np.testing.assert_allclose(c, expected, rtol=tol, atol=tol)


def test_gemm_benchmark_runs_emulated():
    from minisegnet.cuda.gemm import benchmark

    result = benchmark(32, 32, 32, repeat=1, xp=np)
    assert result["device"].startswith("cpu") and result["gemm_tiled_s"] > 0

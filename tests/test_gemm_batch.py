"""ops/gemm_batch.py: the GIL-free products equal np.matmul's on every layout BLAS takes
(rows or columns contiguous, strided stacks, float32 and float64), fall back to np.matmul
elsewhere, refuse mismatched shapes, and run in parallel threads."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minisegnet.ops import gemm_batch


def _stack(rng, shape, dtype, layout):
    """A (K, R, C) stack laid out as asked: 'rows' contiguous, 'columns' contiguous (a
    transposed view), or 'strided' (every other matrix, a window of a larger one)."""
    k, r, c = shape
    if layout == "rows":
        return rng.normal(size=shape).astype(dtype)
    if layout == "columns":
        return np.ascontiguousarray(rng.normal(size=(k, c, r)).astype(dtype)).transpose(0, 2, 1)
    big = rng.normal(size=(2 * k, r + 2, c + 3)).astype(dtype)
    return big[::2, 1 : r + 1, 2 : c + 2]


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(1, 5), m=st.integers(1, 9), d=st.integers(1, 9), n=st.integers(1, 9),
    dtype=st.sampled_from([np.float32, np.float64]),
    layout_a=st.sampled_from(["rows", "columns", "strided"]),
    layout_b=st.sampled_from(["rows", "columns", "strided"]),
    seed=st.integers(0, 2**16),
)  # fmt: skip
def test_products_equal_matmul(k, m, d, n, dtype, layout_a, layout_b, seed):
    rng = np.random.default_rng(seed)
    a = _stack(rng, (k, m, d), dtype, layout_a)
    b = _stack(rng, (k, d, n), dtype, layout_b)
    out = np.full((k, m, n), np.nan, dtype)
    gemm_batch.products(a, b, out)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, np.matmul(a, b), rtol=tol, atol=tol)


def test_numpy_openblas_is_used_here():
    """NumPy's wheels bring the OpenBLAS whose renamed sgemm/dgemm the kernels call."""
    assert gemm_batch.available(np.float32) and gemm_batch.available(np.float64)
    assert not gemm_batch.available(np.int64)


def test_other_dtypes_and_layouts_fall_back_to_matmul():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 5, (3, 4, 2)), rng.integers(0, 5, (3, 2, 5))
    out = np.empty((3, 4, 5), a.dtype)
    gemm_batch.products(a, b, out)
    np.testing.assert_array_equal(out, a @ b)
    a32 = rng.normal(size=(3, 4, 2)).astype(np.float32)
    out_t = np.empty((3, 5, 4), np.float32).transpose(0, 2, 1)  # out with columns contiguous
    gemm_batch.products(a32, b.astype(np.float32), out_t)
    np.testing.assert_allclose(out_t, a32 @ b.astype(np.float32), rtol=1e-6)


def test_mismatched_shapes_are_refused():
    a, b = np.zeros((2, 3, 4)), np.zeros((2, 5, 6))
    with pytest.raises(ValueError, match=r"\(K, M, D\), \(K, D, N\), \(K, M, N\) expected"):
        gemm_batch.products(a, b, np.zeros((2, 3, 6)))
    with pytest.raises(ValueError, match="3-d"):
        gemm_batch.products(a[0], b[0], np.zeros((3, 6)))


def test_threads_run_products_at_once_and_right():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(4, 64, 64, 64)).astype(np.float32)
    b = rng.normal(size=(4, 64, 64, 96)).astype(np.float32)
    out = np.empty((4, 64, 64, 96), np.float32)
    threads = [
        threading.Thread(target=gemm_batch.products, args=(a[i], b[i], out[i])) for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    np.testing.assert_allclose(out, a @ b, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_accumulate_adds_onto_out(dtype):
    """BLAS's beta = 1 (np.matmul and += where BLAS is not used: int64 here)."""
    rng = np.random.default_rng(3)
    a = rng.integers(-3, 4, (4, 5, 6)).astype(dtype)
    b = rng.integers(-3, 4, (4, 7, 6)).astype(dtype).transpose(0, 2, 1)  # columns contiguous
    start = rng.integers(-3, 4, (4, 5, 7)).astype(dtype)
    out = start.copy()
    gemm_batch.products(a, b, out, accumulate=True)
    np.testing.assert_array_equal(out, start + a @ b)  # small integers: exact in every dtype

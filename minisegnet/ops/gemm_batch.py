"""Many small matrix products, out[k] = a[k] @ b[k], in one GIL-free call through NumPy's BLAS.

Winograd's drivers (ops/conv_winograd.py, ops/conv_winograd_7x7.py) make 36 or 64 small products
per chunk -- (64, 64) @ (64, 128) on SegNet-Basic's 7x7 convolutions, 18,432 of them in one
training step -- in each of two worker threads. Through ``np.matmul`` every product costs
about 1.6 us of Python and NumPy dispatch with the GIL held, so the two workers also queue for
the GIL between products. Here one Numba loop calls BLAS's ``sgemm`` (or ``dgemm``) for all of
them without the GIL. Measured (64 products (64, 64) @ (64, 128), one thread, min of 50):
``np.matmul`` one by one 691-823 us, this 604-721 us.

How. NumPy's wheels ship OpenBLAS with its symbols renamed, ``scipy_cblas_sgemm64_`` being
``cblas_sgemm`` with 64-bit integers. Its address (ctypes) is registered with LLVM under that
name (``llvmlite.binding.add_symbol``) and the kernels call it as an external function by name,
which keeps them in Numba's on-disk cache (a ctypes pointer in a kernel would not be). Pointers
travel as 64-bit integers, as the C calling convention passes them. Without that library (a
NumPy built on another BLAS), or for operands BLAS cannot take (neither rows nor columns
contiguous, other dtypes), ``products`` calls ``np.matmul`` one by one: the readable form.
"""

from __future__ import annotations

import ctypes
import glob
import os

import numpy as np
from numba import njit, types

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112  # CBLAS's enumerations

__all__ = ["products", "available"]


def _register(name):
    """True when NumPy's OpenBLAS exports ``name`` (now known to LLVM by that name)."""
    import llvmlite.binding as llvm

    libs = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "*openblas64_*.so*"))):
        try:
            function = getattr(ctypes.CDLL(path), name)
        except (OSError, AttributeError):
            continue
        llvm.add_symbol(name, ctypes.cast(function, ctypes.c_void_p).value)
        return True
    return False


def _gemm_type(real):
    """cblas_?gemm with 64-bit integers; pointers as int64."""
    i32, i64 = types.int32, types.int64
    return types.void(i32, i32, i32, i64, i64, i64, real, i64, i64, i64, i64, real, i64, i64)


_AVAILABLE = {
    np.dtype(np.float32): _register("scipy_cblas_sgemm64_"),
    np.dtype(np.float64): _register("scipy_cblas_dgemm64_"),
}
_sgemm = types.ExternalFunction("scipy_cblas_sgemm64_", _gemm_type(types.float32))
_dgemm = types.ExternalFunction("scipy_cblas_dgemm64_", _gemm_type(types.float64))


def available(dtype) -> bool:
    """Whether products of this dtype go through the GIL-free loop."""
    return _AVAILABLE.get(np.dtype(dtype), False)


@njit(nogil=True, cache=True)
def _sgemm_each(count, shape, a, b, c, item, beta):
    """c[k] = op(a[k]) @ op(b[k]) + beta c[k] for k < count, float32; shape = (ta, tb, M, N, K),
    a, b, c = (pointer, leading dimension, step between matrices in elements)."""
    ta, tb, m, n, depth = shape
    one, beta = np.float32(1.0), np.float32(beta)
    for k in range(count):
        _sgemm(
            ROW_MAJOR, ta, tb, m, n, depth, one, a[0] + item * k * a[2], a[1],
            b[0] + item * k * b[2], b[1], beta, c[0] + item * k * c[2], c[1],
        )  # fmt: skip


@njit(nogil=True, cache=True)
def _dgemm_each(count, shape, a, b, c, item, beta):
    """``_sgemm_each`` in float64."""
    ta, tb, m, n, depth = shape
    for k in range(count):
        _dgemm(
            ROW_MAJOR, ta, tb, m, n, depth, 1.0, a[0] + item * k * a[2], a[1],
            b[0] + item * k * b[2], b[1], beta, c[0] + item * k * c[2], c[1],
        )  # fmt: skip


def _operand(m, transposable=True):
    """(trans, (pointer, ld, step)) for BLAS of a (count, rows, cols) stack whose matrices have
    contiguous rows (or, ``transposable``, contiguous columns), or None."""
    item = m.itemsize
    s0, s1, s2 = m.strides
    count, rows, cols = m.shape
    if min(s0, s1, s2) < 0 or s0 % item or s1 % item or s2 % item:
        return None
    if s2 == item and s1 >= max(1, cols) * item:
        return NO_TRANS, (m.ctypes.data, s1 // item, s0 // item)
    if transposable and s1 == item and s2 >= max(1, rows) * item:
        return TRANS, (m.ctypes.data, s2 // item, s0 // item)
    return None


def products(a, b, out, accumulate=False):
    """out[k] = a[k] @ b[k] for every k (``accumulate``: out[k] += a[k] @ b[k], BLAS's beta = 1,
    without a temporary): a (K, M, D), b (K, D, N), out (K, M, N), one dtype. Views are fine
    where each matrix has contiguous rows or columns (out: rows)."""
    if not (a.ndim == b.ndim == out.ndim == 3):
        raise ValueError(
            f"a, b, out: stacks of matrices (3-d) expected, got {a.ndim}, {b.ndim}, {out.ndim}-d"
        )
    count, m, depth = a.shape
    if b.shape[:2] != (count, depth) or out.shape != (count, m, b.shape[2]):
        raise ValueError(
            f"a, b, out: (K, M, D), (K, D, N), (K, M, N) expected, got {a.shape}, {b.shape}, "
            f"{out.shape}"
        )
    layout = (_operand(a), _operand(b), _operand(out, transposable=False))
    same = a.dtype == b.dtype == out.dtype
    if not (same and available(a.dtype) and None not in layout and min(out.shape) > 0):
        for k in range(count):
            if accumulate:
                out[k] += a[k] @ b[k]
            else:
                np.matmul(a[k], b[k], out=out[k])
        return
    (ta, pa), (tb, pb), (_, pc) = layout
    each = _sgemm_each if a.dtype == np.float32 else _dgemm_each
    each(count, (ta, tb, m, b.shape[2], depth), pa, pb, pc, a.itemsize, 1.0 if accumulate else 0.0)

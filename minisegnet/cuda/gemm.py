"""A tiled shared-memory matrix product (``kernels/gemm.cu``): the teaching example of GEMM on a
GPU. The framework itself multiplies with ``xp.matmul`` (cuBLAS through CuPy), which is much
faster; :func:`benchmark` measures by how much.

Kernel launched: ``gemm_tiled<T>`` (T = float, i.e. SGEMM, or double) on a grid of
ceil(N/16) x ceil(M/16) blocks of 16 x 16 threads, one thread per element of C.

    gemm_tiled(a, b) -> c        a (M, K) @ b (K, N) -> c (M, N)
"""

from __future__ import annotations

import time

import numpy as np

from minisegnet.arrays import array_module
from minisegnet.cuda.launch import check_array, ctype, int32, launch

__all__ = ["TILE", "gemm_tiled", "benchmark"]

SOURCE = "gemm.cu"
TILE = 16  # must match #define TILE in gemm.cu


def gemm_tiled(a, b):
    """c = a @ b for 2-D float32/float64 arrays. Launches ``gemm_tiled<T>``."""
    check_array("gemm_tiled", "a", a, ndim=2)
    check_array("gemm_tiled", "b", b, ndim=2)
    if a.dtype != b.dtype or a.shape[1] != b.shape[0]:
        raise ValueError(
            f"gemm_tiled: need a (M, K) and b (K, N) of one dtype, got {a.shape} {a.dtype} and "
            f"{b.shape} {b.dtype}"
        )
    m, k = a.shape
    n = b.shape[1]
    c = array_module(a).empty((m, n), a.dtype)
    if c.size:
        if k == 0:
            c[...] = 0
            return c
        grid = (-(-n // TILE), -(-m // TILE), 1)
        launch(
            SOURCE,
            f"gemm_tiled<{ctype(a.dtype)}>",
            grid,
            (TILE, TILE, 1),
            (a, b, c, *int32(m, n, k)),
        )
    return c


def benchmark(m=1024, n=1024, k=1024, dtype=np.float32, repeat=5, xp=None):
    """Seconds per product and GFLOP/s of gemm_tiled and of xp.matmul on (m, k) @ (k, n).

    On the ``cuda`` backend (``xp`` = cupy) this is the tiled kernel against cuBLAS, timed with
    CUDA events; with NumPy arrays it is the CPU emulator against NumPy's BLAS (only to show
    how slow emulation is; keep the sizes small)."""
    if xp is None:
        from minisegnet.cuda.launch import xp as current_xp

        xp = current_xp()
    rng = np.random.default_rng(0)
    a = xp.asarray(rng.standard_normal((m, k)).astype(dtype))
    b = xp.asarray(rng.standard_normal((k, n)).astype(dtype))
    gpu = xp is not np

    def timed(fn):
        fn()  # warm up (compiles on first use)
        if gpu:
            start, stop = xp.cuda.Event(), xp.cuda.Event()
            start.record()
            for _ in range(repeat):
                fn()
            stop.record()
            stop.synchronize()
            return xp.cuda.get_elapsed_time(start, stop) / 1000 / repeat
        t0 = time.perf_counter()
        for _ in range(repeat):
            fn()
        return (time.perf_counter() - t0) / repeat

    flops = 2.0 * m * n * k
    tiled = timed(lambda: gemm_tiled(a, b))
    library = timed(lambda: xp.matmul(a, b))
    return {
        "shape": (m, n, k),
        "dtype": np.dtype(dtype).name,
        "device": "gpu" if gpu else "cpu (emulated kernel)",
        "gemm_tiled_s": tiled,
        "gemm_tiled_gflops": flops / tiled / 1e9,
        "matmul_s": library,
        "matmul_gflops": flops / library / 1e9,
    }

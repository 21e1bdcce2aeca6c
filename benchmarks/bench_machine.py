"""This machine's limits, measured in the same run as the ops: NumPy sgemm GFLOP/s and memory-copy
GB/s. Every op's efficiency is reported against these numbers.

* sgemm: ``a @ b`` in float32 through NumPy's BLAS at 1024^3, at the conv-like shape
  (64 x 576) @ (576 x N*H*W), and at the exact per-image GEMMs that an im2col convolution of the
  conv2d benchmark performs (forward, weight gradient, input gradient). GFLOP/s = 2*M*K*N / t.
* memory copy: ``np.copyto(dst, src)`` of a large float32 array; GB/s counts the bytes read plus
  the bytes written (2 * nbytes / t), the way STREAM's "copy" does.
"""

from __future__ import annotations

import numpy as np
from bench_common import median_ms, time_call


def sgemm_gflops(m: int, k: int, n: int, warmup: int, reps: int, batch: int = 1) -> dict:
    """Time ``batch`` products (m x k) @ (k x n) in float32; GFLOP/s over all of them."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((m, k), dtype=np.float32)
    b = rng.standard_normal((k, n), dtype=np.float32)
    out = np.empty((m, n), dtype=np.float32)

    def run():
        for _ in range(batch):
            np.matmul(a, b, out=out)

    ms = median_ms(time_call(run, warmup, reps))
    flops = 2.0 * m * k * n * batch
    return {"m": m, "k": k, "n": n, "batch": batch, "ms": ms, "gflops": flops / (ms * 1e6)}


def conv_gemm_shapes(n: int, c_in: int, c_out: int, kh: int, kw: int, ho: int, wo: int):
    """The three GEMMs of an im2col convolution, per image, as (name, m, k, n).

    forward      y_n   = W (Co x Ci*k*k) @ cols_n (Ci*k*k x Ho*Wo)
    weight grad  dW   += dy_n (Co x Ho*Wo) @ cols_n^T (Ho*Wo x Ci*k*k)
    input grad   dcols = W^T (Ci*k*k x Co) @ dy_n (Co x Ho*Wo)     (then col2im)
    """
    kk = c_in * kh * kw
    p = ho * wo
    return [("forward", c_out, kk, p), ("weight grad", c_out, p, kk), ("input grad", kk, c_out, p)]


def conv_gemm_time(n, c_in, c_out, kh, kw, ho, wo, warmup, reps) -> dict:
    """Time the GEMMs a conv of this shape needs (per image, ``n`` images); NumPy alone."""
    rows = []
    for name, m, k, p in conv_gemm_shapes(n, c_in, c_out, kh, kw, ho, wo):
        r = sgemm_gflops(m, k, p, warmup, reps, batch=n)
        r["name"] = name
        rows.append(r)
    fwd_ms = rows[0]["ms"]
    bwd_ms = rows[1]["ms"] + rows[2]["ms"]
    flops_fwd = 2.0 * n * c_out * c_in * kh * kw * ho * wo
    return {
        "rows": rows,
        "fwd_ms": fwd_ms,
        "bwd_ms": bwd_ms,
        "total_ms": fwd_ms + bwd_ms,
        "gflops_fwd": flops_fwd / (fwd_ms * 1e6),
        "gflops_total": 3 * flops_fwd / ((fwd_ms + bwd_ms) * 1e6),
    }


def memcopy_gbs(nbytes: int, warmup: int, reps: int) -> dict:
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    ms = median_ms(time_call(lambda: np.copyto(dst, src), warmup, reps))
    return {"bytes": src.nbytes, "ms": ms, "gbs": 2 * src.nbytes / (ms * 1e6)}


def measure(quick: bool) -> dict:
    """All machine numbers; ``quick`` shrinks the problem sizes (a smoke run, not a measurement)."""
    warmup, reps = (1, 2) if quick else (2, 7)
    if quick:
        big = sgemm_gflops(128, 128, 128, warmup, reps)
        convlike = sgemm_gflops(8, 72, 2 * 16 * 16, warmup, reps)
        copy = memcopy_gbs(4 << 20, warmup, reps)
    else:
        big = sgemm_gflops(1024, 1024, 1024, warmup, reps)
        convlike = sgemm_gflops(64, 576, 8 * 128 * 128, warmup, reps)
        copy = memcopy_gbs(256 << 20, warmup, reps)
    return {"sgemm_1024": big, "sgemm_convlike": convlike, "memcopy": copy}

"""Cross-entropy's forward and backward as one vectorised Numba pass each (float32).

``ops/loss.py`` defines the loss and its gradient and keeps the readable kernels: a forward that
computes the per-pixel loss, and a backward that reads the logits again, recomputes the softmax
sums and writes the gradient, both through libm's ``expf``. Here the forward keeps the two
numbers per pixel that the softmax needs, so the backward is one pass:

    per pixel p (a column of the (N, C, H*W) logits), t = target[p], w_t = weight[t]
    forward   m = max_c z[c]                                      pass 1 over the classes
              s = sum_c exp(z[c] - m)                             pass 2
              loss = w_t * (log s + m - z[t]);  keep m and 1/s    per pixel
    backward  grad[c] = k * w_t * (exp(z[c] - m) / s - [c == t])  one pass

with ``k`` the reduction's factor times dy: dy / sum_p w_t for ``mean``, dy for ``sum``, dy[p]
for ``none``. Ignored pixels have w_t = 0, so their loss and gradient are exactly 0. Each pass
reads the logits once; the backward writes the gradient once.

exp. Numba calls libm's ``expf`` element by element (there is no vector math library here), and
that call was most of the readable kernels' time. ``_exp_nonpositive`` is a Cephes-style
``expf`` in plain arithmetic, which LLVM vectorises: x = k ln 2 + r with |r| <= ln 2 / 2 (ln 2
split in two parts so k ln 2 is exact), a degree-7 polynomial for exp(r) (relative error below
2e-7), and 2^k built from its exponent bits. Its argument is z - m <= 0; below -87.3 (where exp
underflows float32's normal range) it returns 2^-126 * p, so those classes get a softmax of
~1e-38 instead of a denormal or 0 -- invisible next to the max class's 1.

Memory. Between forward and backward this path keeps 2 numbers per pixel (m and 1/s), 2/C of
the logits; the gradient is allocated in the backward, as the readable path does. An earlier
form wrote the gradient in the forward pass itself, while the exponentials were in registers
(0.6-1.7 ms faster on the case below), but then held it from the forward to the backward:
PSPNet's auxiliary loss kept its logits-sized gradient through the main branch's whole backward
(the small preset's peak memory +1.3 MB), and a second backward through a retained graph needed
the logits kept to recompute it.

Measured (2-core machine, median of 25, float32, 8x21x128x128, ignore_index 255, mean; forward +
backward of ``F.cross_entropy`` in one process, 2 threads each, passive OpenMP waiting): 8.2 ms
against PyTorch CPU's 12.1-13.2 ms (0.62-0.68x); the gradient-in-forward form 6.6-7.5 ms in
the same runs; the readable two-kernel path 16.1 ms (2.8x PyTorch, measured earlier). float64
logits keep the kernels of ``ops/loss.py``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_BLOCK = 512  # pixels of one image per prange iteration (as in ops/loss.py)
_FLAGS = {"contract", "reassoc", "arcp", "nsz"}
"""Fast-math flags without 'nnan'/'ninf': NaN and inf logits still give NaN, as the reference."""


ENABLED = True
"""Let the numba backend take these passes (benchmarks switch them off to compare)."""


def applies(logits) -> bool:
    """These passes handle float32 logits with at least one element."""
    return ENABLED and logits.dtype == np.float32 and logits.size > 0


# --------------------------------------------------------------------------- readable version
def cross_entropy_fused_ref(logits, target, weight, ignore_index, factor):
    """NumPy statement of what the two passes compute: (loss, w_pos, grad), grad for a factor
    ``factor`` (the reduction's times dy). logits (N, C, L), target (N, L) int64, weight
    (C,)."""
    z = logits.astype(np.float64)
    valid = target != ignore_index
    t = np.where(valid, target, 0)
    m = z.max(axis=1, keepdims=True)  # (N, 1, L)
    e = np.exp(z - m)
    s = e.sum(axis=1, keepdims=True)
    w_pos = np.where(valid, weight[t], 0)  # (N, L)
    z_t = np.take_along_axis(z, t[:, None], axis=1)[:, 0]
    loss = w_pos * (np.log(s[:, 0]) + m[:, 0] - z_t)
    onehot = np.arange(z.shape[1])[None, :, None] == t[:, None, :]
    grad = factor * w_pos[:, None] * (e / s - onehot)
    dtype = logits.dtype
    return loss.astype(dtype), w_pos.astype(dtype), grad.astype(dtype)


# --------------------------------------------------------------------------- Numba
@njit(inline="always", fastmath=_FLAGS)
def _exp_nonpositive(x):
    """exp(x) for float32 x <= 0 (x below -87.3 is treated as -87.3), vectorisable."""
    x = max(x, np.float32(-87.3))
    k = np.floor(x * np.float32(1.44269504) + np.float32(0.5))
    r = x - k * np.float32(0.693359375) - k * np.float32(-2.12194440e-4)
    p = np.float32(1.9875691500e-4)
    p = p * r + np.float32(1.3981999507e-3)
    p = p * r + np.float32(8.3334519073e-3)
    p = p * r + np.float32(4.1665795894e-2)
    p = p * r + np.float32(1.6666665459e-1)
    p = p * r + np.float32(5.0000001201e-1)
    p = p * r * r + r + np.float32(1.0)
    two_k = np.int32((np.int32(k) + 127) << 23).view(np.float32)
    return p * two_k


@njit(parallel=True, cache=True, fastmath=_FLAGS)
def _forward_kernel(z, target, weight, ignore_index, loss, w_pos, z_max, s_inv):
    """z (N, C, L) float32; target (N, L) int64; loss, w_pos, z_max, s_inv (N, L) written: the
    per-pixel loss and target weight, and the max and 1 / sum of exp(z - max) that the backward
    reads. One block of pixels of one image per iteration, classes outside and pixels inside
    (contiguous); each iteration writes only its own pixels. Flat views and unsigned offsets let
    LLVM vectorise the inner loops (a signed index costs a negative-index check per access, which
    blocks it: 3x slower here)."""
    n_, c_, l_ = z.shape
    zf, tf, lossf, wf = z.reshape(-1), target.reshape(-1), loss.reshape(-1), w_pos.reshape(-1)
    mf, sf = z_max.reshape(-1), s_inv.reshape(-1)
    blocks = (l_ + _BLOCK - 1) // _BLOCK
    for job in prange(n_ * blocks):
        n = job // blocks
        start = (job % blocks) * _BLOCK
        count = np.uint64(min(start + _BLOCK, l_) - start)
        p0 = np.uint64(n * l_ + start)  # this block's first pixel in the (N, L) arrays
        for i in range(count):
            mf[p0 + i] = zf[np.uint64(n * c_ * l_ + start) + i]
            sf[p0 + i] = 0
        for c in range(1, c_):
            z0 = np.uint64((n * c_ + c) * l_ + start)
            for i in range(count):
                mf[p0 + i] = max(mf[p0 + i], zf[z0 + i])
        for c in range(c_):
            z0 = np.uint64((n * c_ + c) * l_ + start)
            for i in range(count):
                sf[p0 + i] += _exp_nonpositive(zf[z0 + i] - mf[p0 + i])
        for i in range(count):
            t = tf[p0 + i]
            if t == ignore_index:
                lossf[p0 + i] = 0
                wf[p0 + i] = 0
            else:
                w_t = weight[t]
                z_t = zf[np.uint64((n * c_ + t) * l_ + start) + i]
                log_s = np.log(np.float64(sf[p0 + i]))
                lossf[p0 + i] = w_t * (log_s + np.float64(mf[p0 + i]) - np.float64(z_t))
                wf[p0 + i] = w_t
            sf[p0 + i] = 1 / sf[p0 + i]


@njit(parallel=True, cache=True, fastmath=_FLAGS)
def _backward_kernel(z, target, weight, ignore_index, scale, z_max, s_inv, grad, g):
    """grad (N, C, L) = g * (exp(z - z_max) * s_inv - onehot(target)), g = weight[t] * scale per
    pixel (0 where ignored); scale, z_max, s_inv (N, L) float32; g (N, L) scratch. Blocks as in
    the forward."""
    n_, c_, l_ = z.shape
    zf, tf, gradf = z.reshape(-1), target.reshape(-1), grad.reshape(-1)
    mf, sf, scf, gf = z_max.reshape(-1), s_inv.reshape(-1), scale.reshape(-1), g.reshape(-1)
    blocks = (l_ + _BLOCK - 1) // _BLOCK
    for job in prange(n_ * blocks):
        n = job // blocks
        start = (job % blocks) * _BLOCK
        count = np.uint64(min(start + _BLOCK, l_) - start)
        p0 = np.uint64(n * l_ + start)
        for i in range(count):
            t = tf[p0 + i]
            gf[p0 + i] = 0 if t == ignore_index else weight[t] * scf[p0 + i]
        for c in range(c_):
            z0 = np.uint64((n * c_ + c) * l_ + start)
            for i in range(count):
                e = _exp_nonpositive(zf[z0 + i] - mf[p0 + i])
                onehot = np.float32(1.0) if c == tf[p0 + i] else np.float32(0.0)
                gradf[z0 + i] = gf[p0 + i] * (e * sf[p0 + i] - onehot)


def _flat(logits, target, weight):
    n_, c_ = logits.shape[:2]
    z = np.ascontiguousarray(logits).reshape(n_, c_, -1)  # (N, C, L)
    t = np.ascontiguousarray(target, dtype=np.int64).reshape(n_, -1)  # (N, L)
    w = np.ones(c_, np.float32) if weight is None else weight.astype(np.float32)
    return z, t, w


def cross_entropy_forward(logits, target, weight, ignore_index):
    """(loss, w_pos, softmax_sums): per-position loss and target weight (shaped like target),
    and (z_max, s_inv), (N, L) float32 each, for ``cross_entropy_backward``. logits float32
    (N, C[, H, W]); target int64 of the matching shape; weight (C,) or None."""
    z, t, w = _flat(logits, target, weight)
    loss, w_pos = np.empty(t.shape, np.float32), np.empty(t.shape, np.float32)
    z_max, s_inv = np.empty(t.shape, np.float32), np.empty(t.shape, np.float32)
    _forward_kernel(z, t, w, np.int64(ignore_index), loss, w_pos, z_max, s_inv)
    return loss.reshape(target.shape), w_pos.reshape(target.shape), (z_max, s_inv)


def cross_entropy_backward(logits, target, weight, ignore_index, scale, softmax_sums):
    """dlogits (shaped like logits) = weight[t] * scale * (softmax - onehot(t)) per position,
    from the forward's ``softmax_sums``; scale: a number, or one per position (shaped like
    target)."""
    z, t, w = _flat(logits, target, weight)
    per_pixel = np.empty(t.shape, np.float32)
    per_pixel[...] = (
        np.asarray(scale, np.float32).reshape(t.shape[0], -1) if np.ndim(scale) else scale
    )
    grad = np.empty_like(z)
    _backward_kernel(
        z, t, w, np.int64(ignore_index), per_pixel, *softmax_sums, grad, np.empty_like(per_pixel)
    )
    return grad.reshape(logits.shape)


def cross_entropy_fused(logits, target, weight, ignore_index, reduction):
    """(loss, w_pos, grad): both passes, the gradient for dy = 1 of the ``reduction`` ("mean":
    scaled by 1 / sum of the target weights; "sum" and "none": by 1). For tests and the
    benchmark's error table; ``ops/loss.py`` calls the two passes from forward and backward."""
    loss, w_pos, sums = cross_entropy_forward(logits, target, weight, ignore_index)
    factor = 1.0
    if reduction == "mean":
        total = float(w_pos.sum(dtype=np.float64))
        factor = 1.0 / total if total > 0 else 0.0  # all ignored: zero gradient, as ops/loss.py
    return loss, w_pos, cross_entropy_backward(logits, target, weight, ignore_index, factor, sums)

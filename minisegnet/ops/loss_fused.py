"""Cross-entropy's forward and backward in one Numba pass over the logits (float32, training).

``ops/loss.py`` defines the loss and its gradient and keeps the readable kernels: a forward that
computes the per-pixel loss, and a backward that later reads the logits again, recomputes the
softmax and writes the gradient. When a gradient will be needed (the training step), the
gradient can be written in the same pass that computes the loss, while the exponentials are
still in registers:

    per pixel p (a column of the (N, C, H*W) logits), t = target[p], w_t = weight[t]
        m      = max_c z[c]                                        pass 1 over the classes
        e[c]   = exp(z[c] - m),  s = sum_c e[c]                    pass 2 (e kept in grad)
        loss   = w_t * (log s + m - z[t])                          per pixel
        grad[c] = k * w_t * (e[c] / s - [c == t])                  pass 3, in place over e

with ``k`` the reduction's factor known before the pass: 1 / sum_p w_t for ``mean`` (the
weights of the targets are summed first, a pass over the labels only), 1 for ``sum`` and
``none``. Ignored pixels have w_t = 0, so their loss and gradient are exactly 0. The backward is
then ``grad * dy`` (nothing at all when dy is 1, the usual case): the exponentials are computed
once per element instead of twice, and the logits are read once instead of three times.

exp. Numba calls libm's ``expf`` element by element (there is no vector math library here), and
that call was most of the old kernels' time. ``_exp_nonpositive`` is a Cephes-style ``expf`` in
plain arithmetic, which LLVM vectorises: x = k ln 2 + r with |r| <= ln 2 / 2 (ln 2 split in two
parts so k ln 2 is exact), a degree-7 polynomial for exp(r) (relative error below 2e-7), and 2^k
built from its exponent bits. Its argument is z - m <= 0; below -87.3 (where exp underflows
float32's normal range) it returns 2^-126 * p, so those classes get a softmax of ~1e-38
instead of a denormal or 0 -- invisible next to the max class's 1.

Memory. The gradient (the size of the logits) is written during the forward and kept until the
backward, which hands it over (scaled in place if dy != 1). The old backward allocated the same
array at the same moment, so the peak does not grow. A second backward through the same graph
(``retain_graph=True``) finds the array handed over and recomputes it with ``ops/loss.py``'s
kernels.

Measured (busy 2-core machine shared with other jobs, median of 15, float32, 8x21x128x128,
ignore_index 255, mean; forward + backward of ``F.cross_entropy`` in one process, 2 threads
each, passive OpenMP waiting): the two-kernel path 16.1 ms (2.8x PyTorch), this one 1.8-2.2 ms
against PyTorch CPU's 4.2-5.7 ms, a ratio of 0.33-0.47 over four runs. Without the vectorised
exp (libm's expf) the same pass took 7.4 ms; with signed 2-D indexing, 9.4. float64 logits and
no-gradient calls keep the two kernels of ``ops/loss.py``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_BLOCK = 512  # pixels of one image per prange iteration (as in ops/loss.py)
_FLAGS = {"contract", "reassoc", "arcp", "nsz"}
"""Fast-math flags without 'nnan'/'ninf': NaN and inf logits still give NaN, as the reference."""


ENABLED = True
"""Let the numba backend take the fused pass (benchmarks switch it off to compare)."""


def applies(logits) -> bool:
    """The fused pass handles float32 logits with at least one element (the training case)."""
    return ENABLED and logits.dtype == np.float32 and logits.size > 0


# --------------------------------------------------------------------------- readable version
def cross_entropy_fused_ref(logits, target, weight, ignore_index, factor):
    """NumPy statement of what the kernel computes: (loss, w_pos, grad), grad already scaled by
    ``factor``. logits (N, C, L), target (N, L) int64, weight (C,)."""
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


@njit(cache=True)
def target_weight_sum(target, weight, ignore_index):
    """sum over pixels of weight[t] (ignored pixels count 0), in float64."""
    total = 0.0
    flat = target.reshape(-1)
    for i in range(flat.size):
        t = flat[i]
        if t != ignore_index:
            total += weight[t]
    return total


@njit(parallel=True, cache=True, fastmath=_FLAGS)
def _fused_kernel(z, target, weight, ignore_index, factor, loss, w_pos, grad, z_max, s_inv, g):
    """z, grad (N, C, L) float32; target (N, L) int64; loss, w_pos, z_max, s_inv, g (N, L), the
    last three scratch. One block of pixels of one image per iteration, classes outside and
    pixels inside (contiguous); each iteration writes only its own pixels. Flat views and
    unsigned offsets let LLVM vectorise the inner loops (a signed index costs a negative-index
    check per access, which blocks it: 3x slower here)."""
    n_, c_, l_ = z.shape
    zf, gradf = z.reshape(-1), grad.reshape(-1)
    tf, lossf, wf = target.reshape(-1), loss.reshape(-1), w_pos.reshape(-1)
    mf, sf, gf = z_max.reshape(-1), s_inv.reshape(-1), g.reshape(-1)
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
                e = _exp_nonpositive(zf[z0 + i] - mf[p0 + i])
                gradf[z0 + i] = e
                sf[p0 + i] += e
        for i in range(count):
            t = tf[p0 + i]
            if t == ignore_index:
                lossf[p0 + i] = 0
                wf[p0 + i] = 0
                gf[p0 + i] = 0
            else:
                w_t = weight[t]
                z_t = zf[np.uint64((n * c_ + t) * l_ + start) + i]
                log_s = np.log(np.float64(sf[p0 + i]))
                lossf[p0 + i] = w_t * (log_s + np.float64(mf[p0 + i]) - np.float64(z_t))
                wf[p0 + i] = w_t
                gf[p0 + i] = w_t * factor
            sf[p0 + i] = 1 / sf[p0 + i]
        for c in range(c_):
            z0 = np.uint64((n * c_ + c) * l_ + start)
            for i in range(count):
                onehot = np.float32(1.0) if c == tf[p0 + i] else np.float32(0.0)
                gradf[z0 + i] = gf[p0 + i] * (gradf[z0 + i] * sf[p0 + i] - onehot)


def cross_entropy_fused(logits, target, weight, ignore_index, reduction):
    """(loss, w_pos, grad): per-position loss and target weight (shaped like target) and the
    gradient of the reduced loss for dy = 1 (shaped like logits; per position for "none").
    logits float32 (N, C[, H, W]); target int64 of the matching shape; weight (C,) or None."""
    n_, c_ = logits.shape[:2]
    z = np.ascontiguousarray(logits).reshape(n_, c_, -1)  # (N, C, L)
    t = np.ascontiguousarray(target, dtype=np.int64).reshape(n_, -1)  # (N, L)
    w = np.ones(c_, np.float32) if weight is None else weight.astype(np.float32)
    factor = 1.0
    if reduction == "mean":
        total = target_weight_sum(t, w, np.int64(ignore_index))
        factor = 1.0 / total if total > 0 else 0.0  # all ignored: zero gradient, as ops/loss.py
    loss = np.empty(t.shape, np.float32)
    w_pos = np.empty(t.shape, np.float32)
    grad = np.empty_like(z)
    scratch = (np.empty(t.shape, np.float32), np.empty(t.shape, np.float32))
    g = np.empty(t.shape, np.float32)
    _fused_kernel(
        z, t, w, np.int64(ignore_index), np.float32(factor), loss, w_pos, grad, *scratch, g
    )
    return loss.reshape(target.shape), w_pos.reshape(target.shape), grad.reshape(logits.shape)


@njit(parallel=True, cache=True)
def _scale_kernel(grad, factor):
    """grad (N, C, L) *= factor (N, L), in place, on all threads (NumPy's *= runs on one)."""
    n_, c_, l_ = grad.shape
    for job in prange(n_ * c_):
        n, c = job // c_, job % c_
        for i in range(l_):
            grad[n, c, i] *= factor[n, i]


def scale_gradient(grad, dy, reduction):
    """The backward of the fused pass: grad * dy, in place (grad is handed over, not reused)."""
    n_, c_ = grad.shape[:2]
    if reduction != "none" and float(dy) == 1.0:
        return grad  # the usual case: the gradient is already the answer
    factor = np.empty((n_, grad[0, 0].size), grad.dtype)
    factor[...] = np.asarray(dy, grad.dtype).reshape(n_, -1) if reduction == "none" else dy
    _scale_kernel(grad.reshape(n_, c_, -1), factor)
    return grad

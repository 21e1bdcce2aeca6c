"""Shared pieces of the CUDA tests (``tests/test_cuda_*.py``): the cuda-emu fixture, access to
the op files' NumPy references, and small independent NumPy references of our own.

Every CUDA wrapper is compared twice:

1. with an independent NumPy computation written here (loops or a different formulation, so a
   shared misunderstanding of the contract is less likely), always;
2. with the ``_ref`` function of ``minisegnet/ops/<family>.py`` (the project's definition),
   always too: :func:`ops_ref` fails (ImportError / AttributeError naming it) when the op file
   or the function is missing, so a renamed reference breaks the test instead of skipping it.
"""

from __future__ import annotations

import importlib
import os

import numpy as np
import pytest

FLOATS = [np.float32, np.float64]

# Fewer hypothesis examples in the AddressSanitizer subprocess (test_cuda_emu_asan.py).
EXAMPLES = int(os.environ.get("MINISEGNET_CUDA_TEST_EXAMPLES", "25"))


def _emu_reason():
    from minisegnet import backend

    return backend.get("cuda-emu").unavailable_reason()


EMU_REASON = _emu_reason()
# ``pytestmark = needs_emu`` in a module: every test there skips, with the reason, when g++
# cannot build the emulator here.
needs_emu = pytest.mark.skipif(
    EMU_REASON is not None, reason=f"backend 'cuda-emu' unavailable: {EMU_REASON}"
)


def ops_ref(module: str, name: str):
    """``minisegnet.ops.<module>.<name>``: a missing module or function is an error, not a skip."""
    return getattr(importlib.import_module(f"minisegnet.ops.{module}"), name)


def ops_ref_pair(module: str, op: str):
    """``(<op>_forward_ref, <op>_backward_ref)`` of ``minisegnet.ops.<module>``, like :func:`ops_ref`."""
    return ops_ref(module, f"{op}_forward_ref"), ops_ref(module, f"{op}_backward_ref")


def rand(shape, dtype, seed=0, low=-2.0, high=2.0):
    """All-distinct values (tie-free pooling windows), shuffled, in the given dtype."""
    from tests.helpers import distinct

    return distinct(shape, seed=seed, dtype=np.float64, low=low, high=high).astype(dtype)


def out_size(n, k, s, p, d=1):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


# ------------------------------------------------------------------------------- conv
def im2col_np(x, kernel, stride, padding, dilation):
    """Pad, then copy one strided slice per (ky, kx)."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    b, c, h, w = x.shape
    ho, wo = out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw)
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = np.zeros((b, c, kh, kw, ho, wo))
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            cols[:, :, ky, kx] = xp[
                :, :, y0 : y0 + sh * (ho - 1) + 1 : sh, x0 : x0 + sw * (wo - 1) + 1 : sw
            ]
    return cols.reshape(b, c * kh * kw, ho * wo)


def col2im_np(cols, in_size, kernel, stride, padding, dilation):
    """The adjoint: add each (ky, kx) slice back into a padded image."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    h, w = in_size
    b = cols.shape[0]
    ho, wo = out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw)
    c = cols.shape[1] // (kh * kw)
    cols = cols.astype(np.float64).reshape(b, c, kh, kw, ho, wo)
    xp = np.zeros((b, c, h + 2 * ph, w + 2 * pw))
    for ky in range(kh):
        for kx in range(kw):
            y0, x0 = ky * dh, kx * dw
            xp[:, :, y0 : y0 + sh * (ho - 1) + 1 : sh, x0 : x0 + sw * (wo - 1) + 1 : sw] += cols[
                :, :, ky, kx
            ]
    return xp[:, :, ph : ph + h, pw : pw + w]


# ------------------------------------------------------------------------------- pooling
def windows(h, w, ho, wo, kernel, stride, padding):
    """Yield (oy, ox, [(ky, kx, iy, ix) inside the input])."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    for oy in range(ho):
        for ox in range(wo):
            taps = []
            for ky in range(kh):
                for kx in range(kw):
                    iy, ix = oy * sh - ph + ky, ox * sw - pw + kx
                    if 0 <= iy < h and 0 <= ix < w:
                        taps.append((ky, kx, iy, ix))
            yield oy, ox, taps


def max_pool_np(x, kernel, stride, padding, out):
    n, c, h, w = x.shape
    ho, wo = out
    y = np.zeros((n, c, ho, wo))
    idx = np.zeros((n, c, ho, wo), np.int64)
    for oy, ox, taps in windows(h, w, ho, wo, kernel, stride, padding):
        values = np.stack([x[:, :, iy, ix] for _, _, iy, ix in taps], axis=-1)  # (N, C, taps)
        best = values.argmax(axis=-1)  # the first maximum
        y[:, :, oy, ox] = np.take_along_axis(values, best[..., None], -1)[..., 0]
        positions = np.array([ky * kernel[1] + kx for ky, kx, _, _ in taps])
        idx[:, :, oy, ox] = positions[best]
    return y, idx


def max_pool_backward_np(dy, idx, in_size, kernel, stride, padding):
    """Scatter each dy to its switch (plain loops, so overlaps add)."""
    n, c, ho, wo = dy.shape
    kw, (sh, sw), (ph, pw) = kernel[1], stride, padding
    dx = np.zeros((n, c) + tuple(in_size))
    for b in range(n):
        for ch in range(c):
            for oy in range(ho):
                for ox in range(wo):
                    k = int(idx[b, ch, oy, ox])
                    iy, ix = oy * sh - ph + k // kw, ox * sw - pw + k % kw
                    dx[b, ch, iy, ix] += dy[b, ch, oy, ox]
    return dx


def avg_pool_np(x, kernel, stride, padding, out, count_include_pad):
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    y = np.zeros((n, c) + tuple(out))
    for oy, ox, taps in windows(h, w, *out, kernel, stride, padding):
        y0, x0 = oy * sh - ph, ox * sw - pw
        y1, x1 = min(y0 + kh, h + ph), min(x0 + kw, w + pw)
        div = (y1 - y0) * (x1 - x0) if count_include_pad else len(taps)
        y[:, :, oy, ox] = sum(x[:, :, iy, ix].astype(np.float64) for _, _, iy, ix in taps) / div
    return y


def avg_pool_backward_np(dy, in_size, kernel, stride, padding, count_include_pad):
    n, c, ho, wo = dy.shape
    h, w = in_size
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    dx = np.zeros((n, c, h, w))
    for oy, ox, taps in windows(h, w, ho, wo, kernel, stride, padding):
        y0, x0 = oy * sh - ph, ox * sw - pw
        y1, x1 = min(y0 + kh, h + ph), min(x0 + kw, w + pw)
        div = (y1 - y0) * (x1 - x0) if count_include_pad else len(taps)
        for _, _, iy, ix in taps:
            dx[:, :, iy, ix] += dy[:, :, oy, ox] / div
    return dx


def adaptive_matrix(n, out):
    """(out, n) averaging matrix of PyTorch's adaptive bins."""
    m = np.zeros((out, n))
    for o in range(out):
        a, b = (o * n) // out, -(-(o + 1) * n // out)
        m[o, a:b] = 1.0 / (b - a)
    return m


# ------------------------------------------------------------------------------- interpolate
def bilinear_matrix(n_in, n_out, align_corners, ratio, dtype):
    """(n_out, n_in) interpolation matrix, PyTorch's rules evaluated in ``dtype``; ``ratio`` is
    the contract's scale (1/scale_factor) or None for in/out."""
    t = np.dtype(dtype).type
    m = np.zeros((n_out, n_in))
    if n_out == n_in:
        return np.eye(n_in)
    if align_corners:
        r = t(n_in - 1) / t(n_out - 1) if n_out > 1 else t(0)
    else:
        r = t(ratio) if ratio else t(n_in) / t(n_out)
    for o in range(n_out):
        src = r * t(o) if align_corners else max(r * (t(o) + t(0.5)) - t(0.5), t(0))
        i0 = min(int(np.floor(src)), n_in - 1)
        i1 = i0 + (1 if i0 < n_in - 1 else 0)
        l1 = min(max(src - t(i0), t(0)), t(1))
        m[o, i0] += 1 - float(l1)
        m[o, i1] += float(l1)
    return m


def nearest_index(n_in, n_out, ratio):
    """Source index per output index, computed in float32 for every dtype, like PyTorch."""
    if n_out == n_in:
        return np.arange(n_out)
    if n_out == 2 * n_in:
        return np.arange(n_out) // 2
    r = np.float32(ratio) if ratio else np.float32(n_in) / np.float32(n_out)
    return np.minimum(np.floor(np.arange(n_out).astype(np.float32) * r).astype(int), n_in - 1)


# ------------------------------------------------------------------------------- normalization
def lrn_np(x, size, alpha, beta, k):
    x = x.astype(np.float64)
    c = x.shape[1]
    scale = np.empty_like(x)
    for ch in range(c):
        lo, hi = max(0, ch - size // 2), min(c - 1, ch + (size - 1) // 2)
        scale[:, ch] = k + alpha / size * (x[:, lo : hi + 1] ** 2).sum(axis=1)
    return x * scale**-beta, scale


def lrn_backward_np(dy, x, size, alpha, beta, k):
    """Finite-free: the exact Jacobian-vector product from the formula, by brute force over
    channel pairs (dy_c * d y_c / d x_j)."""
    x, dy = x.astype(np.float64), dy.astype(np.float64)
    y, scale = lrn_np(x, size, alpha, beta, k)
    c = x.shape[1]
    dx = dy * scale**-beta
    for ch in range(c):  # output channel
        lo, hi = max(0, ch - size // 2), min(c - 1, ch + (size - 1) // 2)
        for j in range(lo, hi + 1):  # input channels in its window
            dx[:, j] -= (
                dy[:, ch]
                * 2
                * alpha
                * beta
                / size
                * x[:, ch]
                * x[:, j]
                * scale[:, ch] ** (-beta - 1)
            )
    return dx


def splitmix_u(seed, i):
    """The contract's hash in Python integers -> u in [0, 1)."""
    m = (1 << 64) - 1
    z = (seed + (i + 1) * 0x9E3779B97F4A7C15) & m
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
    z ^= z >> 31
    return (z >> 40) * 2.0**-24


def cross_entropy_np(logits, target, weight, ignore_index):
    """Per position (loss, weight, softmax rows), in float64, logits (N, C, ...)."""
    z = np.moveaxis(logits.astype(np.float64), 1, -1)  # (N, ..., C)
    c = z.shape[-1]
    w = np.ones(c) if weight is None else weight.astype(np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    softmax = e / e.sum(axis=-1, keepdims=True)
    valid = target != ignore_index
    t = np.where(valid, target, 0)
    wpos = np.where(valid, w[t], 0.0)
    p_t = np.take_along_axis(softmax, t[..., None], -1)[..., 0]
    return -wpos * np.log(p_t), wpos, softmax

"""The data gradient of a strided convolution -- a transposed convolution's forward -- by stride
phases: one small stride-1 product for all s*s phases, no col2im.

The data gradient of a convolution with stride s spreads every dy pixel over a k x k window of
dx, s pixels apart (``ops/conv.py``: a GEMM, then col2im adding up kh*kw columns per position).
Split dx by the phase of its coordinates instead. With h + ph = s*a + ry (0 <= ry < s) and the
kernel k = m*s (an exact multiple), only the taps ky = ry + s*j (j < m) reach row h, from
output row oy = a - j; the same across. So each phase (ry, rx) of dx is a stride-1 correlation
of dy with an m x m sub-kernel:

    dx[n, c, s*a + ry - ph, s*b + rx - pw]
        = sum over o, u, v of  w[o, c, ry + s*(m-1-u), rx + s*(m-1-v)] * dy_pad[n, o, a + u, b + v]

where dy_pad is dy with m-1 zero rows and columns on every side (u = m-1-j). All s*s phases read
the same m x m windows of dy, so one im2col (depth O*m*m) and one matrix product with the s*s
sub-kernels stacked (s*s*C rows) give every phase at once,

    Z = Wphases @ cols(dy_pad)     Wphases[(ry, rx, c), (o, u, v)]       (s*s*C, O*m*m)
    dx[n, c, s*a + ry - ph, s*b + rx - pw] = Z[(ry, rx, c), (n, a, b)]   (zero where a, b run
                                                                          past Z: no tap reaches)

and a last pass places the phases into dx. Against the band path it writes and reads the
product's output once, at s*s*C rows instead of C*kh*kw (4x fewer for k4 s2), and has no col2im.
Measured on the 2-core machine (float32, FCN's upscore k4 s2 21->21 on 8x21x64x64 -> 130x130,
min of 7, one process): the transposed convolution's forward 10.95 ms on the band path, 5.28 ms
here (per chunk of 4 images: im2col 0.27, product 1.38, placing the phases 0.43 ms).

Taken by the numba backend (``conv_engine``) for one group, dilation 1, stride > 1 and kernels
an exact multiple of the stride (FCN's learned upsamplers: k4 s2, and k16 s8 ... when
``learnable``; the fixed ones are depthwise, ``conv_depthwise``).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from minisegnet.ops import conv_chunks
from minisegnet.ops.conv_chunks import im2col_chunk_numba

__all__ = ["ENABLED", "applies", "phase_weights", "conv2d_data_grad"]

ENABLED = True
"""Let the numba backend take this path where it applies (tests switch it off)."""


def applies(kernel, stride, dilation, groups) -> bool:
    """One group, dilation 1, a stride above 1, each kernel side a multiple of its stride."""
    (kh, kw), (sh, sw) = kernel, stride
    return (
        ENABLED
        and groups == 1
        and tuple(dilation) == (1, 1)
        and max(sh, sw) > 1
        and kh % sh == 0
        and kw % sw == 0
    )


def phase_weights(w, stride):
    """Wphases (sh*sw*C, O*mh*mw): Wphases[(ry, rx, c), (o, u, v)] =
    w[o, c, ry + sh*(mh-1-u), rx + sw*(mw-1-v)]."""
    O, C, kh, kw = w.shape
    sh, sw = stride
    mh, mw = kh // sh, kw // sw
    # w[o, c, ry + sh*j, rx + sw*i] as (o, c, j, ry, i, rx); flip j and i to u = mh-1-j, v = ...
    taps = w.reshape(O, C, mh, sh, mw, sw)[:, :, ::-1, :, ::-1, :]
    return np.ascontiguousarray(taps.transpose(3, 5, 1, 0, 2, 4)).reshape(sh * sw * C, O * mh * mw)


@njit(parallel=True, cache=True)
def _place_phases(z, dx, n0, sh, sw, ph, pw):
    """dx[n0 + b, c, h, x] = z[(ry, rx, c), b, a, bb] with h + ph = sh*a + ry, x + pw = sw*bb +
    rx; zero where a or bb runs past z. Each dx row is written phase by phase (every sw-th
    pixel from one z row), with unsigned flat indices so the loops stay simple for LLVM."""
    B, C, H, W = z.shape[1], dx.shape[1], dx.shape[2], dx.shape[3]
    A, Bw = z.shape[2], z.shape[3]
    zf, xf = z.reshape(-1), dx.reshape(-1)
    for i in prange(B * C * H):
        b = i // (C * H)
        c = (i // H) % C
        h = i % H
        a = (h + ph) // sh
        ry = (h + ph) % sh
        row = np.uint64((((n0 + b) * C + c) * H + h) * W)
        for rx in range(sw):
            x0 = (rx - pw) % sw  # first pixel of this phase; its bb = (x0 + pw) // sw
            bb0 = (x0 + pw) // sw
            count = (W - x0 + sw - 1) // sw  # pixels x0, x0 + sw, ... < W
            inside = 0  # how many of them read z
            if a < A:
                inside = max(0, min(count, Bw - bb0))
            src = np.uint64(((((ry * sw + rx) * C + c) * B + b) * A + a) * Bw + bb0)
            dst = row + np.uint64(x0)
            step = np.uint64(sw)
            for j in range(np.uint64(inside)):
                xf[dst + j * step] = zf[src + j]
            for j in range(np.uint64(inside), np.uint64(count)):
                xf[dst + j * step] = 0


def conv2d_data_grad(dy, w, in_size, stride, padding):
    """dx (N, C, H, W) from dy (N, O, Ho, Wo) for ``applies`` convolutions (the module
    docstring's phases)."""
    dy = np.ascontiguousarray(dy)
    N, O, Ho, Wo = dy.shape
    _, C, kh, kw = w.shape
    sh, sw = stride
    mh, mw = kh // sh, kw // sw
    A, Bw = Ho + mh - 1, Wo + mw - 1  # rows and columns of the stride-1 "full" correlation
    wp = phase_weights(np.asarray(w, dtype=dy.dtype), stride)
    rows, k = sh * sw * C, O * mh * mw
    dx = np.empty((N, C, *in_size), dtype=dy.dtype)
    image = (k + rows) * A * Bw * dy.itemsize  # columns and product of one image
    chunks = conv_chunks.plan_chunks(N, 1, image, conv_chunks.CHUNK_BYTES)
    step = max(B for _, B, _, _ in chunks)
    memory = conv_chunks.scratch_memory(step * image)[: step * image].view(dy.dtype)
    for n0, B, _, _ in chunks:
        cols = memory[: k * B * A * Bw].reshape(k, B, A, Bw)
        im2col_chunk_numba(dy, cols, n0, 0, mh, mw, 1, 1, mh - 1, mw - 1, 1, 1)
        z = memory[k * B * A * Bw : (k + rows) * B * A * Bw].reshape(rows, B, A, Bw)
        np.matmul(wp, cols.reshape(k, -1), out=z.reshape(rows, -1))
        _place_phases(z, dx, n0, sh, sw, *padding)
    return dx

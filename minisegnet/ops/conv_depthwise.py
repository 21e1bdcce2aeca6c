"""Depthwise convolution: one input and one output channel per group, as direct Numba loops.

With groups = C = O every channel is convolved with its own kh x kw kernel and nothing mixes
channels:

    y[n, c, oy, ox] = b[c] + sum over ky, kx of w[c, 0, ky, kx] * x_pad[n, c, oy*sh + ky*dh,
                                                                          ox*sw + kx*dw]

FCN's fixed bilinear upsamplers are of this kind, run transposed (``models/fcn.py``,
``FixedConvTranspose2d``: kernel 2f, stride f, one group per class). Through the band engine
each group is a matrix product of depth 1 -- an outer product that writes kh*kw columns per
position (4096 for FCN-32s's 64x64 kernel) only for col2im to add them up again. Here each
output is summed in place. Measured on the 2-core machine (float32, min of 7, ms): FCN-8s's
upsampler (transposed, k16 s8, 4x21x14x14 -> 120x120) 12.6-18.4 on the band engine -> 1.7-2.0
here; the convolution behind its backward (stride 8 over 4x21x120x120) 2.6-3.2 -> 1.2-1.35.
PyTorch took 1.5-2.7 and 1.0-1.9 in the same runs.

The three loops, each parallel over independent outputs (no two iterations write one element):

    forward      y rows (n, c, oy): per output, a dot product with each kernel row
    data grad    dx planes (n, c): scatter every dy pixel's kernel window, row by row
                 (dx[n, c, oy*sh - ph + ky*dh, ox*sw - pw + kx*dw] += w[c, 0, ky, kx] dy[...])
    weight grad  kernel rows (c, ky): sum dy times the input row each output row met

The arguments are trusted (``conv_engine`` checks that the convolution is depthwise).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from minisegnet.ops.conv_chunks import _inside  # [lo, hi): the outputs whose source is inside

__all__ = ["ENABLED", "applies", "conv2d_forward", "conv2d_data_grad", "conv2d_weight_grad"]

ENABLED = True
"""Let the numba backend take this path for depthwise convolutions (off: the band path runs
them, e.g. to time the two side by side)."""


def applies(channels: int, out_channels: int, groups: int) -> bool:
    """One input and one output channel per group (and the path enabled)."""
    return ENABLED and groups > 1 and channels == groups and out_channels == groups


# Inner loops index flat arrays with unsigned offsets: with signed ones Numba must handle Python's
# negative indices on every access, which keeps LLVM from vectorising them (conv_chunks.py).


@njit(parallel=True, cache=True, fastmath={"reassoc", "contract"})  # sums may reorder: SIMD
def _forward(x, w, y, sh, sw, ph, pw, dh, dw):
    N, C, H, W = x.shape
    Ho, Wo = y.shape[2], y.shape[3]
    kh, kw = w.shape[2], w.shape[3]
    xf, wf, yf = x.reshape(-1), w.reshape(-1), y.reshape(-1)
    reach = (kw - 1) * dw
    zero = np.zeros(1, y.dtype)[0]  # typed like the arrays: ``wf[0] * 0`` would be float64
    for i in prange(N * C * Ho):
        c = (i // Ho) % C
        oy = i % Ho
        out = np.uint64(i * Wo)  # y[n, c, oy, 0]
        for ox in range(np.uint64(Wo)):
            yf[out + ox] = 0
        for ky in range(kh):
            iy = oy * sh - ph + ky * dh
            if iy < 0 or iy >= H:
                continue
            row = np.uint64(((i // Ho) * H + iy) * W)  # x[n, c, iy, 0]
            taps = np.uint64((c * kh + ky) * kw)
            for ox in range(Wo):
                start = ox * sw - pw
                acc = zero  # sums in the arrays' precision (a literal 0 is an int64 and 0.0 a
                # float64, and either would make the float32 sum run in float64)
                if start >= 0 and start + reach < W:  # the whole kernel row inside: a dot product
                    src = row + np.uint64(start)
                    if dw == 1:  # unit stride: a loop LLVM vectorises
                        for kx in range(np.uint64(kw)):
                            acc += wf[taps + kx] * xf[src + kx]
                    else:
                        for kx in range(np.uint64(kw)):
                            acc += wf[taps + kx] * xf[src + kx * np.uint64(dw)]
                else:
                    for kx in range(kw):
                        col = start + kx * dw
                        if 0 <= col < W:
                            acc += wf[taps + np.uint64(kx)] * xf[row + np.uint64(col)]
                yf[out + np.uint64(ox)] += acc


@njit(parallel=True, cache=True)
def _data_grad(dy, w, dx, sh, sw, ph, pw, dh, dw):
    N, C, H, W = dx.shape
    Ho, Wo = dy.shape[2], dy.shape[3]
    kh, kw = w.shape[2], w.shape[3]
    gf, wf, xf = dy.reshape(-1), w.reshape(-1), dx.reshape(-1)
    for i in prange(N * C):  # the plane dx[n, c]
        c = i % C
        plane = np.uint64(i * H * W)
        for p in range(np.uint64(H * W)):
            xf[plane + p] = 0
        for oy in range(Ho):
            for ky in range(kh):
                h = oy * sh - ph + ky * dh
                if h < 0 or h >= H:
                    continue
                taps = np.uint64((c * kh + ky) * kw)
                for ox in range(Wo):
                    g = gf[np.uint64((i * Ho + oy) * Wo + ox)]
                    start = ox * sw - pw  # dx column of tap 0; tap kx lands kx*dw further
                    lo, hi = _inside(start, dw, W, kw)  # taps that land inside the row
                    dst = plane + np.uint64(h * W + start + lo * dw)
                    step = np.uint64(dw)
                    for j in range(np.uint64(hi - lo)):  # contiguous when dw == 1
                        xf[dst + j * step] += wf[taps + np.uint64(lo) + j] * g


@njit(parallel=True, cache=True)
def _weight_grad(x, dy, dw_out, sh, sw, ph, pw, dh, dw):
    N, C, H, W = x.shape
    Ho, Wo = dy.shape[2], dy.shape[3]
    kh, kw = dw_out.shape[2], dw_out.shape[3]
    xf, gf = x.reshape(-1), dy.reshape(-1)
    for i in prange(C * kh):
        c = i // kh
        ky = i % kh
        for kx in range(kw):
            offset = kx * dw - pw
            lo, hi = _inside(offset, sw, W, Wo)
            total = 0.0  # float64: sums over the whole batch
            for n in range(N):
                for oy in range(Ho):
                    iy = oy * sh - ph + ky * dh
                    if iy < 0 or iy >= H:
                        continue
                    row = np.uint64(((n * C + c) * H + iy) * W + lo * sw + offset)
                    g = np.uint64(((n * C + c) * Ho + oy) * Wo + lo)
                    step = np.uint64(sw)
                    for j in range(np.uint64(hi - lo)):
                        total += gf[g + j] * xf[row + j * step]
            dw_out[c, 0, ky, kx] = total


def conv2d_forward(x, w, stride, padding, dilation, out_size, bias=None):
    """y (N, C, Ho, Wo) of the depthwise convolution of x (N, C, H, W) with w (C, 1, kh, kw)."""
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w, dtype=x.dtype)
    y = np.empty((x.shape[0], x.shape[1], *out_size), dtype=x.dtype)
    _forward(x, w, y, *stride, *padding, *dilation)
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y


def conv2d_data_grad(dy, w, in_size, stride, padding, dilation):
    """dx (N, C, H, W) from dy (N, C, Ho, Wo): the transposed convolution."""
    dy, w = np.ascontiguousarray(dy), np.ascontiguousarray(w, dtype=dy.dtype)
    dx = np.empty((dy.shape[0], dy.shape[1], *in_size), dtype=dy.dtype)
    _data_grad(dy, w, dx, *stride, *padding, *dilation)
    return dx


def conv2d_weight_grad(x, dy, kernel, stride, padding, dilation):
    """dw (C, 1, kh, kw) from x (N, C, H, W) and dy (N, C, Ho, Wo)."""
    x, dy = np.ascontiguousarray(x), np.ascontiguousarray(dy)
    dw = np.empty((x.shape[1], 1, *kernel), dtype=x.dtype)
    _weight_grad(x, dy, dw, *stride, *padding, *dilation)
    return dw

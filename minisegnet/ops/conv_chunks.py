"""The Numba kernels of convolution's chunked im2col and col2im, shared by ``ops/conv.py`` (the
band engine) and ``ops/conv_row_shift.py``.

Both kernels work on one chunk: output rows oy0 .. oy0+R-1 of images n0 .. n0+B-1, with the
chunk's columns laid out as cols (C*kh*kw, B, R, Wo). Flattened, that is the matrix
(C*kh*kw, B*R*Wo) whose product with the weights gives the chunk's outputs in one GEMM. The
readable versions they must agree with are ``im2col_ref`` and ``col2im_ref`` in ``ops/conv.py``.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

__all__ = ["im2col_chunk_numba", "col2im_chunk_numba"]

# Both kernels work on one chunk: output rows oy0 .. oy0+R-1 of images n0 .. n0+B-1, with the
# chunk's columns laid out as cols (C*kh*kw, B, R, Wo). Flattened, that is the matrix
# (C*kh*kw, B*R*Wo) whose product with the weights gives the chunk's outputs in one GEMM.
#
# Indexing uses flat views and unsigned loop counters on purpose: with a signed index Numba must
# handle Python's negative indices (x[-1]) on every access, which stops LLVM from vectorising the
# copy loops (about 3x slower here).


@njit(cache=True)
def _inside(offset, step, size, n_out):
    """Output range [lo, hi) of o in [0, n_out) whose source o*step + offset lies in [0, size)."""
    lo = 0
    if offset < 0:
        lo = min(n_out, (-offset + step - 1) // step)
    hi = max(lo, min(n_out, (size - offset + step - 1) // step))
    return lo, hi


@njit(parallel=True, cache=True)
def im2col_chunk_numba(x, cols, n0, oy0, kh, kw, sh, sw, ph, pw, dh, dw):
    """Fill cols (C*kh*kw, B, R, Wo) from x (N, C, H, W): one prange iteration per cols row."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    n_rows, B, R, Wo = cols.shape
    xf = x.reshape(-1)
    cf = cols.reshape(-1)
    for row in prange(n_rows):  # row = c*kh*kw + ky*kw + kx
        c = row // (kh * kw)
        ky = (row // kw) % kh
        kx = row % kw
        lo, hi = _inside(kx * dw - pw, sw, W, Wo)  # columns ox that read inside the image
        for b in range(B):
            for r in range(R):
                iy = (oy0 + r) * sh - ph + ky * dh  # input row read by output row oy0 + r
                dst = np.uint64(((row * B + b) * R + r) * Wo)
                if iy < 0 or iy >= H:  # the whole row reads padding
                    for ox in range(np.uint64(Wo)):
                        cf[dst + ox] = 0
                    continue
                for ox in range(np.uint64(lo)):
                    cf[dst + ox] = 0
                # input column of output column ox: ox*sw - pw + kx*dw
                src = np.uint64((((n0 + b) * C + c) * H + iy) * W + lo * sw + kx * dw - pw)
                d = dst + np.uint64(lo)
                if sw == 1:
                    for j in range(np.uint64(hi - lo)):
                        cf[d + j] = xf[src + j]
                else:
                    step = np.uint64(sw)
                    for j in range(np.uint64(hi - lo)):
                        cf[d + j] = xf[src + j * step]
                for ox in range(np.uint64(hi), np.uint64(Wo)):
                    cf[dst + ox] = 0


@njit(parallel=True, cache=True)
def col2im_chunk_numba(cols, dx, n0, oy0, kh, kw, sh, sw, ph, pw, dh, dw):
    """Add the chunk's columns cols (C*kh*kw, B, R, Wo) into dx (N, C, H, W), as a gather.

    One prange iteration per destination row (n, c, h) that the chunk reaches. It visits the
    taps (ky, kx) whose window row lands on h, i.e. (h + ph - ky*dh) % sh == 0 with the output
    row oy = (h + ph - ky*dh) // sh inside the chunk, and for each adds the matching output
    columns; every pixel of the row is written by this iteration only (no race, no atomics).
    """
    n_rows, B, R, Wo = cols.shape
    C, H, W = dx.shape[1], dx.shape[2], dx.shape[3]
    cf = cols.reshape(-1)
    xf = dx.reshape(-1)
    h_lo = max(0, oy0 * sh - ph)  # input rows read by output rows oy0 .. oy0+R-1
    h_hi = min(H, (oy0 + R - 1) * sh - ph + (kh - 1) * dh + 1)
    nh = max(0, h_hi - h_lo)
    for i in prange(B * C * nh):
        b = i // (C * nh)
        c = (i // nh) % C
        h = h_lo + i % nh
        for ky in range(kh):
            t = h + ph - ky * dh
            if t < 0 or t % sh != 0:
                continue
            oy = t // sh
            if oy < oy0 or oy >= oy0 + R:
                continue
            for kx in range(kw):
                # pixel w gets output column ox when w = ox*sw - pw + kx*dw (ox whole, in range)
                lo, hi = _inside(kx * dw - pw, sw, W, Wo)
                src = np.uint64(((((c * kh + ky) * kw + kx) * B + b) * R + oy - oy0) * Wo + lo)
                dst = np.uint64((((n0 + b) * C + c) * H + h) * W + lo * sw + kx * dw - pw)
                if sw == 1:
                    for j in range(np.uint64(hi - lo)):
                        xf[dst + j] += cf[src + j]
                else:
                    step = np.uint64(sw)
                    for j in range(np.uint64(hi - lo)):
                        xf[dst + j * step] += cf[src + j]

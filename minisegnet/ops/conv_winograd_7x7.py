"""Winograd F(2x2, 7x7): SegNet-Basic's 7x7 convolutions with 3x fewer multiplications.

The 3x3 tiles (ops/conv_winograd.py, _f4.py, _f6.py) apply to any filter size: Toom-Cook on
a = m + r - 1 points computes an m x m output tile of an r x r filter from an a x a input tile
with a*a multiplications. With r = 7 and the 8 points of F(6x6, 3x3) (0, 1, -1, 2, -2, 1/2,
-1/2 and infinity), m = 2:

    Y = A^T [ (G g G^T) * (B^T d B) ] A       (64 multiplications for 4 outputs; direct: 196)

    B^T: F(6x6, 3x3)'s (ops/conv_winograd_f6.py) -- it depends only on the points
    G   = [[1/4,     0,     0,     0,     0,     0,     0],   row k: its scale (F6's G[k, 0])
           [1/18,  1/18,  1/18,  1/18,  1/18,  1/18,  1/18],      times (1, p, p^2, ..., p^6)
           [1/18, -1/18,  1/18, -1/18,  1/18, -1/18,  1/18],      for point p
           [1/360, 2/360, 4/360, ...                64/360],
           [1/360, -2/360, ...                      64/360],
           [16/45, 8/45, 4/45, ...                  16/2880],
           [16/45, -8/45, ...                       16/2880],
           [0, 0, 0, 0, 0, 0, 1/4]]
    A^T = [[1, 1,  1, 1,  1,   1,    1, 0],
           [0, 1, -1, 2, -2, 1/2, -1/2, 1]]

What it buys, per output pixel and (input, output) channel pair: 16 multiplications against
the direct convolution's 49, in 64 products of depth C (the stacked row-shift path,
ops/conv_row_stack.py, makes one product of depth 7 C, which BLAS runs about twice as fast per
multiplication). What it costs: the transformed tiles are 64/4 = 16x the input (and the output
gradient), against 1.78x for F(6x6, 3x3), so every transform moves 16 floats per pixel and
channel, which only pays where they stay in a core's cache (the drivers below); and the float32
error is about 12x the direct path's, as F(4x4, 3x3)'s: 6.0e-6 of max |y| against 4.7e-7 on
64 channels (``conv_winograd.error_bound`` states a bound; the tests check it;
benchmarks/results/fast_paths.md measures it).

Each input row belongs to 4 tile rows and each column to 4 tiles, which the kernels use: the
columns of a row of tiles are transformed once (a pass over the padded width), and the input
rows are kept split into their even and odd columns, so that tile tx's 8 columns 2 tx ..
2 tx + 7 are the positions tx .. tx + 3 of the two halves and every loop reads contiguous
memory. The kernels are serial (one worker thread runs each call) and release the GIL.

Undilated only, as every 7x7 convolution of the networks here (SegNet-Basic's); the kernels
raise on another dilation.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
from numba import njit

from minisegnet.ops import blas_threads, conv_chunks, conv_winograd
from minisegnet.ops.conv_winograd_f4 import _padded_row
from minisegnet.ops.conv_winograd_f6 import BT, _b, _bt, _eight_slices
from minisegnet.ops.conv_winograd_f6 import G as G_3X3

POINTS = (0.0, 1.0, -1.0, 2.0, -2.0, 0.5, -0.5)
"""The finite points of the construction (the eighth is infinity), F(6x6, 3x3)'s."""

G = np.zeros((8, 7), np.float64)
for _k, _p in enumerate(POINTS):
    G[_k] = G_3X3[_k, 0] * _p ** np.arange(7)  # F6's scale of the point times its powers
G[7, 6] = G_3X3[7, 2]
del _k, _p

AT = np.array([[1, 1, 1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 1 / 2, -1 / 2, 1]], np.float64)

__all__ = ["AT", "BT", "G", "ROUNDINGS"]

ROUNDINGS = 42
"""Roundings along one path besides the channel sum (for ``conv_winograd.error_bound``): input
transform 2 x 6 (F6's), filter transform 2 x 8 (a row of G has 7 non-zeros, each a rounded
scale times a power of 2: one product, 6 additions, the rounded entry), output transform 2 x 7
(a row of A^T has up to 8 non-zeros: 7 additions; 2 and 1/2 are exact)."""

K2, K1_2 = np.float32(2), np.float32(0.5)
"""A^T's entries as float32 constants (``conv_winograd_f4.K4`` says why)."""


# ------------------------------------------------------------------------------------------------
# The 1-D output transforms (B^T and B are F(6x6, 3x3)'s ``_bt`` and ``_b``)
# ------------------------------------------------------------------------------------------------


@njit(inline="always", cache=True)
def _at(m0, m1, m2, m3, m4, m5, m6, m7):
    """A^T m: the output transform of 8 values (2 outputs)."""
    return (
        m0 + (m1 + m2) + (m3 + m4) + (m5 + m6),
        (m1 - m2) + K2 * (m3 - m4) + K1_2 * (m5 - m6) + m7,
    )


@njit(inline="always", cache=True)
def _a(a0, a1):
    """A a: the transpose of ``_at`` (the output gradient's transform, 2 values -> 8)."""
    twice, half = K2 * a1, K1_2 * a1
    return a0, a0 + a1, a0 - a1, a0 + twice, a0 - twice, a0 + half, a0 - half, a1


# ------------------------------------------------------------------------------------------------
# Rows split into even and odd columns
# ------------------------------------------------------------------------------------------------


@njit(inline="always", cache=True)
def _split_padded_row(xf, base, iy, h, w, pw, even, odd):
    """even[k] = x[iy, 2k - pw], odd[k] = x[iy, 2k + 1 - pw] (0 outside the image): one padded
    input row, split by column parity."""
    _padded_row(xf, base, iy, h, w, pw, 2, even)
    _padded_row(xf, base, iy, h, w, pw - 1, 2, odd)


@njit(cache=True)
def _undilated(dilation):
    if dilation != 1:
        raise ValueError("F(2x2, 7x7)'s kernels take undilated convolutions only")


# ------------------------------------------------------------------------------------------------
# The four 2-D transforms, with ops/conv_winograd_f4.py's signatures and layouts
# ------------------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def input_transform(x, v, tiles, n0, ty0, ph, pw, dilation):
    """x (N, C, H, W) -> v[k, c, p] = (B^T d B)[k // 8, k % 8] for every tile p of the chunk (one
    (image, channel) plane per iteration), tile (ty, tx) reading padded rows 2 ty .. 2 ty + 7
    and columns 2 tx .. 2 tx + 7.

    Columns first, over the whole row of tiles: u = B^T d combines the 8 input rows pixel by
    pixel, in each half (even, odd columns); then tile tx's row xi of u is
    (ue[tx], uo[tx], ue[tx+1], uo[tx+1], ..., uo[tx+3]), and its 8 values of u B are stored
    contiguously along the tiles. The split rows are kept in a ring of 8: the next tile row
    reads 6 of them again and loads 2 (padded row 2 ty + i is in slot (2 ty + i) % 8)."""
    _undilated(dilation)
    _, C, H, W = x.shape
    B, TR, tw = tiles
    xf, vf = x.reshape(-1), v.reshape(-1)
    stride, P = v.shape[1], B * TR * tw
    half = tw + 3  # the padded row's 2 tw + 6 columns, split in two
    d = np.empty((2, 8, half), x.dtype)  # d[parity, slot]: the ring of split input rows
    u = np.empty((2, 8, half), x.dtype)  # u = B^T d
    for job in range(C * B):
        c, b = job // B, job % B
        base = ((n0 + b) * C + c) * H * W
        for r in range(TR):
            top = 2 * (ty0 + r)  # the tile row's first padded row
            for i in range(0 if r == 0 else 6, 8):
                slot = (top + i) % 8
                _split_padded_row(xf, base, top + i - ph, H, W, pw, d[0, slot], d[1, slot])
            for parity in range(2):
                ring = d[parity]
                d0, d1, d2, d3 = (
                    ring[top % 8],
                    ring[(top + 1) % 8],
                    ring[(top + 2) % 8],
                    ring[(top + 3) % 8],
                )
                d4, d5, d6, d7 = (
                    ring[(top + 4) % 8],
                    ring[(top + 5) % 8],
                    ring[(top + 6) % 8],
                    ring[(top + 7) % 8],
                )
                u0, u1, u2, u3 = u[parity, 0], u[parity, 1], u[parity, 2], u[parity, 3]
                u4, u5, u6, u7 = u[parity, 4], u[parity, 5], u[parity, 6], u[parity, 7]
                for col in range(half):
                    u0[col], u1[col], u2[col], u3[col], u4[col], u5[col], u6[col], u7[col] = _bt(
                        d0[col], d1[col], d2[col], d3[col], d4[col], d5[col], d6[col], d7[col]
                    )
            out = c * P + (b * TR + r) * tw
            for xi in range(8):
                e, o = u[0, xi], u[1, xi]
                at = 8 * xi * stride + out
                v0, v1, v2, v3, v4, v5, v6, v7 = _eight_slices(vf, at, stride, tw)
                for tx in range(tw):
                    v0[tx], v1[tx], v2[tx], v3[tx], v4[tx], v5[tx], v6[tx], v7[tx] = _bt(
                        e[tx],
                        o[tx],
                        e[tx + 1],
                        o[tx + 1],
                        e[tx + 2],
                        o[tx + 2],
                        e[tx + 3],
                        o[tx + 3],
                    )


@njit(nogil=True, cache=True)
def output_transform(m, tiles, y, bias, n0, ty0, dilation):
    """m[k, o, p] -> y (N, O, Ho, Wo): the 2x2 tiles A^T M A + bias (O,), cut to the output (one
    (image, channel) plane per iteration): columns first (s = A^T M, 2 rows of 8 per tile),
    then each output row's even and odd pixels."""
    _undilated(dilation)
    _, O, Ho, Wo = y.shape
    B, TR, tw = tiles
    mf, yf = m.reshape(-1), y.reshape(-1)
    stride, P = m.shape[1], B * TR * tw
    s = np.empty((2, 8, tw), y.dtype)  # s[i, nu, tx] = (A^T M)[i, nu] of tile tx
    even = np.empty(tw, y.dtype)
    odd = np.empty(tw, y.dtype)
    for job in range(O * B):
        o, b = job // B, job % B
        add = bias[o]
        for r in range(TR):
            out = o * P + (b * TR + r) * tw
            for nu in range(8):
                m0, m1, m2, m3, m4, m5, m6, m7 = _eight_slices(
                    mf, nu * stride + out, 8 * stride, tw
                )
                s0, s1 = s[0, nu], s[1, nu]
                for tx in range(tw):
                    s0[tx], s1[tx] = _at(
                        m0[tx], m1[tx], m2[tx], m3[tx], m4[tx], m5[tx], m6[tx], m7[tx]
                    )
            oy = 2 * (ty0 + r)
            for i in range(min(2, Ho - oy)):
                a0, a1, a2, a3 = s[i, 0], s[i, 1], s[i, 2], s[i, 3]
                a4, a5, a6, a7 = s[i, 4], s[i, 5], s[i, 6], s[i, 7]
                for tx in range(tw):
                    even[tx], odd[tx] = _at(
                        a0[tx], a1[tx], a2[tx], a3[tx], a4[tx], a5[tx], a6[tx], a7[tx]
                    )
                dst = ((n0 + b) * O + o) * Ho * Wo + (oy + i) * Wo
                for tx in range(Wo // 2):
                    yf[dst + 2 * tx] = even[tx] + add
                    yf[dst + 2 * tx + 1] = odd[tx] + add
                if Wo % 2:
                    yf[dst + Wo - 1] = even[tw - 1] + add


@njit(nogil=True, cache=True)
def output_transform_adjoint(dy, z, tiles, n0, ty0, dilation):
    """dy (N, O, Ho, Wo) -> z[k, o, p] = (A dY A^T)[k // 8, k % 8] (dY read as 0 beyond the
    output; one (image, channel) plane per iteration): columns first (u = A dY over the tile
    row's 2 rows, split into even and odd columns), then each tile's 8 values of u A^T."""
    _undilated(dilation)
    _, O, Ho, Wo = dy.shape
    B, TR, tw = tiles
    df, zf = dy.reshape(-1), z.reshape(-1)
    stride, P = z.shape[1], B * TR * tw
    a = np.empty((2, 2, tw), dy.dtype)  # a[i, parity]: the tile row's 2 gradient rows
    u = np.empty((8, 2, tw), dy.dtype)  # u = A dY
    for job in range(O * B):
        o, b = job // B, job % B
        for r in range(TR):
            oy = 2 * (ty0 + r)
            for i in range(2):
                ai_even, ai_odd = a[i, 0], a[i, 1]
                if oy + i < Ho:
                    src = ((n0 + b) * O + o) * Ho * Wo + (oy + i) * Wo
                    for tx in range(Wo // 2):
                        ai_even[tx] = df[src + 2 * tx]
                        ai_odd[tx] = df[src + 2 * tx + 1]
                    if Wo % 2:
                        ai_even[tw - 1] = df[src + Wo - 1]
                        ai_odd[tw - 1] = 0
                else:
                    a[i, :, :] = 0
            for parity in range(2):
                a0, a1 = a[0, parity], a[1, parity]
                u0, u1, u2, u3 = u[0, parity], u[1, parity], u[2, parity], u[3, parity]
                u4, u5, u6, u7 = u[4, parity], u[5, parity], u[6, parity], u[7, parity]
                for tx in range(tw):
                    u0[tx], u1[tx], u2[tx], u3[tx], u4[tx], u5[tx], u6[tx], u7[tx] = _a(
                        a0[tx], a1[tx]
                    )
            out = o * P + (b * TR + r) * tw
            for xi in range(8):
                e, od = u[xi, 0], u[xi, 1]
                z0, z1, z2, z3, z4, z5, z6, z7 = _eight_slices(
                    zf, 8 * xi * stride + out, stride, tw
                )
                for tx in range(tw):
                    z0[tx], z1[tx], z2[tx], z3[tx], z4[tx], z5[tx], z6[tx], z7[tx] = _a(
                        e[tx], od[tx]
                    )


@njit(nogil=True, cache=True)
def input_transform_adjoint(q, tiles, dx, n0, ty0, ph, pw, carry, seam_end, seam):
    """q[k, c, p] -> dx (N, C, H, W): the sum of B Q B^T over the 8x8 tiles (padding dropped);
    one (image, channel) plane at a time, its tile rows in order.

    Rows first: h_j[tx] = (Q B^T)[xi, j] of tile tx, then the column 2 t + j of the tile row
    sums 4 tiles, h_j[t - j // 2] over j of that parity (contiguous, shifted reads); then the
    columns: g = B e over the 8 rows. The 8 rows of g are added onto a window ``acc`` of 8
    padded rows; after tile row r its first 2 rows are complete (no later tile row reaches
    them) and are stored, and the window moves down 2 rows.

    Bands. A chunk that is a band of one image's tile rows starts its window from ``carry``
    (C, 6, 2, tw + 3), the 6 unfinished rows the band above left there (when ty0 > 0), and
    leaves its own 6 there unless it ends the image (then all 8 rows are stored). Padded rows
    below ``seam_end`` are stored into ``seam`` (C, 6, W) instead of dx, as rows
    seam_end - 6 .. seam_end - 1: a worker thread that starts in the middle of an image
    (``_grads``) lacks the contributions of the tile rows above it to those rows."""
    _, C, H, W = dx.shape
    B, TR, tw = tiles
    qf, xf = q.reshape(-1), dx.reshape(-1)
    stride, P = q.shape[1], B * TR * tw
    half = tw + 3
    th = (H + 2 * ph - 6 + 1) // 2  # the image's tile rows
    h = np.zeros((8, tw + 6), dx.dtype)  # h[j, 3 + tx]: zeros on both sides
    e = np.empty((8, 2, half), dx.dtype)  # e[xi, parity, t] = (sum of Q B^T)[xi, 2t + parity]
    acc = np.empty((8, 2, half), dx.dtype)  # padded rows 2 (ty0 + r) .. + 7, by parity
    for job in range(C * B):
        c, b = job // B, job % B
        base = ((n0 + b) * C + c) * H * W
        acc[:] = 0
        if ty0 > 0:
            acc[:6] = carry[c]
        for r in range(TR):
            out = c * P + (b * TR + r) * tw
            for xi in range(8):
                q0, q1, q2, q3, q4, q5, q6, q7 = _eight_slices(
                    qf, 8 * xi * stride + out, stride, tw
                )
                h0, h1, h2, h3, h4, h5, h6, h7 = h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]
                for tx in range(tw):
                    t = tx + 3
                    h0[t], h1[t], h2[t], h3[t], h4[t], h5[t], h6[t], h7[t] = _b(
                        q0[tx], q1[tx], q2[tx], q3[tx], q4[tx], q5[tx], q6[tx], q7[tx]
                    )
                ee, eo = e[xi, 0], e[xi, 1]
                for t in range(half):  # column 2t + j of tile t - j // 2 (h index t + 3 - j // 2)
                    ee[t] = h0[t + 3] + h2[t + 2] + h4[t + 1] + h6[t]
                    eo[t] = h1[t + 3] + h3[t + 2] + h5[t + 1] + h7[t]
            for parity in range(2):
                e0, e1, e2, e3 = e[0, parity], e[1, parity], e[2, parity], e[3, parity]
                e4, e5, e6, e7 = e[4, parity], e[5, parity], e[6, parity], e[7, parity]
                c0, c1, c2, c3 = acc[0, parity], acc[1, parity], acc[2, parity], acc[3, parity]
                c4, c5, c6, c7 = acc[4, parity], acc[5, parity], acc[6, parity], acc[7, parity]
                for t in range(half):
                    g0, g1, g2, g3, g4, g5, g6, g7 = _b(
                        e0[t], e1[t], e2[t], e3[t], e4[t], e5[t], e6[t], e7[t]
                    )
                    c0[t] += g0
                    c1[t] += g1
                    c2[t] += g2
                    c3[t] += g3
                    c4[t] += g4
                    c5[t] += g5
                    c6[t] += g6
                    c7[t] += g7
            first = 2 * (ty0 + r)  # padded row of acc[0]
            rows = 8 if ty0 + r == th - 1 else 2
            for i in range(rows):
                row = first + i
                if row < seam_end:
                    _store_split_row(seam[c, row - seam_end + 6], 0, row - ph, H, W, pw, acc[i])
                else:
                    _store_split_row(xf, base + (row - ph) * W, row - ph, H, W, pw, acc[i])
            for i in range(6):  # the window moves down 2 rows
                acc[i] = acc[i + 2]
            acc[6] = 0
            acc[7] = 0
        if ty0 + TR < th:
            carry[c] = acc[:6]


@njit(inline="always", cache=True)
def _store_split_row(target, dst, iy, h, w, pw, split):
    """target[dst + col] = column col + pw of one padded row kept split by column parity
    (split[0][t] is padded column 2t, split[1][t] column 2t + 1), for col < w: row iy of an
    image of h rows and w columns; nothing for a row outside it (iy < 0 or iy >= h)."""
    if iy < 0 or iy >= h:
        return
    even, odd = split[0], split[1]
    for col in range(pw % 2, w, 2):  # even padded columns
        target[dst + col] = even[(col + pw) // 2]
    for col in range(1 - pw % 2, w, 2):  # odd padded columns
        target[dst + col] = odd[(col + pw) // 2]


# ------------------------------------------------------------------------------------------------
# Drivers: each worker thread its own chunks, start to end
# ------------------------------------------------------------------------------------------------
# The 3x3 drivers (ops/conv_winograd.py) run each transform as one parallel Numba kernel over a
# chunk and share the chunk's products among the threads: 4 parallel launches and 2 joins per
# chunk, and every buffer written by one core is read by the other. Here each worker thread of
# ops/blas_threads.py takes runs of neighbouring chunks as it comes free (``_segments``,
# ``blas_threads.run_each``) and does everything for them itself -- transforms (the serial
# kernels above, which release the GIL), the 64 products in one GIL-free BLAS call
# (ops/gemm_batch.py), output transform -- so that a chunk's buffers stay in its core's cache
# and the workers meet once per convolution. Measured (7x7 64->64 on 4x64x96x128, one process,
# 2026-12-06, ms): forward alone, min of 5: the 3x3 drivers' scheme 134-178, each worker its
# own half of the chunks 83-108 (the stacked row-shift path 113-146, PyTorch 96-102 in the same
# runs); forward + both gradients, median of 5 interleaved, with the runs and the batched
# products: 215-242, the stacked path 355-365, PyTorch 334-351.

F2_7X7 = conv_winograd.Variant(BT, G, AT, ROUNDINGS)
"""This algorithm for ``conv_winograd``'s NumPy references and ``error_bound``."""

ENABLED = True
"""Let the numba backend take this path where it applies (tests and benchmarks switch it off
with ``winograd_7x7(False)``; ``conv_winograd.ENABLED = False`` switches off every Winograd
path, this one too)."""

MIN_CHANNELS = 32
"""Smallest input and output channel count that takes the path (``MIN_PIXELS_PER_CHANNEL``
has the measurements)."""

MIN_PIXELS_PER_CHANNEL = 32
"""Output pixels per image per channel (Ho Wo / max(C, O)) below which the path is not taken.
Measured 2026-12-06 with the products in one GIL-free call (ops/gemm_batch.py; forward + both
gradients, median / min of 5 interleaved runs, ms, this path / the stacked row-shift path /
PyTorch, pixels per channel in brackets): 4x64x96x128 (192) 215 / 357 / 344; 4x64x64x96 (96)
128 / 176 / 187; 4x32x48x64 (96) 37 / 39 / 47; 4x64x48x64 (48) 74 / 93 / 120; 2x64x48x64 (48)
60 / 62 / 72; 4x64x32x48 (24) 47 / 49 / 65, minima 37 / 47; 4x64x24x32 (12) 46 / 34 / 38;
8x64x24x32 (12) 51 / 53 / 69; 4x64x12x16 (3) 20 / 11 / 8. Small images make small products
(a chunk is a few tile rows at most), which BLAS runs slowly; 16 channels lost (4x16x64x64:
21 / 17 / 17), hence ``MIN_CHANNELS``. Before the products left np.matmul, the path lost up
to 48 pixels per channel (4x64x48x64: 104-125 / 122-123 / 125)."""

SEGMENTS_PER_WORKER = 16
"""The chunks are cut into this many runs per worker thread, which the workers take one by one
as they finish the last: on this machine two threads running the same products took from the
same to 1.7x the same time (the two cores are not always equally fast), and fixed halves left
the faster one idle for the difference. Measured (4x64x96x128, the time between the first and
the last worker finishing, forward / both gradients, three runs, ms): 4 runs per worker 8-12 /
17-28, 8: 2-14 / 2-14, 16: 0.3-2 / 2-7. A seam costs its 6 rows' sum."""

BUDGET_BYTES = 4 * 2**20
"""Transformed tiles of one chunk (two (64, channels, tiles) buffers) of one worker stay under
this many bytes. Measured (forward + both gradients of 4x64x96x128, median of 5 interleaved
runs, ms, before the batched products): 2 MB 104-300, 4 MB 251-289, 8 MB 300-325, 16 MB 373
(the 3x3 drivers' budget); 3 and 6 MB tied with 4 in another run; with the batched products
2 MB 213-232, 4 MB 210-215. Smaller chunks make smaller products, which BLAS runs slower;
larger ones leave the core's caches (L2 1 MB here)."""


@contextmanager
def winograd_7x7(enabled: bool, min_channels: int | None = None, any_size: bool = False):
    """Temporarily allow or forbid the path, optionally from ``min_channels`` on and on images of
    any size (tests use tiny ones)."""
    global ENABLED, MIN_CHANNELS, MIN_PIXELS_PER_CHANNEL
    previous = ENABLED, MIN_CHANNELS, MIN_PIXELS_PER_CHANNEL
    ENABLED = bool(enabled)
    if min_channels is not None:
        MIN_CHANNELS = int(min_channels)
    if any_size:
        MIN_PIXELS_PER_CHANNEL = 0
    try:
        yield
    finally:
        ENABLED, MIN_CHANNELS, MIN_PIXELS_PER_CHANNEL = previous


def applies(channels, out_channels, kernel, stride, padding, dilation, groups, out_size=None):
    """True where the numba backend computes the convolution with this file: 7x7, stride 1,
    padding at most 6, undilated, one group, ``MIN_CHANNELS`` channels or more on both sides
    and, with the output size (Ho, Wo) given, ``MIN_PIXELS_PER_CHANNEL`` output pixels per
    image per channel or more."""
    if out_size is not None:
        if out_size[0] * out_size[1] < MIN_PIXELS_PER_CHANNEL * max(channels, out_channels):
            return False
    return (
        ENABLED
        and conv_winograd.ENABLED  # the switch for every Winograd path
        and tuple(kernel) == (7, 7)
        and tuple(stride) == (1, 1)
        and max(padding) <= 6
        and tuple(dilation) == (1, 1)
        and groups == 1
        and min(channels, out_channels) >= MIN_CHANNELS
    )


def _plan(n, out_size, channels, itemsize):
    """(th, tw, chunks): the output's tile rows and columns, and chunks (n0, B, ty0, TR) whose two
    buffers of ``channels`` rows (the sum of both buffers' rows) fit ``BUDGET_BYTES``."""
    th, tw = -(-out_size[0] // 2), -(-out_size[1] // 2)
    tile_bytes = 64 * channels * itemsize
    return th, tw, conv_chunks.plan_chunks(n, th, tw * tile_bytes, BUDGET_BYTES)


def _segments(chunks, th):
    """The chunks cut into runs of neighbours, about ``SEGMENTS_PER_WORKER`` per worker thread.
    A cut inside an image (th tile rows) leaves 3 tile rows or more of it on both sides: a
    padded row lies in 4 tile rows, so that the rows where two segments meet (a seam,
    ``_grads``) are reached by those two segments only."""

    def may_cut(chunk, run):
        n0, _, ty0, _ = chunk
        first_image, _, first_row, _ = run[0]
        rows_above = ty0 - (first_row if first_image == n0 else 0)  # the run's, in image n0
        return ty0 == 0 or (rows_above >= 3 and th - ty0 >= 3)

    return conv_winograd.runs_of_chunks(chunks, SEGMENTS_PER_WORKER, may_cut)


_products = conv_winograd._products_here
"""out[k] = a[k] @ b[k] (or +=) for the 64 slices, in this worker thread (its BLAS has one
thread), in one GIL-free call: the 3x3 drivers' own."""


def _filter_transform(w):
    """U (64, O, C) = G w G^T for each filter (``conv_winograd.filter_transform_ref``)."""
    return conv_winograd.filter_transform_ref(w, F2_7X7)


def _padding_of(padding):
    ph, pw = padding
    if ph > 6 or pw > 6:  # the tiles read at most 6 columns of padding on either side
        raise ValueError(f"padding: at most 6 for a 7x7 Winograd convolution, got {padding}")
    return ph, pw


def conv2d_forward(x, w, padding, bias=None):
    """y (N, O, Ho, Wo) of a 7x7, stride-1, undilated convolution with zero padding
    ``padding`` = (ph, pw), Ho = H + 2 ph - 6 (the same for Wo)."""
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    (N, C, H, W), O = x.shape, w.shape[0]
    ph, pw = _padding_of(padding)
    Ho, Wo = H + 2 * ph - 6, W + 2 * pw - 6
    th, tw, chunks = _plan(N, (Ho, Wo), C + O, x.itemsize)
    segments = _segments(chunks, th)
    u = np.ascontiguousarray(_filter_transform(w))  # (64, O, C)
    y = np.empty((N, O, Ho, Wo), x.dtype)
    b = np.zeros(O, x.dtype) if bias is None else np.ascontiguousarray(bias, x.dtype)

    def do(buffers, j):
        for n0, B, ty0, TR in segments[j]:
            v, m = buffers.get(B, TR)
            tiles, P = (B, TR, tw), B * TR * tw
            input_transform(x, v, tiles, n0, ty0, ph, pw, 1)
            _products(u, conv_winograd._gemm_view(v, C, P), conv_winograd._gemm_view(m, O, P))
            output_transform(m, tiles, y, b, n0, ty0, 1)

    blas_threads.run_each(
        len(segments), conv_winograd._Buffers.for_workers(64, chunks, tw, C, O, x.dtype), do
    )
    return y


def _store_carry(dx, n, row, carry, ph, pw):
    """The unfinished rows a run of bands leaves in ``carry`` (C, 6, 2, tw + 3), padded rows
    row .. row + 5 of image n split by column parity, stored into dx (rows outside it
    dropped); the run below adds its partial rows onto them (``_join_seams``)."""
    C, _, _, half = carry.shape
    H, W = dx.shape[2:]
    rows = np.empty((C, 6, 2 * half), carry.dtype)
    rows[:, :, 0::2], rows[:, :, 1::2] = carry[:, :, 0], carry[:, :, 1]
    for j in range(6):
        if 0 <= row + j - ph < H:
            dx[n, :, row + j - ph] = rows[:, j, pw : pw + W]


def _join_seams(dx, seams, ph):
    """dx rows of every seam += the partial rows the run below it kept (rows outside dx
    dropped): seams are (image, first padded row, rows (C, 6, W))."""
    H = dx.shape[2]
    for n, row, partial in seams:
        for j in range(6):
            if 0 <= row + j - ph < H:
                dx[n, :, row + j - ph] += partial[:, j]


def conv2d_data_grad(dy, w, in_size, padding):
    """dx (N, C, H, W) of ``conv2d_forward`` from dy (N, O, Ho, Wo)."""
    return _grads(None, dy, w, in_size, padding, need_dw=False)[0]


def conv2d_weight_grad(x, dy, padding):
    """dw (O, C, 7, 7) of ``conv2d_forward`` from x (N, C, H, W) and dy (N, O, Ho, Wo)."""
    x, dy = np.ascontiguousarray(x), np.ascontiguousarray(dy)
    (N, C), (O, Ho, Wo) = x.shape[:2], dy.shape[1:]
    ph, pw = _padding_of(padding)
    th, tw, chunks = _plan(N, (Ho, Wo), C + O, x.itemsize)
    segments = _segments(chunks, th)
    partial_sums = []
    own_buffers = conv_winograd._Buffers.for_workers(64, chunks, tw, C, O, x.dtype)

    def begin():
        return own_buffers(), np.zeros((64, C, O), x.dtype)

    def do(state, j):
        buffers, s_t = state
        for n0, B, ty0, TR in segments[j]:
            v, z = buffers.get(B, TR)
            tiles, P = (B, TR, tw), B * TR * tw
            input_transform(x, v, tiles, n0, ty0, ph, pw, 1)
            output_transform_adjoint(dy, z, tiles, n0, ty0, 1)
            v_cp, z_op = conv_winograd._gemm_view(v, C, P), conv_winograd._gemm_view(z, O, P)
            _products(v_cp, z_op.transpose(0, 2, 1), s_t, accumulate=True)  # (C, P) @ (P, O)

    blas_threads.run_each(len(segments), begin, do, lambda state: partial_sums.append(state[1]))
    return conv_winograd._filter_transform_adjoint(sum(partial_sums[1:], partial_sums[0]), F2_7X7)


def conv2d_grads(x, dy, w, padding):
    """(dx, dw) of ``conv2d_forward`` in one pass: each chunk's output-gradient transform Z
    serves both products (as ``conv_winograd.conv2d_grads``)."""
    return _grads(x, dy, w, x.shape[2:], padding, need_dw=True)


def _grads(x, dy, w, in_size, padding, need_dw):
    """(dx, dw or None): per chunk the output-gradient transform Z, Q = U^T Z and its input
    transform adjoint into dx, and with ``need_dw`` the input transform V (in Q's buffer, once
    dx has been taken from it) and V Z^T summed into dw's transform.

    The data gradient's runs of bands (``_segments``). A band continues the one above it through
    a worker's ``carry`` (the 6 rows its tile rows have not finished). A run that ends inside an
    image stores those rows into dx as they are (``_store_carry``); the run below, which starts
    at tile row t0 of that image, lacks the tile rows above t0 for its padded rows 2 t0 ..
    2 t0 + 5 and keeps them in a seam of its own instead, added onto dx once every worker has
    finished (``_join_seams``). So no pixel is written by two threads."""
    dy, w = np.ascontiguousarray(dy), np.ascontiguousarray(w)
    x = None if x is None else np.ascontiguousarray(x)
    N, O, Ho, Wo = dy.shape
    C, (H, W) = w.shape[1], in_size
    ph, pw = _padding_of(padding)
    th, tw, chunks = _plan(N, (Ho, Wo), C + O, dy.itemsize)
    segments = _segments(chunks, th)
    ut = np.ascontiguousarray(_filter_transform(w).transpose(0, 2, 1))  # (64, C, O)
    dx = np.empty((N, C, H, W), dy.dtype)  # every pixel stored once (seams: added at the end)
    partial_sums, seams = [], []
    own_buffers = conv_winograd._Buffers.for_workers(64, chunks, tw, O, C, dy.dtype)
    no_seam = np.empty((1, 6, 1), dy.dtype)  # a run starting an image: never written

    def begin():
        carry = np.zeros((C, 6, 2, tw + 3), dy.dtype)
        return own_buffers(), carry, np.zeros((64, C, O), dy.dtype) if need_dw else None

    def do(state, j):
        buffers, carry, s_t = state
        n_first, _, t0, _ = segments[j][0]
        seam_end, seam = 0, no_seam
        if t0 > 0:  # starts inside image n_first: its first 6 padded rows go to a seam
            carry[:] = 0
            seam_end, seam = 2 * t0 + 6, np.empty((C, 6, W), dy.dtype)
            seams.append((n_first, 2 * t0, seam))
        for n0, B, ty0, TR in segments[j]:
            z, qv = buffers.get(B, TR)  # qv holds Q, then V (both C rows)
            tiles, P = (B, TR, tw), B * TR * tw
            z_op, qv_cp = conv_winograd._gemm_view(z, O, P), conv_winograd._gemm_view(qv, C, P)
            output_transform_adjoint(dy, z, tiles, n0, ty0, 1)
            _products(ut, z_op, qv_cp)  # (C, O) @ (O, P)
            in_seam = seam_end if n0 == n_first else 0
            input_transform_adjoint(qv, tiles, dx, n0, ty0, ph, pw, carry, in_seam, seam)
            if need_dw:
                input_transform(x, qv, tiles, n0, ty0, ph, pw, 1)
                _products(qv_cp, z_op.transpose(0, 2, 1), s_t, accumulate=True)  # (C, P) @ (P, O)
        n_last, _, ty_last, tr_last = segments[j][-1]
        if ty_last + tr_last < th:  # ends inside image n_last
            _store_carry(dx, n_last, 2 * (ty_last + tr_last), carry, ph, pw)

    blas_threads.run_each(len(segments), begin, do, lambda state: partial_sums.append(state[2]))
    _join_seams(dx, seams, ph)
    if not need_dw:
        return dx, None
    s_t = sum(partial_sums[1:], partial_sums[0])
    return dx, conv_winograd._filter_transform_adjoint(s_t, F2_7X7)

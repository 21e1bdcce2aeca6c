"""Winograd F(6x6, 3x3): the Numba transforms of the largest tile (ops/conv_winograd.py drives them).

Same algorithm as F(4x4, 3x3) in ops/conv_winograd_f4.py, with output tiles of 6x6 pixels read
from 8x8 input tiles, the Toom-Cook construction on the points 0, 1, -1, 2, -2, 1/2, -1/2 and
infinity (as NNPACK's float32 F(6x6, 3x3)):

    B^T = [[4,  0, -21,   0,  21,   0, -4, 0],     A^T = [[1, 1,  1,  1,   1,    1,     1, 0],
           [0, -4,  -4,  17,  17,  -4, -4, 0],            [0, 1, -1,  2,  -2,  1/2,  -1/2, 0],
           [0,  4,  -4, -17,  17,   4, -4, 0],            [0, 1,  1,  4,   4,  1/4,   1/4, 0],
           [0,  2,   1, -10,  -5,   8,  4, 0],            [0, 1, -1,  8,  -8,  1/8,  -1/8, 0],
           [0, -2,   1,  10,  -5,  -8,  4, 0],            [0, 1,  1, 16,  16, 1/16,  1/16, 0],
           [0,  4,   8,  -5, -10,   1,  2, 0],            [0, 1, -1, 32, -32, 1/32, -1/32, 1]]
           [0, -4,   8,   5, -10,  -1,  2, 0],
           [0, -4,   0,  21,   0, -21,  0, 4]]

    G = [[1/4, 0, 0], [1/18, 1/18, 1/18], [1/18, -1/18, 1/18], [1/360, 1/180, 1/90],
         [1/360, -1/180, 1/90], [16/45, 8/45, 4/45], [16/45, -8/45, 4/45], [0, 0, 1/4]]

(each row of B^T scaled to integers, its row of G divided by the same factor).

What the larger tile buys, per output pixel and (input, output) channel pair: 64/36 = 1.78
multiplications against F(4x4)'s 2.25 and the direct convolution's 9, and transformed tiles
64/36 = 1.78x the input's size against F(4x4)'s 2.25x, so the transforms move about 21% fewer
bytes. What it costs: the float32 error is 1.4-2x F(4x4)'s (8.6e-6 against 6.0e-6 and 1.1e-5
against 5.8e-6 of max |y| on two sets of 64-channel data; ``conv_winograd.error_bound`` states
it, the tests check it), and the 1-D transforms have 6-7 terms a row instead of 4, so the
transforms do more arithmetic per tile: they pay only in float32 (``K2``), and the tile only on
large problems (``conv_winograd.F6_MIN_PIXELS``). The points 1/2 and -1/2 keep the entries of
A^T at powers of two (exact in float32); the next points (3 or 1/4) would multiply the error.

The kernels are F(4x4)'s (see ops/conv_winograd_f4.py for the order of the passes and the
reasons) with 8 rows and columns per input tile and 6 per output tile; the 1-D transforms below
pair the rows of each matrix that differ only in the sign of their odd part.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from minisegnet.ops.conv_winograd_f4 import (
    _load_gradient_row,
    _padded_row,
    _plane_size,
    _store_input_gradient,
    _store_output_row,
    _subgrid,
)

BT = np.array(
    [
        [4, 0, -21, 0, 21, 0, -4, 0],
        [0, -4, -4, 17, 17, -4, -4, 0],
        [0, 4, -4, -17, 17, 4, -4, 0],
        [0, 2, 1, -10, -5, 8, 4, 0],
        [0, -2, 1, 10, -5, -8, 4, 0],
        [0, 4, 8, -5, -10, 1, 2, 0],
        [0, -4, 8, 5, -10, -1, 2, 0],
        [0, -4, 0, 21, 0, -21, 0, 4],
    ],
    np.float64,
)
G = np.array(
    [
        [1 / 4, 0, 0],
        [1 / 18, 1 / 18, 1 / 18],
        [1 / 18, -1 / 18, 1 / 18],
        [1 / 360, 1 / 180, 1 / 90],
        [1 / 360, -1 / 180, 1 / 90],
        [16 / 45, 8 / 45, 4 / 45],
        [16 / 45, -8 / 45, 4 / 45],
        [0, 0, 1 / 4],
    ],
    np.float64,
)
AT = np.array(
    [
        [1, 1, 1, 1, 1, 1, 1, 0],
        [0, 1, -1, 2, -2, 1 / 2, -1 / 2, 0],
        [0, 1, 1, 4, 4, 1 / 4, 1 / 4, 0],
        [0, 1, -1, 8, -8, 1 / 8, -1 / 8, 0],
        [0, 1, 1, 16, 16, 1 / 16, 1 / 16, 0],
        [0, 1, -1, 32, -32, 1 / 32, -1 / 32, 1],
    ],
    np.float64,
)

ROUNDINGS = 32
"""Roundings along one path besides the channel sum (for ``conv_winograd.error_bound``): input
transform 2 x 6 (a row of B^T has at most 6 non-zeros: 5 additions, and the products by 17, 21,
5 are not exact), filter transform 2 x 4 (1/18, 1/360, 16/45, ... rounded, one product, 2
additions), output transform 2 x 6 (a row of A^T has up to 7 non-zeros; the powers of two are
exact)."""


# ------------------------------------------------------------------------------------------------
# The 1-D transforms (inlined into every kernel)
# ------------------------------------------------------------------------------------------------


K2, K4, K5, K8, K10 = (np.float32(k) for k in (2, 4, 5, 8, 10))
K16, K17, K21, K32 = (np.float32(k) for k in (16, 17, 21, 32))
K1_2, K1_4, K1_8, K1_16, K1_32 = (np.float32(1 / k) for k in (2, 4, 8, 16, 32))
"""The transforms' entries as float32 constants (K17 is 17, K1_4 is 1/4): with Python literals
the float32 transforms ran in float64 (``conv_winograd_f4.K4`` says why and what it cost)."""


@njit(inline="always", cache=True)
def _bt(d0, d1, d2, d3, d4, d5, d6, d7):
    """B^T d: the input transform of 8 values (rows 1-2, 3-4, 5-6: even part +- odd part)."""
    e1, o1 = K17 * d4 - K4 * (d2 + d6), K17 * d3 - K4 * (d1 + d5)
    e3, o3 = d2 - K5 * d4 + K4 * d6, K2 * d1 - K10 * d3 + K8 * d5
    e5, o5 = K8 * d2 - K10 * d4 + K2 * d6, K4 * d1 - K5 * d3 + d5
    return (
        K4 * (d0 - d6) + K21 * (d4 - d2),
        e1 + o1,
        e1 - o1,
        e3 + o3,
        e3 - o3,
        e5 + o5,
        e5 - o5,
        K4 * (d7 - d1) + K21 * (d3 - d5),
    )


@njit(inline="always", cache=True)
def _b(q0, q1, q2, q3, q4, q5, q6, q7):
    """B q: the transpose of ``_bt`` (the data gradient's input transform adjoint)."""
    s1, t1 = q1 + q2, q1 - q2  # the pairs of rows of B^T, summed and subtracted
    s3, t3 = q3 + q4, q3 - q4
    s5, t5 = q5 + q6, q5 - q6
    return (
        K4 * q0,
        K4 * (t5 - t1 - q7) + K2 * t3,
        K8 * s5 + s3 - K4 * s1 - K21 * q0,
        K17 * t1 - K10 * t3 - K5 * t5 + K21 * q7,
        K21 * q0 + K17 * s1 - K5 * s3 - K10 * s5,
        K8 * t3 + t5 - K4 * t1 - K21 * q7,
        K4 * (s3 - s1 - q0) + K2 * s5,
        K4 * q7,
    )


@njit(inline="always", cache=True)
def _at(m0, m1, m2, m3, m4, m5, m6, m7):
    """A^T m: the output transform of 8 values (6 outputs)."""
    p, q = m1 + m2, m1 - m2
    r, s = m3 + m4, m3 - m4
    t, u = m5 + m6, m5 - m6
    return (
        m0 + p + r + t,
        q + K2 * s + K1_2 * u,
        p + K4 * r + K1_4 * t,
        q + K8 * s + K1_8 * u,
        p + K16 * r + K1_16 * t,
        q + K32 * s + K1_32 * u + m7,
    )


@njit(inline="always", cache=True)
def _a(a0, a1, a2, a3, a4, a5):
    """A a: the transpose of ``_at`` (the output gradient's transform, 6 values -> 8)."""
    even, odd = a0 + a2 + a4, a1 + a3 + a5
    even2, odd2 = a0 + K4 * a2 + K16 * a4, K2 * a1 + K8 * a3 + K32 * a5
    even_half, odd_half = a0 + K1_4 * a2 + K1_16 * a4, K1_2 * a1 + K1_8 * a3 + K1_32 * a5
    return (
        a0,
        even + odd,
        even - odd,
        even2 + odd2,
        even2 - odd2,
        even_half + odd_half,
        even_half - odd_half,
        a5,
    )


@njit(inline="always", cache=True)
def _eight_slices(flat, at, spacing, length):
    """The 8 views flat[at + k*spacing : ... + length], k < 8: one row of tiles of 8 slices of a
    transformed-tile buffer."""
    return (
        flat[at : at + length],
        flat[at + spacing : at + spacing + length],
        flat[at + 2 * spacing : at + 2 * spacing + length],
        flat[at + 3 * spacing : at + 3 * spacing + length],
        flat[at + 4 * spacing : at + 4 * spacing + length],
        flat[at + 5 * spacing : at + 5 * spacing + length],
        flat[at + 6 * spacing : at + 6 * spacing + length],
        flat[at + 7 * spacing : at + 7 * spacing + length],
    )


# ------------------------------------------------------------------------------------------------
# The four 2-D transforms, with ops/conv_winograd_f4.py's signatures and layouts
# ------------------------------------------------------------------------------------------------


@njit(parallel=True, nogil=True, cache=True)
def input_transform(x, v, tiles, n0, ty0, ph, pw, dilation):
    """x (N, C, H, W) -> v[k, c, p] = (B^T d B)[k // 8, k % 8] for every tile p of the chunk (one
    (image, channel) plane, or sub-grid, per iteration): columns first, as in F(4x4)."""
    _, C, H, W = x.shape
    B, TR, tw = tiles
    xf, vf = x.reshape(-1), v.reshape(-1)
    stride, P = v.shape[1], B * TR * tw
    wp = 6 * tw + 2
    for job in prange(C * B):
        c, b = job // B, job % B
        n, ra, rb = _subgrid(n0 + b, dilation)
        base = (n * C + c) * H * W
        d = np.empty((8, wp), x.dtype)  # the tile row's 8 padded input rows
        u = np.empty((8, wp), x.dtype)  # u = B^T d
        for r in range(TR):
            for i in range(8):
                iy = (6 * (ty0 + r) + i) * dilation + ra - ph
                _padded_row(xf, base, iy, H, W, pw - rb, dilation, d[i])
            d0, d1, d2, d3, d4, d5, d6, d7 = d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7]
            u0, u1, u2, u3, u4, u5, u6, u7 = u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7]
            for col in range(wp):
                u0[col], u1[col], u2[col], u3[col], u4[col], u5[col], u6[col], u7[col] = _bt(
                    d0[col], d1[col], d2[col], d3[col], d4[col], d5[col], d6[col], d7[col]
                )
            out = c * P + (b * TR + r) * tw
            for xi in range(8):
                row = u[xi]
                at = 8 * xi * stride + out
                v0, v1, v2, v3, v4, v5, v6, v7 = _eight_slices(vf, at, stride, tw)
                for tx in range(tw):
                    j = 6 * tx
                    v0[tx], v1[tx], v2[tx], v3[tx], v4[tx], v5[tx], v6[tx], v7[tx] = _bt(
                        row[j], row[j + 1], row[j + 2], row[j + 3],
                        row[j + 4], row[j + 5], row[j + 6], row[j + 7],
                    )  # fmt: skip


@njit(parallel=True, nogil=True, cache=True)
def output_transform(m, tiles, y, bias, n0, ty0, dilation):
    """m[k, o, p] -> y (N, O, Ho, Wo): the 6x6 tiles A^T M A + bias (O,), cut to the output (one
    (image, channel) plane, or sub-grid, per iteration): columns first, as in F(4x4)."""
    _, O, Ho, Wo = y.shape
    B, TR, tw = tiles
    mf, yf = m.reshape(-1), y.reshape(-1)
    stride, P = m.shape[1], B * TR * tw
    for job in prange(O * B):
        o, b = job // B, job % B
        n, ra, rb = _subgrid(n0 + b, dilation)
        rows_out = _plane_size(Ho, ra, dilation)  # this plane's output rows and columns
        cols_out = _plane_size(Wo, rb, dilation)
        s = np.empty((6, 8, tw), y.dtype)  # s[i, nu, tx] = (A^T M)[i, nu] of tile tx
        row = np.empty(6 * tw, y.dtype)
        add = bias[o]
        for r in range(TR):
            out = o * P + (b * TR + r) * tw
            for nu in range(8):
                at = nu * stride + out
                m0, m1, m2, m3, m4, m5, m6, m7 = _eight_slices(mf, at, 8 * stride, tw)
                s0, s1, s2, s3, s4, s5 = s[0, nu], s[1, nu], s[2, nu], s[3, nu], s[4, nu], s[5, nu]
                for tx in range(tw):
                    s0[tx], s1[tx], s2[tx], s3[tx], s4[tx], s5[tx] = _at(
                        m0[tx], m1[tx], m2[tx], m3[tx], m4[tx], m5[tx], m6[tx], m7[tx]
                    )
            oy = 6 * (ty0 + r)
            for i in range(min(6, rows_out - oy)):
                a0, a1, a2, a3 = s[i, 0], s[i, 1], s[i, 2], s[i, 3]
                a4, a5, a6, a7 = s[i, 4], s[i, 5], s[i, 6], s[i, 7]
                for tx in range(tw):
                    j = 6 * tx
                    row[j], row[j + 1], row[j + 2], row[j + 3], row[j + 4], row[j + 5] = _at(
                        a0[tx], a1[tx], a2[tx], a3[tx], a4[tx], a5[tx], a6[tx], a7[tx]
                    )
                dst = ((n * O + o) * Ho + (oy + i) * dilation + ra) * Wo + rb
                _store_output_row(yf, dst, row, add, cols_out, dilation)


@njit(parallel=True, nogil=True, cache=True)
def output_transform_adjoint(dy, z, tiles, n0, ty0, dilation):
    """dy (N, O, Ho, Wo) -> z[k, o, p] = (A dY A^T)[k // 8, k % 8] (dY read as 0 beyond the
    output; one (image, channel) plane, or sub-grid, per iteration), columns first."""
    _, O, Ho, Wo = dy.shape
    B, TR, tw = tiles
    df, zf = dy.reshape(-1), z.reshape(-1)
    stride, P = z.shape[1], B * TR * tw
    wt = 6 * tw
    for job in prange(O * B):
        o, b = job // B, job % B
        n, ra, rb = _subgrid(n0 + b, dilation)
        rows_in = _plane_size(Ho, ra, dilation)  # this plane's rows and columns of dy
        cols_in = _plane_size(Wo, rb, dilation)
        a = np.zeros((6, wt), dy.dtype)  # the tile row's 6 output-gradient rows, 0-extended
        u = np.empty((8, wt), dy.dtype)  # u = A dY
        for r in range(TR):
            oy = 6 * (ty0 + r)
            for i in range(6):
                if oy + i < rows_in:
                    row0 = ((n * O + o) * Ho + (oy + i) * dilation + ra) * Wo + rb
                    _load_gradient_row(df, row0, a[i], cols_in, dilation)
                else:
                    a[i, :] = 0
            a0, a1, a2, a3, a4, a5 = a[0], a[1], a[2], a[3], a[4], a[5]
            u0, u1, u2, u3, u4, u5, u6, u7 = u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7]
            for col in range(wt):
                u0[col], u1[col], u2[col], u3[col], u4[col], u5[col], u6[col], u7[col] = _a(
                    a0[col], a1[col], a2[col], a3[col], a4[col], a5[col]
                )
            out = o * P + (b * TR + r) * tw
            for xi in range(8):
                row = u[xi]
                at = 8 * xi * stride + out
                z0, z1, z2, z3, z4, z5, z6, z7 = _eight_slices(zf, at, stride, tw)
                for tx in range(tw):
                    j = 6 * tx
                    z0[tx], z1[tx], z2[tx], z3[tx], z4[tx], z5[tx], z6[tx], z7[tx] = _a(
                        row[j], row[j + 1], row[j + 2], row[j + 3], row[j + 4], row[j + 5]
                    )


@njit(parallel=True, nogil=True, cache=True)
def input_transform_adjoint(q, tiles, dx, n0, ty0, ph, pw, dilation):
    """q[k, c, p] -> dx (N, C, H, W): the sum of B Q B^T over the 8x8 tiles (padding dropped);
    one (image, channel) plane, or sub-grid, per iteration, its tile rows in order. As in
    F(4x4): the rows kept by phase (e[xi, s, t] = column 6t + s), the 2 overlapping columns
    added onto the next tile, the 2 overlapping rows carried into the next tile row, each
    pixel of dx stored once except the first 2 rows of a band below the first (added)."""
    _, C, H, W = dx.shape
    B, TR, tw = tiles
    qf, xf = q.reshape(-1), dx.reshape(-1)
    stride, P = q.shape[1], B * TR * tw
    nt = tw + 1
    for job in prange(C * B):
        c, b = job // B, job % B
        n, ra, rb = _subgrid(n0 + b, dilation)
        base = (n * C + c) * H * W
        placement = (ra, ph, pw - rb)  # where the plane lies in dx (_store_input_gradient)
        e = np.zeros((8, 6, nt), dx.dtype)  # e[xi, s, t]: column 6t + s of (Q B^T)[xi], summed
        g = np.empty((8, 6, nt), dx.dtype)  # g = B e
        carry = np.zeros((2, 6, nt), dx.dtype)  # rows 6, 7 of the previous tile row
        t6 = np.zeros(nt, dx.dtype)  # columns 6, 7 of tile t - 1, at t
        t7 = np.zeros(nt, dx.dtype)
        for r in range(TR):
            out = c * P + (b * TR + r) * tw
            for xi in range(8):
                at = 8 * xi * stride + out
                q0, q1, q2, q3, q4, q5, q6, q7 = _eight_slices(qf, at, stride, tw)
                e0, e1, e2, e3, e4, e5 = e[xi, 0], e[xi, 1], e[xi, 2], e[xi, 3], e[xi, 4], e[xi, 5]
                for tx in range(tw):
                    e0[tx], e1[tx], e2[tx], e3[tx], e4[tx], e5[tx], t6[tx + 1], t7[tx + 1] = _b(
                        q0[tx], q1[tx], q2[tx], q3[tx], q4[tx], q5[tx], q6[tx], q7[tx]
                    )
                e0[tw] = 0
                e1[tw] = 0
                e2[tw] = 0
                e3[tw] = 0
                e4[tw] = 0
                e5[tw] = 0
                for t in range(nt):  # columns 6 and 7 of tile t - 1 are columns 0 and 1 of tile t
                    e0[t] += t6[t]
                    e1[t] += t7[t]
            for s in range(6):
                e0, e1, e2, e3 = e[0, s], e[1, s], e[2, s], e[3, s]
                e4, e5, e6, e7 = e[4, s], e[5, s], e[6, s], e[7, s]
                g0, g1, g2, g3 = g[0, s], g[1, s], g[2, s], g[3, s]
                g4, g5, g6, g7 = g[4, s], g[5, s], g[6, s], g[7, s]
                c0, c1 = carry[0, s], carry[1, s]
                for t in range(nt):
                    g0[t], g1[t], g2[t], g3[t], g4[t], g5[t], g6[t], g7[t] = _b(
                        e0[t], e1[t], e2[t], e3[t], e4[t], e5[t], e6[t], e7[t]
                    )
                    g0[t] += c0[t]
                    g1[t] += c1[t]
            last = r == TR - 1
            rows = 8 if last else 6  # the last 2 rows are the next tile row's first 2
            add_first = r == 0 and ty0 > 0
            first_row = 6 * (ty0 + r)
            _store_input_gradient(
                xf, g, rows, first_row, base, (H, W), placement, dilation, add_first
            )
            carry[0] = g[6]
            carry[1] = g[7]

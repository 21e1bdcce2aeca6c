"""Winograd F(4x4, 3x3): the Numba transforms of the larger tile (ops/conv_winograd.py drives them).

Same algorithm as F(2x2, 3x3) in ops/conv_winograd.py, with output tiles of 4x4 pixels read
from 6x6 input tiles (Lavin & Gray, 2016):

    B^T = [[4,  0, -5,  0, 1, 0],    G = [[ 1/4,     0,    0],    A^T = [[1, 1,  1, 1,  1, 0],
           [0, -4, -4,  1, 1, 0],         [-1/6,  -1/6, -1/6],           [0, 1, -1, 2, -2, 0],
           [0,  4, -4, -1, 1, 0],         [-1/6,   1/6, -1/6],           [0, 1,  1, 4,  4, 0],
           [0, -2, -1,  2, 1, 0],         [1/24,  1/12,  1/6],           [0, 1, -1, 8, -8, 1]]
           [0,  2, -1, -2, 1, 0],         [1/24, -1/12,  1/6],
           [0,  4,  0, -5, 0, 1]]         [   0,     0,    1]]

    Y = A^T [ (G g G^T) * (B^T d B) ] A          (36 multiplications for 16 outputs)

What the larger tile buys, per output pixel and (input, output) channel pair: 36/16 = 2.25
multiplications against F(2x2)'s 16/4 = 4 and the direct convolution's 9, and transformed
tiles 36/16 = 2.25x the input's size against F(2x2)'s 16/4 = 4x, so the transforms, which
only move data, move 44% fewer bytes. What it costs: the transforms' entries reach 8 and
1/24, so the float32 error grows (``conv_winograd.error_bound`` states it for both tiles; the
tests check it), and each tile needs about 3x the additions (still far below the products).

Each 2-D transform is two passes of a 1-D one, over the rows and then the columns of the tile
(M B = (B^T M^T)^T): ``_bt`` is one B^T product, ``_b`` its transpose (for the data gradient),
``_at`` one A^T product, ``_a`` its transpose. The NumPy definitions of the four 2-D transforms
are ``conv_winograd``'s reference functions called with ``conv_winograd.F4``; the buffers, the
36 products and the chunks are the drivers', shared with F(2x2). Layout of the transformed
tiles: 36 slices k = 6 xi + nu, each a (channels, tiles) or (tiles, channels) matrix as in
ops/conv_winograd.py.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

BT = np.array(
    [
        [4, 0, -5, 0, 1, 0],
        [0, -4, -4, 1, 1, 0],
        [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0],
        [0, 2, -1, -2, 1, 0],
        [0, 4, 0, -5, 0, 1],
    ],
    np.float64,
)
G = np.array(
    [
        [1 / 4, 0, 0],
        [-1 / 6, -1 / 6, -1 / 6],
        [-1 / 6, 1 / 6, -1 / 6],
        [1 / 24, 1 / 12, 1 / 6],
        [1 / 24, -1 / 12, 1 / 6],
        [0, 0, 1],
    ],
    np.float64,
)
AT = np.array(
    [[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]],
    np.float64,
)

ROUNDINGS = 24
"""Roundings along one path besides the channel sum (for ``conv_winograd.error_bound``): input
transform 2 x 4 (a row of B^T has at most 4 non-zeros: 3 additions, and the product by 5 is not
exact), filter transform 2 x 4 (1/6, 1/12, 1/24 rounded, one product, 2 additions), output
transform 2 x 4 (4 additions; 2, 4 and 8 are exact)."""


# ------------------------------------------------------------------------------------------------
# The 1-D transforms (inlined into every kernel)
# ------------------------------------------------------------------------------------------------


K2, K4, K5, K8 = np.float32(2), np.float32(4), np.float32(5), np.float32(8)
"""The transforms' entries as float32 constants (K4 is 4). Numba types a literal ``4`` as int64
(and ``0.5`` as float64) and int64 * float32 as float64, so ``4 * d0`` on float32 data
converted every operand to float64, multiplied there and converted back; with float32
constants the transforms stay in float32 (and in float64 on float64 data). Measured on one
chunk of the benchmark case (half an image of 8x64x128x128, median of 15 interleaved calls,
float64 -> float32 arithmetic): input transform 1.31 -> 1.23 ms, output transform 0.31 ->
0.26, input transform adjoint 0.60 -> 0.52, output transform adjoint unchanged (1.0); for
F(6x6), whose rows have more and larger entries, it made the difference between a slower
and a faster tile (ops/conv_winograd.py)."""


@njit(inline="always", cache=True)
def _bt(d0, d1, d2, d3, d4, d5):
    """B^T d: the input transform of 6 values."""
    return (
        K4 * d0 - K5 * d2 + d4,
        d3 + d4 - K4 * (d1 + d2),
        d4 - d3 + K4 * (d1 - d2),
        d4 - d2 + K2 * (d3 - d1),
        d4 - d2 + K2 * (d1 - d3),
        K4 * d1 - K5 * d3 + d5,
    )


@njit(inline="always", cache=True)
def _b(q0, q1, q2, q3, q4, q5):
    """B q: the transpose of ``_bt`` (the data gradient's input transform adjoint)."""
    return (
        K4 * q0,
        K4 * (q2 - q1) + K2 * (q4 - q3) + K4 * q5,
        -K5 * q0 - K4 * (q1 + q2) - q3 - q4,
        q1 - q2 + K2 * (q3 - q4) - K5 * q5,
        q0 + q1 + q2 + q3 + q4,
        q5,
    )


@njit(inline="always", cache=True)
def _at(m0, m1, m2, m3, m4, m5):
    """A^T m: the output transform of 6 values (4 outputs)."""
    p, q = m1 + m2, m1 - m2
    r, s = m3 + m4, m3 - m4
    return m0 + p + r, q + K2 * s, p + K4 * r, q + K8 * s + m5


@njit(inline="always", cache=True)
def _a(a0, a1, a2, a3):
    """A a: the transpose of ``_at`` (the output gradient's transform, 4 values -> 6)."""
    even, odd = a0 + a2, a1 + a3
    even4, odd2 = a0 + K4 * a2, K2 * a1 + K8 * a3
    return a0, even + odd, even - odd, even4 + odd2, even4 - odd2, a3


@njit(inline="always", cache=True)
def _six_slices(flat, at, spacing, length):
    """The 6 views flat[at + k*spacing : ... + length], k < 6: one row of tiles of 6 slices of a
    transformed-tile buffer."""
    return (
        flat[at : at + length],
        flat[at + spacing : at + spacing + length],
        flat[at + 2 * spacing : at + 2 * spacing + length],
        flat[at + 3 * spacing : at + 3 * spacing + length],
        flat[at + 4 * spacing : at + 4 * spacing + length],
        flat[at + 5 * spacing : at + 5 * spacing + length],
    )


# ------------------------------------------------------------------------------------------------
# The four 2-D transforms, with ops/conv_winograd.py's signatures and layouts
# ------------------------------------------------------------------------------------------------


@njit(inline="always", cache=True)
def _subgrid(image, dilation):
    """(n, ra, rb) of plane ``image`` of a convolution with dilation d: the kernels take a
    dilated convolution as d*d undilated ones on the sub-grids of the padded input
    (ops/conv_winograd_dilated.py), plane n*d*d + ra*d + rb reading the rows ra, ra + d, ...
    and the columns rb, rb + d, ... of image n (and writing those of its output). The d*d
    planes of one image are neighbours, so a chunk of planes touches few images. d = 1: the
    image itself, (image, 0, 0)."""
    per_image = dilation * dilation
    s = image % per_image
    return image // per_image, s // dilation, s % dilation


@njit(cache=True)
def _padded_row(x, base, iy, h, w, left, dilation, row):
    """row[k] = x[iy, k*d - left] (0 outside the image), for k < len(row): a row of the input
    padded by ``left`` columns (d = 1), or of one of its sub-grids (d > 1, left = the padding
    minus the sub-grid's column residue)."""
    n_cols = row.shape[0]
    if iy < 0 or iy >= h:
        row[:] = 0
        return
    lo = min(n_cols, max(0, -(-left // dilation)))  # first k with k*d - left >= 0
    hi = max(lo, min(n_cols, (w - 1 + left) // dilation + 1))  # past the last with < w
    row[:lo] = 0
    src = base + iy * w - left
    if dilation == 1:  # contiguous: the loop vectorises
        for k in range(lo, hi):
            row[k] = x[src + k]
    else:
        for k in range(lo, hi):
            row[k] = x[src + k * dilation]
    row[hi:] = 0


@njit(inline="always", cache=True)
def _plane_size(size, residue, dilation):
    """Rows (or columns) of an output of ``size`` that one plane covers: those at residue,
    residue + d, ... (all of them for d = 1)."""
    return (size - residue + dilation - 1) // dilation


@njit(inline="always", cache=True)
def _store_output_row(yf, dst, row, add, width, dilation):
    """yf[dst + col*d] = row[col] + add for col < width: one output row of a plane."""
    if dilation == 1:  # contiguous: the loop vectorises
        for col in range(width):
            yf[dst + col] = row[col] + add
    else:
        for col in range(width):
            yf[dst + col * dilation] = row[col] + add


@njit(inline="always", cache=True)
def _load_gradient_row(df, src, row, width, dilation):
    """row[col] = df[src + col*d] for col < width: one output-gradient row of a plane."""
    if dilation == 1:
        row[:width] = df[src : src + width]
    else:
        for col in range(width):
            row[col] = df[src + col * dilation]


@njit(inline="always", cache=True)
def _store_input_gradient(xf, g, rows, first_row, base, shape, placement, dilation, add_first):
    """Rows i < ``rows`` of one tile row of the input transform adjoint, kept by phase
    (g[i, s, t] = plane column m t + s, m = g.shape[1]), stored into dx: plane row first_row + i
    is row (first_row + i) d + ra - ph of dx and plane column k its column k d - left, where
    placement = (ra, ph, left); rows and columns outside dx are dropped. The first two rows are
    added instead of stored when ``add_first`` (the previous band stored them)."""
    H, W = shape
    ra, ph, left = placement
    m, nt = g.shape[1], g.shape[2]
    k_lo = max(0, -(-left // dilation))  # the plane's first and last column inside dx
    k_last = (W - 1 + left) // dilation
    step = m * dilation
    for i in range(rows):
        iy = (first_row + i) * dilation + ra - ph
        if 0 <= iy < H:
            dst = base + iy * W - left
            add = add_first and i < 2
            for s in range(m):
                gi = g[i, s]
                t_lo = max(0, -((s - k_lo) // m))  # first t with m t + s >= k_lo
                t_hi = min(nt, (k_last - s) // m + 1)  # past the last with <= k_last
                at = dst + s * dilation
                if add:
                    for t in range(t_lo, t_hi):
                        xf[at + step * t] += gi[t]
                else:
                    for t in range(t_lo, t_hi):
                        xf[at + step * t] = gi[t]


@njit(parallel=True, nogil=True, cache=True)
def input_transform(x, v, tiles, n0, ty0, ph, pw, dilation):
    """x (N, C, H, W) -> v[k, c, p] = (B^T d B)[k // 6, k % 6] for every tile p of the chunk
    (one (image, channel) plane per iteration, tiles contiguous; with dilation d the planes
    are the sub-grids of ``_subgrid``, d*d per image).

    Columns first, over the whole row of tiles: u = B^T d combines the 6 input rows pixel by
    pixel (contiguous, vectorised), then each tile's 6 columns of u give its 6 values of u B,
    stored contiguously along the tiles. Per tile (B^T d) B, the other order, ran 2x slower."""
    _, C, H, W = x.shape
    B, TR, tw = tiles
    xf, vf = x.reshape(-1), v.reshape(-1)
    stride, P = v.shape[1], B * TR * tw
    wp = 4 * tw + 2
    for job in prange(C * B):
        c, b = job // B, job % B
        n, ra, rb = _subgrid(n0 + b, dilation)
        base = (n * C + c) * H * W
        d = np.empty((6, wp), x.dtype)  # the tile row's 6 padded input rows
        u = np.empty((6, wp), x.dtype)  # u = B^T d
        for r in range(TR):
            for i in range(6):
                iy = (4 * (ty0 + r) + i) * dilation + ra - ph
                _padded_row(xf, base, iy, H, W, pw - rb, dilation, d[i])
            d0, d1, d2, d3, d4, d5 = d[0], d[1], d[2], d[3], d[4], d[5]
            u0, u1, u2, u3, u4, u5 = u[0], u[1], u[2], u[3], u[4], u[5]
            for col in range(wp):
                u0[col], u1[col], u2[col], u3[col], u4[col], u5[col] = _bt(
                    d0[col], d1[col], d2[col], d3[col], d4[col], d5[col]
                )
            out = c * P + (b * TR + r) * tw
            for xi in range(6):
                row = u[xi]
                at = 6 * xi * stride + out
                v0, v1, v2, v3, v4, v5 = _six_slices(vf, at, stride, tw)
                for tx in range(tw):
                    j = 4 * tx
                    v0[tx], v1[tx], v2[tx], v3[tx], v4[tx], v5[tx] = _bt(
                        row[j], row[j + 1], row[j + 2], row[j + 3], row[j + 4], row[j + 5]
                    )


@njit(parallel=True, nogil=True, cache=True)
def output_transform(m, tiles, y, bias, n0, ty0, dilation):
    """m[k, o, p] -> y (N, O, Ho, Wo): the 4x4 tiles A^T M A + bias (O,), cut to the output
    (one (image, channel) plane per iteration; with dilation d, one sub-grid of the output, whose
    pixels are d apart). Columns first, as ``input_transform``: s = A^T M
    combines the 6 slices of each column of M, contiguous along the tiles, then each tile's row
    of s gives its 4 output pixels."""
    _, O, Ho, Wo = y.shape
    B, TR, tw = tiles
    mf, yf = m.reshape(-1), y.reshape(-1)
    stride, P = m.shape[1], B * TR * tw
    for job in prange(O * B):
        o, b = job // B, job % B
        n, ra, rb = _subgrid(n0 + b, dilation)
        rows_out = _plane_size(Ho, ra, dilation)  # this plane's output rows and columns
        cols_out = _plane_size(Wo, rb, dilation)
        s = np.empty((4, 6, tw), y.dtype)  # s[i, nu, tx] = (A^T M)[i, nu] of tile tx
        row = np.empty(4 * tw, y.dtype)
        add = bias[o]
        for r in range(TR):
            out = o * P + (b * TR + r) * tw
            for nu in range(6):
                at = nu * stride + out
                m0, m1, m2, m3, m4, m5 = _six_slices(mf, at, 6 * stride, tw)
                s0, s1, s2, s3 = s[0, nu], s[1, nu], s[2, nu], s[3, nu]
                for tx in range(tw):
                    s0[tx], s1[tx], s2[tx], s3[tx] = _at(
                        m0[tx], m1[tx], m2[tx], m3[tx], m4[tx], m5[tx]
                    )
            oy = 4 * (ty0 + r)
            for i in range(min(4, rows_out - oy)):
                a0, a1, a2, a3, a4, a5 = s[i, 0], s[i, 1], s[i, 2], s[i, 3], s[i, 4], s[i, 5]
                for tx in range(tw):
                    j = 4 * tx
                    row[j], row[j + 1], row[j + 2], row[j + 3] = _at(
                        a0[tx], a1[tx], a2[tx], a3[tx], a4[tx], a5[tx]
                    )
                dst = ((n * O + o) * Ho + (oy + i) * dilation + ra) * Wo + rb
                _store_output_row(yf, dst, row, add, cols_out, dilation)


@njit(parallel=True, nogil=True, cache=True)
def output_transform_adjoint(dy, z, tiles, n0, ty0, dilation):
    """dy (N, O, Ho, Wo) -> z[k, o, p] = (A dY A^T)[k // 6, k % 6] (dY read as 0 beyond the
    output; one (image, channel) plane per iteration, or with dilation d one sub-grid of it,
    as ``output_transform`` writes them). Columns first: u = A dY from the 4
    output-gradient rows pixel by pixel, then each tile's 4 columns of u give its 6 values of
    u A^T, stored contiguously along the tiles."""
    _, O, Ho, Wo = dy.shape
    B, TR, tw = tiles
    df, zf = dy.reshape(-1), z.reshape(-1)
    stride, P = z.shape[1], B * TR * tw
    wt = 4 * tw
    for job in prange(O * B):
        o, b = job // B, job % B
        n, ra, rb = _subgrid(n0 + b, dilation)
        rows_in = _plane_size(Ho, ra, dilation)  # this plane's rows and columns of dy
        cols_in = _plane_size(Wo, rb, dilation)
        a = np.zeros((4, wt), dy.dtype)  # the tile row's 4 output-gradient rows, 0-extended
        u = np.empty((6, wt), dy.dtype)  # u = A dY
        for r in range(TR):
            oy = 4 * (ty0 + r)
            for i in range(4):
                if oy + i < rows_in:
                    row0 = ((n * O + o) * Ho + (oy + i) * dilation + ra) * Wo + rb
                    _load_gradient_row(df, row0, a[i], cols_in, dilation)
                else:
                    a[i, :] = 0
            a0, a1, a2, a3 = a[0], a[1], a[2], a[3]
            u0, u1, u2, u3, u4, u5 = u[0], u[1], u[2], u[3], u[4], u[5]
            for col in range(wt):
                u0[col], u1[col], u2[col], u3[col], u4[col], u5[col] = _a(
                    a0[col], a1[col], a2[col], a3[col]
                )
            out = o * P + (b * TR + r) * tw
            for xi in range(6):
                row = u[xi]
                at = 6 * xi * stride + out
                z0, z1, z2, z3, z4, z5 = _six_slices(zf, at, stride, tw)
                for tx in range(tw):
                    j = 4 * tx
                    z0[tx], z1[tx], z2[tx], z3[tx], z4[tx], z5[tx] = _a(
                        row[j], row[j + 1], row[j + 2], row[j + 3]
                    )


@njit(parallel=True, nogil=True, cache=True)
def input_transform_adjoint(q, tiles, dx, n0, ty0, ph, pw, dilation):
    """q[k, c, p] -> dx (N, C, H, W): the sum of B Q B^T over the 6x6 tiles (padding dropped);
    one (image, channel) plane per iteration, its tile rows in order (with dilation d, one
    sub-grid of it: the sub-grids of an image share no pixel, so each is still stored once).

    Rows first: each tile's rows Q[xi] give B Q[xi] (6 columns), and the tiles of a tile row
    overlap by 2 columns, so columns 4 and 5 of tile t are added onto columns 0 and 1 of tile
    t + 1. The row is kept by phase, e[xi, s, t] = column 4t + s, so that every loop reads and
    writes contiguously (stored interleaved, 4t + s, the same loop ran 1.6x slower); then B
    combines the 6 rows pixel by pixel into the tile row's 6 rows of dx. Tile rows overlap by
    2 rows: the last 2 are carried into the next tile row, so each row of dx is stored once
    (``=``: dx need not be zeroed first) -- except the first 2 rows of a band that starts
    below the image's first tile row (ty0 > 0), which the previous band stored: added."""
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
        e = np.zeros((6, 4, nt), dx.dtype)  # e[xi, s, t]: column 4t + s of (Q B^T)[xi], summed
        g = np.empty((6, 4, nt), dx.dtype)  # g = B e
        carry = np.zeros((2, 4, nt), dx.dtype)  # rows 4, 5 of the previous tile row
        t4 = np.zeros(nt, dx.dtype)  # columns 4, 5 of tile t - 1, at t
        t5 = np.zeros(nt, dx.dtype)
        for r in range(TR):
            out = c * P + (b * TR + r) * tw
            for xi in range(6):
                at = 6 * xi * stride + out
                q0, q1, q2, q3, q4, q5 = _six_slices(qf, at, stride, tw)
                e0, e1, e2, e3 = e[xi, 0], e[xi, 1], e[xi, 2], e[xi, 3]
                for tx in range(tw):
                    e0[tx], e1[tx], e2[tx], e3[tx], t4[tx + 1], t5[tx + 1] = _b(
                        q0[tx], q1[tx], q2[tx], q3[tx], q4[tx], q5[tx]
                    )
                e0[tw] = 0
                e1[tw] = 0
                e2[tw] = 0
                e3[tw] = 0
                for t in range(nt):  # columns 4 and 5 of tile t - 1 are columns 0 and 1 of tile t
                    e0[t] += t4[t]
                    e1[t] += t5[t]
            for s in range(4):
                e0, e1, e2, e3, e4, e5 = e[0, s], e[1, s], e[2, s], e[3, s], e[4, s], e[5, s]
                g0, g1, g2, g3, g4, g5 = g[0, s], g[1, s], g[2, s], g[3, s], g[4, s], g[5, s]
                c0, c1 = carry[0, s], carry[1, s]
                for t in range(nt):
                    g0[t], g1[t], g2[t], g3[t], g4[t], g5[t] = _b(
                        e0[t], e1[t], e2[t], e3[t], e4[t], e5[t]
                    )
                    g0[t] += c0[t]
                    g1[t] += c1[t]
            last = r == TR - 1
            rows = 6 if last else 4  # the last 2 rows are the next tile row's first 2
            add_first = r == 0 and ty0 > 0
            first_row = 4 * (ty0 + r)
            _store_input_gradient(
                xf, g, rows, first_row, base, (H, W), placement, dilation, add_first
            )
            carry[0] = g[4]
            carry[1] = g[5]

"""Dilated 3x3 convolutions through Winograd, on the dilated sub-grids (space-to-batch).

With dilation d (the same along both axes) and stride 1, output pixel (oy, ox) reads the padded
input at rows oy + d*ky and columns ox + d*kx only, which all have the residues a = oy mod d and
b = ox mod d. So the d*d sub-grids of the padded input,

    x_ab[n, c, i, j] = x_pad[n, c, i*d + a, j*d + b]

are independent undilated problems: y[n, o, i*d + a, j*d + b] = conv3x3(x_ab, w)[n, o, i, j]
(no padding: it is already in x_pad). Stacked along the batch axis, the d*d sub-grids make one
(d*d*N, C, Hs, Ws) input for ``conv_winograd`` (Hs = ceil((H + 2 ph) / d); x_pad is extended
with zeros to a multiple of d, which only adds output rows that are cut off). The gradients are
the same rearrangement around conv_winograd's gradients:

    dx_pad = batch-to-space(data_grad(space-to-batch(dy)))[cut to the padded input],
    dw     = weight_grad(space-to-batch(x_pad), space-to-batch(dy)).

``ops/conv_winograd.py`` composes these rearrangements around its undilated products (this file
only moves data, and imports nothing of the package). Cost beyond the undilated path: copies of
the input into the sub-grids and of the output back (memory traffic about twice the input's),
against a product 2.25x smaller than the direct convolution's. Used for dilation (d, d) with
d > 1 when ``conv_winograd.DILATED`` is on.

Two implementations. The NumPy functions (``space_to_batch`` and the four named rearrangements
built on it) are the definitions: a reshape and a 6-axis transpose, read top to bottom. The
drivers call the Numba versions (``gather_subgrids``, ``scatter_subgrids``), which do the same
copy in one pass, one (image, channel) plane per parallel iteration, with the zero padding and
the crop folded into the index arithmetic instead of separate padded or cropped arrays. What
that buys, measured on the 2-core machine (8x64x128x128, dilation 2, padding 2, min of 7, ms,
NumPy -> Numba; a plain copy of the input takes 6): input sub-grids 24 -> 9, output gradient
sub-grids 22 -> 6.5, output from sub-grids 21 -> 6, input gradient from sub-grids 30 -> 6. Forward
+ both gradients of the dilated 3x3 64->64 convolution, interleaved with PyTorch in one process:
351 -> 271 ms against PyTorch's 158 (2.22x -> 1.71x); the undilated one takes 213 on the same
machine, so the copies now cost about a quarter of the product instead of two thirds.

The third step: no copies at all. F4's transforms (ops/conv_winograd_f4.py) read each sub-grid
straight from x and write straight into y and dx, with the residues and the stride d in their
index arithmetic (``conv_winograd_f4._subgrid``); the copies above remain F2's route and the
reference the in-place planes are tested against (183-189 -> 155-157 ms on the case above,
``conv_winograd._copies_subgrids``). The planes are ordered image-major there (n*d*d + ra*d + rb),
not sub-grid-major as here, so that one chunk of planes reads few images.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


def _grid(size, padding, d):
    """Sub-grid side Hs and the zero-extended padded side Hs * d."""
    hs = -(-(size + 2 * padding) // d)
    return hs, hs * d


def space_to_batch(a, d):
    """a (N, C, Hq, Wq) with Hq, Wq multiples of d -> (d*d*N, C, Hq/d, Wq/d), sub-grid (a, b)
    at batch block a*d + b."""
    n, c, hq, wq = a.shape
    s = a.reshape(n, c, hq // d, d, wq // d, d).transpose(3, 5, 0, 1, 2, 4)
    return np.ascontiguousarray(s).reshape(d * d * n, c, hq // d, wq // d)


def batch_to_space(s, d, n):
    """The inverse of ``space_to_batch``: (d*d*N, C, Hs, Ws) -> (N, C, Hs*d, Ws*d)."""
    _, c, hs, ws = s.shape
    a = s.reshape(d, d, n, c, hs, ws).transpose(2, 3, 4, 0, 5, 1)
    return a.reshape(n, c, hs * d, ws * d)


def input_subgrids(x, padding, d):
    """x (N, C, H, W) -> its padded input's d*d sub-grids (d*d*N, C, Hs, Ws)."""
    n, c, h, w = x.shape
    (ph, pw) = padding
    (_, hq), (_, wq) = _grid(h, ph, d), _grid(w, pw, d)
    x_pad = np.zeros((n, c, hq, wq), x.dtype)
    x_pad[:, :, ph : ph + h, pw : pw + w] = x
    return space_to_batch(x_pad, d)


def subgrid_size(in_size, padding, d):
    """(Hs, Ws): the size of each sub-grid of the padded input."""
    return _grid(in_size[0], padding[0], d)[0], _grid(in_size[1], padding[1], d)[0]


def output_grad_subgrids(dy, in_size, padding, d):
    """dy (N, O, Ho, Wo) -> (d*d*N, O, Hs - 2, Ws - 2): the gradient of each sub-grid's output
    (zero on the rows and columns the extension to a multiple of d added)."""
    n, o, ho, wo = dy.shape
    hs, ws = subgrid_size(in_size, padding, d)
    full = np.zeros((n, o, (hs - 2) * d, (ws - 2) * d), dy.dtype)
    full[:, :, :ho, :wo] = dy
    return space_to_batch(full, d)


def output_from_subgrids(y_sub, d, n, out_size):
    """The sub-grids' outputs (d*d*N, O, Hs - 2, Ws - 2) -> y (N, O, Ho, Wo)."""
    ho, wo = out_size
    return np.ascontiguousarray(batch_to_space(y_sub, d, n)[:, :, :ho, :wo])


def input_grad_from_subgrids(dx_sub, d, n, in_size, padding):
    """The sub-grids' input gradients (d*d*N, C, Hs, Ws) -> dx (N, C, H, W): the padding cut off."""
    (h, w), (ph, pw) = in_size, padding
    dx_pad = batch_to_space(dx_sub, d, n)
    return np.ascontiguousarray(dx_pad[:, :, ph : ph + h, pw : pw + w])


# ------------------------------------------------------------------------------------------------
# Numba versions: the same copies in one parallel pass (what the drivers call)
# ------------------------------------------------------------------------------------------------


@njit(parallel=True, cache=True)
def _gather_kernel(a, out, top, left, d, rows, cols):
    """out[(ra*d + rb)*N + n, c, i, j] = a[n, c, i*d + ra - top, j*d + rb - left], 0 where that
    falls outside a's first ``rows`` rows and ``cols`` columns."""
    n_img, ch = a.shape[:2]
    hs, ws = out.shape[2:]
    for job in prange(d * d * n_img * ch):
        s, c = job // ch, job % ch
        ra, rb, n = s // (d * n_img), (s // n_img) % d, s % n_img
        # columns j with 0 <= j*d + rb - left < cols: j_lo <= j < j_hi (no test per pixel)
        j_lo = min(ws, max(0, -((rb - left) // d)))
        j_hi = max(j_lo, min(ws, (cols - 1 - rb + left) // d + 1))
        for i in range(hs):
            src_row = i * d + ra - top
            if src_row < 0 or src_row >= rows:
                out[s, c, i, :] = 0
                continue
            out[s, c, i, :j_lo] = 0
            for j in range(j_lo, j_hi):
                out[s, c, i, j] = a[n, c, src_row, j * d + rb - left]
            out[s, c, i, j_hi:] = 0


@njit(parallel=True, cache=True)
def _scatter_kernel(s_arr, out, top, left, d):
    """The inverse read: out[n, c, h, w] = s[(ra*d + rb)*N + n, c, (h+top)//d, (w+left)//d] with
    ra = (h+top) % d, rb = (w+left) % d (every output pixel read once: a crop, never a sum).
    Walked by column residue: for each rb, the columns w = w0, w0 + d, ... read one contiguous
    run of sub-grid row i (no division per pixel)."""
    n_img, ch, h_out, w_out = out.shape
    for job in prange(n_img * ch):
        n, c = job // ch, job % ch
        for h in range(h_out):
            ra, i = (h + top) % d, (h + top) // d
            for rb in range(d):
                w0 = (rb - left) % d  # first column with (w + left) % d == rb
                j0 = (w0 + left) // d
                src = s_arr[(ra * d + rb) * n_img + n, c, i]
                for k in range((w_out - w0 + d - 1) // d):
                    out[n, c, h, w0 + k * d] = src[j0 + k]


def gather_subgrids(a, d, sub_size, offset=(0, 0)):
    """a (N, C, H, W) -> (d*d*N, C, Hs, Ws): the sub-grids of a shifted by ``offset`` (the zero
    padding: row i*d + ra of the padded array is row i*d + ra - top of a), zeros outside a.
    ``input_subgrids`` is gather_subgrids(x, d, subgrid_size(...), padding), and
    ``output_grad_subgrids`` is gather_subgrids(dy, d, (Hs - 2, Ws - 2))."""
    a = np.ascontiguousarray(a)
    n, c, h, w = a.shape
    out = np.empty((d * d * n, c) + tuple(sub_size), a.dtype)
    _gather_kernel(a, out, offset[0], offset[1], d, h, w)
    return out


def scatter_subgrids(s, d, n, out_size, offset=(0, 0)):
    """The sub-grids (d*d*N, C, Hs, Ws) -> (N, C, *out_size): pixel (h, w) from row h + top,
    column w + left of the re-interleaved array. ``output_from_subgrids`` is
    scatter_subgrids(y_sub, d, n, (Ho, Wo)); ``input_grad_from_subgrids`` is
    scatter_subgrids(dx_sub, d, n, (H, W), padding)."""
    s = np.ascontiguousarray(s)
    out = np.empty((n, s.shape[1]) + tuple(out_size), s.dtype)
    _scatter_kernel(s, out, offset[0], offset[1], d)
    return out

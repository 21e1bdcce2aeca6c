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
only moves data, and imports nothing of the package). Cost beyond the undilated path: copies of the input into the sub-grids and of the output back
(memory traffic about twice the input's), against a product 2.25x smaller than the direct
convolution's. Used for dilation (d, d) with d > 1 when ``conv_winograd.DILATED`` is on.
"""

from __future__ import annotations

import numpy as np


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

"""Convolution with im2col along the width only: the kernel's rows become shifted views.

``ops/conv.py`` copies every kh x kw window into a column (im2col), so a 7x7 convolution writes
49 copies of its input and reads them back, for one matrix product. When the vertical stride is
1 there is a cheaper way. Copy only the kw taps of each row (an im2col with a 1 x kw kernel, over
every padded input row):

    colsW[c*kw + kx, r, ox] = x_pad[c, r, ox*sw + kx*dw]          r < Hp = H + 2*ph

Output row oy needs, for kernel row ky, padded input row oy + ky*dh. Flattened to the matrix
(C*kw, Hp*Wo), the columns of rows oy + ky*dh for all oy are one contiguous block that starts
ky*dh*Wo columns further down. So the convolution is kh matrix products over shifted views of
the same matrix, with no further copy:

    y[n] = sum over ky of  Wk[ky] @ colsW[n][:, ky*dh*Wo : ky*dh*Wo + Ho*Wo]
    Wk[ky] = w[:, :, ky, :].reshape(O, C*kw)                       (O, C*kw)

Backward. The input gradient of a stride-1 convolution is itself a stride-1 convolution: of dy,
with the kernel flipped in both axes and its in/out channels swapped, and "full" padding
dh*(kh-1) - ph (dw*(kw-1) - pw across):

    dx[c, h, x] = sum over o, ky, kx of  w[o, c, kh-1-ky, kw-1-kx] * dy_pad[o, h + ky*dh, x + kx*dw]

so it takes the same row-shift path (``conv2d_data_grad``) when the horizontal stride is 1 too
and the padding is not wider than the kernel's reach (ph <= dh*(kh-1), pw <= dw*(kw-1)). The
weight gradient multiplies the same views, one kernel row at a time, computed transposed
(BLAS runs colsW @ dy^T faster here than dy @ colsW^T):

    dW[:, :, ky, :]^T = sum over n of  view_ky(colsW[n]) @ dy[n]^T      (C*kw, O)

Measured on the 2-core machine, timing ``conv2d_gemm`` / ``conv2d_data_grad`` /
``conv2d_weight_grad`` under ``row_shift(False)`` and ``row_shift(True)`` in one
process (float32, median of 7, ms, band path -> row shifts; forward / backward-data /
backward-weight): 7x7 64->64 on 4x64x96x128: 137 -> 99 / 108 -> 101 / 128 -> 101; 7x7 16->16
on 8x16x40x40: 7.4 -> 4.3 / 6.2 -> 4.4 / 5.7 -> 3.8; 3x3 64->64 on 8x64x128x128: 84 -> 60 /
69 -> 64 / 67 -> 67.

This file is the path's readable form. The numba backend (``ops/conv_engine.py``) takes the
path for convolutions with vertical stride 1, kh >= conv_engine.ROW_SHIFT_MIN_KH and one group
(``conv_engine.ROW_SHIFT`` switches it off) and, by default, runs the same sums in another order:
``ops/conv_row_stack.py`` stacks the kh row weights into one matrix, so one well-shaped product
replaces the kh thin ones here (7x7 64->64 forward 97 -> 76 ms); ``conv_engine.ROW_PRODUCTS``
says which form each product takes. The results equal the im2col path up to float rounding,
which the tests check for every form against the NumPy reference.
"""

from __future__ import annotations

import numpy as np

from minisegnet.ops import conv_chunks
from minisegnet.ops.conv_chunks import im2col_chunk_numba
from minisegnet.ops.geometry import conv_output_size_2d


class _Plan:
    """Sizes and views shared by the products: ``w`` (O, C, kh, kw) over ``x`` (N, C, H, W)."""

    def __init__(self, n, c, in_size, w_shape, stride, padding, dilation, itemsize):
        o, _, kh, kw = w_shape
        (_, sw), (ph, pw), (self.dh, dw) = stride, padding, dilation
        self.o, self.kh = o, kh
        self.ho, self.wo = conv_output_size_2d(in_size, (kh, kw), stride, padding, dilation)
        self.extra = self.dh * (kh - 1)  # input rows a band reads beyond its output rows
        self.k = c * kw  # depth of each product
        # B images or a band of R output rows; a band's columns span R + extra padded input rows
        row_bytes = self.k * self.wo * itemsize
        budget = conv_chunks.CHUNK_BYTES
        self.chunks = conv_chunks.plan_chunks(n, self.ho, row_bytes, budget, extra=self.extra)
        self.rows_in = max(B * (R + self.extra) for _, B, _, R in self.chunks)
        self.positions_out = max(B * R for _, B, _, R in self.chunks) * self.wo
        # im2col/col2im with a 1 x kw kernel: their "output rows" are the padded input rows
        self.width_args = (1, kw, 1, sw, ph, pw, 1, dw)

    def buffer(self, dtype):
        """Memory for the largest chunk's columns: the band path's kept scratch memory."""
        nbytes = self.k * self.rows_in * self.wo * np.dtype(dtype).itemsize
        return conv_chunks.scratch_memory(nbytes)[:nbytes].view(dtype)

    def columns(self, memory, B, R):
        """The chunk's width-columns (C*kw, B, R + extra, Wo) in ``memory``."""
        rows = R + self.extra
        return memory[: self.k * B * rows * self.wo].reshape(self.k, B, rows, self.wo)

    def view(self, cols4, ky, R):
        """(B, C*kw, R*Wo): the columns that kernel row ky multiplies, for R output rows."""
        k, B, rows, wo = cols4.shape
        start = ky * self.dh * wo
        return cols4.reshape(k, B, rows * wo).transpose(1, 0, 2)[:, :, start : start + R * wo]

    def positions(self, a, n0, B, oy0, R):
        """(B, channels, R*Wo) view of output rows oy0 .. oy0+R-1 of images n0 .. n0+B-1 of a."""
        return a[n0 : n0 + B].reshape(B, a.shape[1], -1)[:, :, oy0 * self.wo : (oy0 + R) * self.wo]


def _row_weights(w):
    """Wk (kh, O, C*kw): Wk[ky] = w[:, :, ky, :] as a matrix (row c*kw + kx, as colsW)."""
    O, C, kh, kw = w.shape
    return np.ascontiguousarray(w.transpose(2, 0, 1, 3)).reshape(kh, O, C * kw)


def conv2d_forward(x, w, stride, padding, dilation, bias=None):
    """y (N, O, Ho, Wo) = conv2d(x, w) (+ bias) for sh == 1, one group."""
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    N, C, H, W = x.shape
    p = _Plan(N, C, (H, W), w.shape, stride, padding, dilation, x.itemsize)
    Wk = _row_weights(w)
    y = np.empty((N, p.o, p.ho, p.wo), dtype=x.dtype)
    memory = p.buffer(x.dtype)
    part_memory = np.empty(p.o * p.positions_out, dtype=x.dtype)  # one kernel row's product
    for n0, B, oy0, R in p.chunks:
        cols4 = p.columns(memory, B, R)
        im2col_chunk_numba(x, cols4, n0, oy0, *p.width_args)
        out = p.positions(y, n0, B, oy0, R)  # (B, O, R*Wo), written in place
        np.matmul(Wk[0], p.view(cols4, 0, R), out=out)
        part = part_memory[: B * p.o * R * p.wo].reshape(B, p.o, R * p.wo)
        for ky in range(1, p.kh):
            np.matmul(Wk[ky], p.view(cols4, ky, R), out=part)
            out += part
    if bias is not None:
        y += bias.reshape(1, -1, 1, 1)
    return y


def applies_to_data_grad(kernel, stride, padding, dilation) -> bool:
    """Whether ``conv2d_data_grad`` can run as a flipped stride-1 convolution."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    return sh == 1 and sw == 1 and ph <= dh * (kh - 1) and pw <= dw * (kw - 1)


def conv2d_data_grad(dy, w, in_size, stride, padding, dilation):
    """dx (N, C, H, W) from dy (N, O, Ho, Wo): the forward row-shift convolution of dy with the
    flipped, channel-swapped kernel and full padding (see the module docstring)."""
    kh, kw = w.shape[2:]
    if not applies_to_data_grad((kh, kw), stride, padding, dilation):
        raise ValueError(
            f"conv2d_data_grad (row shifts): needs stride 1 and padding <= dilation*(kernel-1), "
            f"got stride {stride}, padding {padding}, kernel {(kh, kw)}, dilation {dilation}"
        )
    (ph, pw), (dh, dw) = padding, dilation
    flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C, O, kh, kw)
    full = (dh * (kh - 1) - ph, dw * (kw - 1) - pw)
    dx = conv2d_forward(dy, flipped, (1, 1), full, dilation)
    if dx.shape[2:] != tuple(in_size):  # cannot happen for stride 1; a guard for the algebra
        raise AssertionError(f"row-shift data gradient has size {dx.shape[2:]}, not {in_size}")
    return dx


def conv2d_weight_grad(x, dy, kernel, stride, padding, dilation):
    """dw (O, C, kh, kw) from x (N, C, H, W) and dy (N, O, Ho, Wo) for sh == 1, one group."""
    x, dy = np.ascontiguousarray(x), np.ascontiguousarray(dy)
    N, C, H, W = x.shape
    O = dy.shape[1]
    kh, kw = kernel
    p = _Plan(N, C, (H, W), (O, C, kh, kw), stride, padding, dilation, x.itemsize)
    dWt = np.zeros((kh, p.k, O), dtype=x.dtype)  # dW[:, :, ky, :]^T, accumulated
    part = np.empty((p.k, O), dtype=x.dtype)
    memory = p.buffer(x.dtype)
    for n0, B, oy0, R in p.chunks:
        cols4 = p.columns(memory, B, R)
        im2col_chunk_numba(x, cols4, n0, oy0, *p.width_args)
        dyc = p.positions(dy, n0, B, oy0, R)  # (B, O, R*Wo)
        for ky in range(kh):
            view = p.view(cols4, ky, R)  # (B, C*kw, R*Wo)
            for b in range(B):
                np.matmul(view[b], dyc[b].T, out=part)
                dWt[ky] += part
    # (kh, C*kw, O) -> (kh, C, kw, O) -> (O, C, kh, kw)
    return np.ascontiguousarray(dWt.reshape(kh, C, kw, O).transpose(3, 1, 0, 2))

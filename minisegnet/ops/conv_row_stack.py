"""Row shifts with every kernel row in one matrix product, streamed over the batch's rows.

``ops/conv_row_shift.py`` is the readable form of this path: im2col along the width only,

    colsW[c*kw + kx, r, ox] = x_pad[c, r, ox*sw + kx*dw]          r < Hp = H + 2*ph

and then kh products, one per kernel row, over views of colsW shifted by ky*dh rows, summed:

    y[o, oy, :] = sum over ky of  (Wk[ky] @ colsW)[o, oy + ky*dh, :]
    Wk[ky] = w[:, :, ky, :].reshape(O, C*kw)

Its products have only O rows (64 for SegNet-Basic's 7x7 convolutions), a thin shape that
OpenBLAS runs at 72% of the speed it reaches with 448 rows (316 against 438 GFLOP/s for
K = 448 on the 2-core machine), and each of the kh - 1 sums reads and writes the whole output.
This file swaps the order. All kernel rows are stacked into one matrix and multiplied at once,

    Z = Wall @ colsW        Wall[(ky, o), (c, kx)] = w[o, c, ky, kx]     (kh*O, C*kw)
                            Z (kh*O, rows*Wo): Z[ky*O + o, r] = (Wk[ky] @ colsW)[o, r]

and each output row is then the sum of kh slices of Z, taken from kh different rows:

    y[o, oy, :] = sum over ky of  Z[ky*O + o, oy + ky*dh, :]              (the shifted sum)

The product computes every kernel row for every row, also where no output needs it (kernel row
ky never meets the first ky*dh padded rows of an image nor the last (kh-1-ky)*dh), which costs
the padding rows' share of extra multiplications. In exchange it runs at the better speed.

Streaming. The images' rows are taken as one strip with a gap of zero rows between images (the
padding, shared by neighbours: 3 rows per image for a 7x7 convolution with padding 3, where
padding each image on its own would take 6, ``_Strip``) and walked in blocks of ``nb`` rows
sized to the chunk budget (``conv_chunks.CHUNK_BYTES``): width-columns of the block, one
product, and the shifted sum of every output row whose kh source rows have all been computed.
Those source rows span at most two blocks (the block before and this one, as
nb >= dh*(kh-1)), so two blocks of Z are kept. Every strip row is copied and multiplied once,
however the blocks fall across images, and many small images make one large product. The
extra work is gap/Ho: 3% for a 7x7 convolution over 96 rows, 25% over 12.

Weight gradient, the same stacking the other way round. With D the output gradient placed on the
strip, once per kernel row and shifted down by ky*dh rows,

    D[ky*O + o, g] = dy[n, o, oy]  where strip row g - ky*dh starts output row oy of image n
                                   (zero where no output row starts)
    dWall^T = sum over blocks of  colsW_block @ D_block^T                     (C*kw, kh*O)

one product per block again, of depth nb*Wo. The data gradient is the forward convolution of dy
with the flipped, channel-swapped kernel (``conv_row_shift.applies_to_data_grad`` says when).

Measured on the 2-core machine (float32, 7x7 64->64 on 4x64x96x128, min of 7, one process,
per-row products of ``conv_row_shift`` -> this file, ms): forward 97.3 -> 76.2, data gradient
96.6 -> 75.1, weight gradient 92.5 -> 85.4; more shapes in ``conv_engine.ROW_PRODUCTS``. In a
faster phase of the machine the forward took 60 ms, of which the product 50 ms (418 GFLOP/s),
the width-columns 2.4 ms and the shifted sums 1.6 ms.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from minisegnet.ops import conv_chunks, conv_row_shift, gemm_batch
from minisegnet.ops.conv_chunks import _inside, copy_row
from minisegnet.ops.geometry import conv_output_size_2d

__all__ = ["conv2d_forward", "conv2d_data_grad", "conv2d_weight_grad", "stacked_weights"]


# ------------------------------------------------------------------------------------------------
# Numba kernels: width-columns of a block of strip rows, the shifted sum, the stacked gradient
# ------------------------------------------------------------------------------------------------


@njit(parallel=True, cache=True)
def width_columns(x, cols, g0, gap, period, kw, sw, pw, dw):
    """cols (C*kw, nb, Wo) = width-columns of strip rows g0 .. g0+nb-1 of x (N, C, H, W):
    cols[c*kw + kx, j, ox] = x[n, c, iy, ox*sw + kx*dw - pw] for strip row g0 + j =
    gap + n*period + iy with iy < H, and zero for the rows of the gaps."""
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    k_rows, nb, Wo = cols.shape
    xf = x.reshape(-1)
    cf = cols.reshape(-1)
    for row in prange(k_rows):  # row = c*kw + kx
        c = row // kw
        offset = (row % kw) * dw - pw  # input column of output column 0
        lo, hi = _inside(offset, sw, W, Wo)  # output columns that read inside the image
        for j in range(nb):
            t = g0 + j - gap
            n = t // period
            iy = t - n * period
            dst = np.uint64((row * nb + j) * Wo)
            if t < 0 or iy >= H:  # a row of a gap
                copy_row(xf, cf, np.uint64(0), dst, Wo, Wo, Wo, sw)
                continue
            src = np.uint64(((n * C + c) * H + iy) * W + lo * sw + offset)
            copy_row(xf, cf, src, dst, lo, hi, Wo, sw)


@njit(parallel=True, cache=True)
def shifted_sum(z_prev, prev0, z_cur, cur0, y, g_lo, g_hi, first, period, kh, dh, bias, has_bias):
    """y[n, o, oy, :] = sum over ky of Z[ky*O + o, g + ky*dh, :] (+ bias[o]) for the strip rows
    g = first + n*period + oy in [g_lo, g_hi) with oy < Ho. z_prev (kh*O, ., Wo) holds strip rows
    prev0 .., z_cur rows cur0 ..; each source row lies in one of them."""
    N, O, Ho, Wo = y.shape
    rows = g_hi - g_lo
    for i in prange(O * rows):
        o = i // rows
        g = g_lo + i % rows
        n = (g - first) // period
        oy = g - first - n * period
        if g < first or oy >= Ho or n >= N:  # no output row starts at this strip row
            continue
        out = y[n, o, oy]
        start = bias[o] if has_bias else 0.0
        for t in range(Wo):
            out[t] = start
        for ky in range(kh):
            s = g + ky * dh
            src = z_cur[ky * O + o, s - cur0] if s >= cur0 else z_prev[ky * O + o, s - prev0]
            for t in range(Wo):
                out[t] += src[t]


@njit(parallel=True, cache=True)
def shifted_gradient(dy, d, g0, first, period, kh, dh):
    """d (kh*O, nb, Wo): d[ky*O + o, j] = dy[n, o, oy] where strip row g0 + j - ky*dh =
    first + n*period + oy is an output row, zero elsewhere."""
    N, O, Ho, Wo = dy.shape
    nb = d.shape[1]
    for i in prange(kh * O):
        ky = i // O
        o = i % O
        for j in range(nb):
            t = g0 + j - ky * dh - first
            n = t // period
            oy = t - n * period
            dst = d[i, j]
            if t < 0 or oy >= Ho or n >= N:
                for c in range(Wo):
                    dst[c] = 0
            else:
                src = dy[n, o, oy]
                for c in range(Wo):
                    dst[c] = src[c]


# ------------------------------------------------------------------------------------------------
# The drivers
# ------------------------------------------------------------------------------------------------


def stacked_weights(w):
    """Wall (kh*O, C*kw): Wall[ky*O + o, c*kw + kx] = w[o, c, ky, kx]."""
    O, C, kh, kw = w.shape
    return np.ascontiguousarray(w.transpose(2, 0, 1, 3)).reshape(kh * O, C * kw)


class _Strip:
    """The batch's rows as one strip, its blocks, and their buffers.

    The strip is the images' rows one after the other with ``gap`` zero rows before each image
    and after the last: image n's row iy is strip row gap + n*period + iy, period = H + gap.
    Output row oy of image n starts at strip row first + n*period + oy, first = gap - ph, and
    reads the dh*(kh-1) + 1 rows from there. Its padding is the gap: ph zero rows above the
    image and dh*(kh-1) - ph below, so two neighbouring images share one gap of the larger of
    the two (and of 2*ph - dh*(kh-1), so that one image's output rows end before the next's
    begin). Shared, the gaps cost half the rows that padding each image separately would
    (3 rows instead of 6 for a 7x7 convolution with padding 3), and the product multiplies them.

    The buffers are in the thread's kept scratch memory (``conv_chunks``): width-columns
    (C*kw, nb, Wo) and ``z_blocks`` blocks of (kh*O, nb, Wo), all within what the per-row form
    keeps (``_budget``) unless one block of dh*(kh-1) rows is larger."""

    def __init__(self, x_shape, w_shape, stride, padding, dilation, dtype, z_blocks):
        N, C, H, W = x_shape
        O, _, kh, kw = w_shape
        (_, sw), (ph, pw), (dh, dw) = stride, padding, dilation
        self.ho, self.wo = conv_output_size_2d((H, W), (kh, kw), stride, padding, dilation)
        self.kh, self.dh = kh, dh
        self.extra = dh * (kh - 1)  # rows an output row reads below its first
        self.gap = max(ph, self.extra - ph, 2 * ph - self.extra)
        self.period, self.first = H + self.gap, self.gap - ph
        self.total = self.gap + N * self.period
        self.k, self.m = C * kw, kh * O
        self.width_args = (self.gap, self.period, kw, sw, pw, dw)
        itemsize = np.dtype(dtype).itemsize
        row_bytes = (self.k + z_blocks * self.m) * self.wo * itemsize
        self.nb = min(self.total, max(self.extra, 1, self._budget(N, itemsize) // row_bytes))
        sizes = [self.k] + [self.m] * z_blocks
        self.slices = [s * self.nb * self.wo for s in sizes]
        memory = conv_chunks.scratch_memory(sum(self.slices) * itemsize)
        self.flat = memory[: sum(self.slices) * itemsize].view(dtype)

    def _budget(self, n, itemsize):
        """Bytes for the buffers: what the per-row form (``conv_row_shift``) keeps for its
        width-columns, so that this path needs no more scratch memory than it (at most
        CHUNK_BYTES; for a small batch, the columns of the whole batch)."""
        width_row = self.k * self.wo * itemsize
        chunks = conv_chunks.plan_chunks(
            n, self.ho, width_row, conv_chunks.CHUNK_BYTES, extra=self.extra
        )
        return width_row * max(B * (R + self.extra) for _, B, _, R in chunks)

    def blocks(self):
        """(g0, b): the strip in blocks of nb rows (the last one shorter)."""
        return [(g0, min(self.nb, self.total - g0)) for g0 in range(0, self.total, self.nb)]

    def buffer(self, index, rows, b):
        """Buffer ``index`` (0: the columns, then the Z blocks) as (rows, b, Wo)."""
        start = sum(self.slices[:index])
        return self.flat[start : start + rows * b * self.wo].reshape(rows, b, self.wo)


def conv2d_forward(x, w, stride, padding, dilation, bias=None):
    """y (N, O, Ho, Wo) = conv2d(x, w) (+ bias) for vertical stride 1, one group."""
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    N, O = x.shape[0], w.shape[0]
    s = _Strip(x.shape, w.shape, stride, padding, dilation, x.dtype, z_blocks=2)
    wall = stacked_weights(w)
    y = np.empty((N, O, s.ho, s.wo), dtype=x.dtype)
    has_bias = bias is not None
    b_arg = np.ascontiguousarray(bias, dtype=x.dtype) if has_bias else np.zeros(1, x.dtype)
    z_prev, prev0, done = s.buffer(2, s.m, 1), 0, 0  # strip rows < done have their outputs
    for block, (g0, b) in enumerate(s.blocks()):
        cols = s.buffer(0, s.k, b)
        width_columns(x, cols, g0, *s.width_args)
        z = s.buffer(1 + block % 2, s.m, b)
        np.matmul(wall, cols.reshape(s.k, b * s.wo), out=z.reshape(s.m, b * s.wo))
        ready = g0 + b - s.extra  # output rows whose kh source rows are all computed
        if ready > done:
            shifted_sum(
                z_prev, prev0, z, g0, y, done, ready, s.first, s.period, s.kh, s.dh, b_arg, has_bias
            )
            done = ready
        z_prev, prev0 = z, g0
    return y


def conv2d_data_grad(dy, w, in_size, stride, padding, dilation):
    """dx (N, C, H, W) from dy: the forward convolution of dy with the flipped, channel-swapped
    kernel and full padding dilation*(kernel-1) - padding (stride 1 only; see
    ``conv_row_shift.applies_to_data_grad``)."""
    kh, kw = w.shape[2:]
    (ph, pw), (dh, dw) = padding, dilation
    if not conv_row_shift.applies_to_data_grad((kh, kw), stride, padding, dilation):
        raise ValueError(
            f"conv2d_data_grad (stacked rows): needs stride 1 and padding <= dilation*(kernel-1), "
            f"got stride {stride}, padding {padding}, kernel {(kh, kw)}, dilation {dilation}"
        )
    flipped = np.ascontiguousarray(w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))  # (C, O, kh, kw)
    dx = conv2d_forward(dy, flipped, (1, 1), (dh * (kh - 1) - ph, dw * (kw - 1) - pw), dilation)
    if dx.shape[2:] != tuple(in_size):  # cannot happen for stride 1; a guard for the algebra
        raise AssertionError(f"stacked-row data gradient has size {dx.shape[2:]}, not {in_size}")
    return dx


def conv2d_weight_grad(x, dy, kernel, stride, padding, dilation):
    """dw (O, C, kh, kw) from x (N, C, H, W) and dy (N, O, Ho, Wo), vertical stride 1, one
    group."""
    x, dy = np.ascontiguousarray(x), np.ascontiguousarray(dy)
    C, O = x.shape[1], dy.shape[1]
    kh, kw = kernel
    s = _Strip(x.shape, (O, C, kh, kw), stride, padding, dilation, x.dtype, z_blocks=1)
    dwall_t = np.zeros((s.k, s.m), dtype=x.dtype)  # dWall^T, accumulated over the blocks
    for g0, b in s.blocks():
        cols = s.buffer(0, s.k, b)
        width_columns(x, cols, g0, *s.width_args)
        d = s.buffer(1, s.m, b)
        shifted_gradient(dy, d, g0, s.first, s.period, s.kh, s.dh)
        # dwall_t += cols @ d^T in one BLAS call (beta = 1): no weight-sized temporary
        gemm_batch.products(
            cols.reshape(1, s.k, b * s.wo),
            d.reshape(1, s.m, b * s.wo).transpose(0, 2, 1),
            dwall_t.reshape(1, s.k, s.m),
            accumulate=True,
        )
    # (C*kw, kh*O) -> (C, kw, kh, O) -> (O, C, kh, kw)
    return np.ascontiguousarray(dwall_t.reshape(C, kw, kh, O).transpose(3, 0, 2, 1))

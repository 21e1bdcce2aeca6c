"""The numba backend's convolution engine: which fast path runs, and the band engine behind them.

``ops/conv.py`` states the math and holds the readable drivers; its kernel table sends the numba
backend's three products here. Each product takes the first path that applies:

    depthwise              one input and one output channel per group (``conv_depthwise``:
                           direct loops, e.g. FCN's fixed bilinear upsamplers)
    Winograd F(2x2, 7x7)   stride-1 undilated 7x7 convolutions with enough channels and pixels
                           (``conv_winograd_7x7``: SegNet-Basic's)
    Winograd F(4x4)/F(6x6) stride-1 3x3 convolutions with enough channels (``conv_winograd``),
                           dilated ones on the d*d sub-grids (``conv_winograd.DILATED``)
    stride phases          data gradients (transposed convolutions) of stride > 1, kernel a
                           multiple of the stride, one group (``conv_stride_phases``)
    row shifts             vertical stride 1, kh >= ROW_SHIFT_MIN_KH, one group, for 3x3 an
                           output of 32x32 or more (ROW_SHIFT_MIN_PIXELS) or columns over
                           SMALL_IMAGE_BANDS_MAX_BYTES: im2col along
                           the width only, 7x fewer copies for 7x7 (``conv_row_shift``, the
                           readable form: one product per kernel row over shifted views), run
                           as one product of all kernel rows stacked and a shifted sum
                           (``conv_row_stack``, ``ROW_PRODUCTS``)
    bands                  everything else: the chunked im2col / GEMM / col2im below

The band engine. The batch is walked in chunks (``conv_chunks.plan_chunks``): several small
images per GEMM (a per-image product would be too thin to run BLAS well), or bands of output rows
of one large image, each chunk's columns in the thread's kept scratch memory and under
``conv_chunks.CHUNK_BYTES``. For one image the GEMM reads and writes views of the input and
output directly; for several, the chunk's positions are gathered into (channels, B*Ho*Wo)
matrices. Weights are viewed with a group axis, w (G, O/G, C/G*kh*kw), so one batched matmul
serves every group.

This file imports only downward (the engines and ``conv_chunks``), never ``ops/conv.py``.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from minisegnet.ops import (
    conv_chunks,
    conv_depthwise,
    conv_row_shift,
    conv_row_stack,
    conv_stride_phases,
    conv_winograd,
    conv_winograd_7x7,
    gemm_batch,
)
from minisegnet.ops.conv_chunks import (
    col2im_chunk_numba,
    im2col_chunk_numba,
    is_pointwise,
    kernel_args,
)
from minisegnet.ops.geometry import conv_output_size_2d

__all__ = [
    "conv2d_forward", "conv2d_data_grad", "conv2d_weight_grad", "row_shift", "ROW_SHIFT",
    "ROW_SHIFT_MIN_KH", "ROW_SHIFT_MIN_CHANNELS", "ROW_SHIFT_MIN_PIXELS", "ROW_SHIFT_SIZE_RULE_TAPS",
    "SMALL_IMAGE_BANDS_MAX_BYTES", "ROW_PRODUCTS", "STACKED_WEIGHT_GRAD_MIN_DEPTH",
    "conv2d_forward_and_weight_grad",
]  # fmt: skip

ROW_SHIFT = True
"""Let the numba backend use ``ops/conv_row_shift.py`` where it applies (tests switch it off)."""

ROW_SHIFT_MIN_KH = 3
"""Smallest kernel height that takes the row-shift path (measured: see ``conv_row_shift``)."""

ROW_SHIFT_MIN_CHANNELS = 8
"""Fewest input channels that take the row-shift path. With fewer (an RGB input layer) its
products are too thin -- depth C*kw for the forward and the weight gradient, kh*C rows for the
data gradient -- and the band path's full im2col, kh times deeper, wins. Measured on the 2-core
machine (float32, 4 images, min of 7, ms, forward / data gradient / weight gradient, bands
against row shifts): 7x7 3->64 on 96x128 4.96 / 4.54 / 5.74 against 8.60 / 12.67 / 13.34;
FCN's first layer (3x3 3->8, padding 49, 64x64) 4.13 / 2.31 / 4.78 against 8.89 / 2.35 / 7.36;
3x3 4->64 on 64x64 0.77 / 0.75 / 1.11 against 1.55 / 2.00 / 2.04; 3x3 8->8 on 64x64
0.70 / 0.61 / 0.62 against 0.37 / 0.37 / 0.35; 3x3 8->16 0.80 / 0.90 / 0.89 against
0.64 / 0.69 / 1.09. (Between 8 and 16 input channels it depends on the output channels: 3x3
12->64 on 64x64 ran 2.25 / 2.20 / 2.95 on bands against 2.43 / 2.96 / 3.10; the networks'
layers past the input have 8 or more channels, and as many outputs as inputs or twice as
many.)"""

ROW_PRODUCTS = "auto"
"""How the row-shift path runs its products: "per_row" (``conv_row_shift``, kh products of O
rows each), "stacked" (``conv_row_stack``, one product of kh*O rows and a shifted sum), or
"auto": stacked for the forward and the data gradient, and for the weight gradient where the
width-columns are at least STACKED_WEIGHT_GRAD_MIN_DEPTH deep (C*kw).

Measured on the 2-core machine, float32, 4 images, min of 7, ms per-row -> stacked, forward /
data gradient / weight gradient: 7x7 64->64 on 96x128 97.3 -> 76.2 / 96.6 -> 75.1 /
92.5 -> 85.4; on 12x16 2.52 -> 1.96 / 2.65 -> 2.07 / 2.22 -> 2.24; 7x7 16->16 on 64x64
5.39 -> 2.96 / 5.34 -> 3.01 / 4.84 -> 4.26; 3x3 64->64 on 32x32 2.10 -> 1.77 / 2.12 -> 1.79 /
2.17 -> 2.05; on 8x8 0.33 -> 0.32 / 0.36 -> 0.35 / 0.36 -> 0.31; 3x3 32->32 on 64x64
2.87 -> 2.27 / 2.95 -> 2.24 / 2.91 -> 2.89; 3x3 16->16 on 32x32 0.28 -> 0.29 / 0.30 -> 0.28 /
0.36 -> 0.41; 3x3 8->8 on 64x64 0.48 -> 0.46 / 0.50 -> 0.45 / 0.47 -> 0.81. The stacked
weight gradient copies the output gradient kh times (once per kernel row, shifted), which the
product repays only when it is deep enough."""

STACKED_WEIGHT_GRAD_MIN_DEPTH = 96
"""Under "auto", the weight gradient takes the stacked products from C*kw >= this on (it tied
at 96 -- 3x3 over 32 channels -- and won from 112 on in the measurements above)."""

_GROUP_IMAGES_BELOW = 1024
"""Images with fewer output positions than this are batched into one GEMM (a per-image product
would be too thin to run BLAS well); larger ones run one image (or one band of rows) at a time."""

ROW_SHIFT_MIN_PIXELS = _GROUP_IMAGES_BELOW
"""Fewest output positions per image at which a kernel of at most ROW_SHIFT_SIZE_RULE_TAPS taps
takes the row-shift path. Below it the band path multiplies the columns of several images in
one product (``_GROUP_IMAGES_BELOW``): for a 3x3 kernel its im2col copies the input only 3x more
than the width-columns do, and one product of all the images beats the row shifts' per-image
products and their extra kernel launches. Measured on the 2-core machine (2026-12-06, float32,
4 images, the two paths interleaved, median of 15, forward + data gradient + weight gradient,
time on bands / time on row shifts): 3x3 16->16 0.57 on 8x8, 0.69 on 20x20, 0.76 on 28x28,
1.48 on 32x32; 3x3 64->64 0.62 / 0.84 / 0.95 / 1.18; 3x3 128->128 0.61 / 0.90 / 1.01 / 1.04;
dilation 2, 64->64, 0.58 on 8x8, 0.66 on 24x24, 1.28 on 32x32; FCN's fc6 (4x4 64->128 on 5x5)
0.41. One image: 0.44 on 10x10 and 0.81 on 32x32 (3x3 64->64). Small-preset training steps
against PyTorch, old rule -> this one: FCN-8s 1.16 -> 1.01, DeconvNet 0.85 -> 0.62."""

ROW_SHIFT_SIZE_RULE_TAPS = 16
"""ROW_SHIFT_MIN_PIXELS applies to kernels of at most this many taps (3x3, 4x4). A 7x7 kernel's
im2col is 49 copies of the input against 7 for the width-columns, and the row shifts win from
about 12x12 output pixels on and tie below (bands / row shifts, 7x7 16->16: 0.97 on 8x8, 0.95
on 12x12, 1.22 on 16x16; 5x5 32->32 0.72 on 8x8, 1.13 on 16x16); in SegNet-Basic's small
preset taking bands for its 8x8 layers was 3% slower, so larger kernels keep the row shifts."""

SMALL_IMAGE_BANDS_MAX_BYTES = 4 * 2**20
"""The small images of ROW_SHIFT_MIN_PIXELS take the band path only while the whole batch's
columns (N*C*kh*kw*Ho*Wo numbers) fit in this; larger ones keep the row shifts, whose
width-columns are kh times smaller. The band path keeps its columns in the thread's scratch
memory, which stays allocated: without this bound PSPNet's small preset ran its head (3x3
512->64 on 4 images of 8x8, 4.7 MB of columns) in 10.5 ms on bands against 13.5 on row shifts,
and its training step's peak memory rose by 4.4 MB (scratch 1.9 -> 4.5 MB). With it, no small
preset's peak memory changed; FCN's 3x3 64->64 on 20x20 (3.7 MB) stays on bands (6.5 against
7.8 ms)."""


@contextmanager
def row_shift(
    enabled: bool,
    min_kh: int | None = None,
    products: str | None = None,
    min_channels: int | None = None,
    any_size: bool = False,
):
    """Temporarily allow or forbid the row-shift path, optionally from kernel height ``min_kh``
    and ``min_channels`` input channels on, with ``products`` ("per_row", "stacked" or "auto",
    see ROW_PRODUCTS), and (``any_size``) on images of any size (ROW_SHIFT_MIN_PIXELS 0) (tests
    compare every path, on small kernels, few channels and tiny images too)."""
    global ROW_SHIFT, ROW_SHIFT_MIN_KH, ROW_PRODUCTS, ROW_SHIFT_MIN_CHANNELS, ROW_SHIFT_MIN_PIXELS
    if products is not None and products not in ("per_row", "stacked", "auto"):
        raise ValueError(f"products must be 'per_row', 'stacked' or 'auto', got {products!r}")
    previous = (
        ROW_SHIFT, ROW_SHIFT_MIN_KH, ROW_PRODUCTS, ROW_SHIFT_MIN_CHANNELS, ROW_SHIFT_MIN_PIXELS,
    )  # fmt: skip
    ROW_SHIFT = bool(enabled)
    if min_kh is not None:
        ROW_SHIFT_MIN_KH = int(min_kh)
    if products is not None:
        ROW_PRODUCTS = products
    if min_channels is not None:
        ROW_SHIFT_MIN_CHANNELS = int(min_channels)
    if any_size:
        ROW_SHIFT_MIN_PIXELS = 0
    try:
        yield
    finally:
        (
            ROW_SHIFT, ROW_SHIFT_MIN_KH, ROW_PRODUCTS, ROW_SHIFT_MIN_CHANNELS, ROW_SHIFT_MIN_PIXELS,
        ) = previous  # fmt: skip


# ------------------------------------------------------------------------------------------------
# Which path: Winograd, row shifts, or bands
# ------------------------------------------------------------------------------------------------


def _uses_row_shift(kernel, stride, padding, groups, channels, out_size, n, itemsize) -> bool:
    """Whether a convolution of ``n`` images over ``channels`` input channels with an output of
    ``out_size`` (Ho, Wo) per image, ``itemsize`` bytes per number, takes the row-shift path."""
    pixels = out_size[0] * out_size[1]
    columns = n * channels * kernel[0] * kernel[1] * pixels * itemsize  # the band path's im2col
    to_bands = (
        kernel[0] * kernel[1] <= ROW_SHIFT_SIZE_RULE_TAPS
        and pixels < ROW_SHIFT_MIN_PIXELS
        and columns <= SMALL_IMAGE_BANDS_MAX_BYTES
    )
    return (
        ROW_SHIFT
        and stride[0] == 1
        and kernel[0] >= max(2, ROW_SHIFT_MIN_KH)
        and channels >= ROW_SHIFT_MIN_CHANNELS
        and groups == 1
        and not is_pointwise(kernel, stride, padding)
        and not to_bands
    )


def _row_module(product: str, channels: int, kernel):
    """conv_row_stack or conv_row_shift (ROW_PRODUCTS) for ``product`` ("forward", "data_grad",
    "weight_grad") of a convolution over ``channels`` input channels."""
    if ROW_PRODUCTS != "auto":
        return conv_row_stack if ROW_PRODUCTS == "stacked" else conv_row_shift
    deep = channels * kernel[1] >= STACKED_WEIGHT_GRAD_MIN_DEPTH
    return conv_row_stack if product != "weight_grad" or deep else conv_row_shift


def conv2d_forward(x, w, stride, padding, dilation, groups, bias):
    """y (N, O, Ho, Wo) = conv2d(x, w) (+ bias), N >= 1, arguments checked and normalised."""
    if conv_depthwise.applies(x.shape[1], w.shape[0], groups):
        size = conv_output_size_2d(x.shape[2:], w.shape[2:], stride, padding, dilation)
        return conv_depthwise.conv2d_forward(x, w, stride, padding, dilation, size, bias)
    out_size = tuple(
        x.shape[2 + i] + 2 * padding[i] - dilation[i] * (w.shape[2 + i] - 1) for i in range(2)
    )  # stride 1: the only case the Winograd paths take
    if conv_winograd_7x7.applies(
        x.shape[1], w.shape[0], w.shape[2:], stride, padding, dilation, groups, out_size
    ):
        return conv_winograd_7x7.conv2d_forward(x, w, padding, bias)
    if conv_winograd.applies(
        x.shape[1], w.shape[0], w.shape[2:], stride, dilation, groups, out_size, x.shape[0]
    ):
        return conv_winograd.conv2d_forward(x, w, padding, bias, dilation)
    size = conv_output_size_2d(x.shape[2:], w.shape[2:], stride, padding, dilation)
    if _uses_row_shift(
        w.shape[2:], stride, padding, groups, x.shape[1], size, x.shape[0], x.dtype.itemsize
    ):
        module = _row_module("forward", x.shape[1], w.shape[2:])
        return module.conv2d_forward(x, w, stride, padding, dilation, bias)
    return _forward_by_bands(x, w, stride, padding, dilation, groups, bias)


def conv2d_data_grad(dy, w, in_size, stride, padding, dilation, groups):
    """dx (N, C, H, W) from dy (N, O, Ho, Wo)."""
    kernel = w.shape[2:]
    if conv_depthwise.applies(w.shape[1] * groups, w.shape[0], groups):
        return conv_depthwise.conv2d_data_grad(dy, w, in_size, stride, padding, dilation)
    if conv_winograd_7x7.applies(
        w.shape[1] * groups, w.shape[0], kernel, stride, padding, dilation, groups, dy.shape[2:]
    ):
        return conv_winograd_7x7.conv2d_data_grad(dy, w, in_size, padding)
    if conv_winograd.applies(
        w.shape[1] * groups, w.shape[0], kernel, stride, dilation, groups, dy.shape[2:], dy.shape[0]
    ):
        return conv_winograd.conv2d_data_grad(dy, w, in_size, padding, dilation)
    channels = w.shape[1] * groups
    if _uses_row_shift(
        kernel, stride, padding, groups, channels, dy.shape[2:], dy.shape[0], dy.dtype.itemsize
    ) and conv_row_shift.applies_to_data_grad(kernel, stride, padding, dilation):
        module = _row_module("data_grad", channels, kernel)
        return module.conv2d_data_grad(dy, w, in_size, stride, padding, dilation)
    if conv_stride_phases.applies(kernel, stride, dilation, groups):
        return conv_stride_phases.conv2d_data_grad(dy, w, in_size, stride, padding)
    return _data_grad_by_bands(dy, w, in_size, stride, padding, dilation, groups)


def conv2d_weight_grad(x, dy, kernel, stride, padding, dilation, groups):
    """dw (O, C/G, kh, kw) from x (N, C, H, W) and dy (N, O, Ho, Wo)."""
    if conv_depthwise.applies(x.shape[1], dy.shape[1], groups):
        return conv_depthwise.conv2d_weight_grad(x, dy, kernel, stride, padding, dilation)
    if conv_winograd_7x7.applies(
        x.shape[1], dy.shape[1], kernel, stride, padding, dilation, groups, dy.shape[2:]
    ):
        return conv_winograd_7x7.conv2d_weight_grad(x, dy, padding)
    if conv_winograd.applies(
        x.shape[1], dy.shape[1], kernel, stride, dilation, groups, dy.shape[2:], x.shape[0]
    ):
        return conv_winograd.conv2d_weight_grad(x, dy, padding, dilation)
    if _uses_row_shift(
        kernel, stride, padding, groups, x.shape[1], dy.shape[2:], x.shape[0], x.dtype.itemsize
    ):
        module = _row_module("weight_grad", x.shape[1], kernel)
        return module.conv2d_weight_grad(x, dy, kernel, stride, padding, dilation)
    return _weight_grad_by_bands(x, dy, kernel, stride, padding, dilation, groups)


def conv2d_forward_and_weight_grad(x, w, g, stride, padding, dilation, groups):
    """(conv2d(x, w), the weight gradient from x and g): a transposed convolution's backward,
    whose input gradient is the convolution of its output gradient x and whose weight gradient
    pairs x with its input g. On the band path both products read one im2col of each chunk of
    x (for FCN's k4 s2 upsampler that im2col was a third of the backward); elsewhere one by
    one."""
    out_size = conv_output_size_2d(x.shape[2:], w.shape[2:], stride, padding, dilation)
    on_bands = (
        not conv_depthwise.applies(x.shape[1], w.shape[0], groups)
        and not conv_winograd.applies(
            x.shape[1], w.shape[0], w.shape[2:], stride, dilation, groups, out_size, x.shape[0]
        )
        and not conv_winograd_7x7.applies(
            x.shape[1], w.shape[0], w.shape[2:], stride, padding, dilation, groups, out_size
        )
        and not _uses_row_shift(
            w.shape[2:],
            stride,
            padding,
            groups,
            x.shape[1],
            out_size,
            x.shape[0],
            x.dtype.itemsize,
        )
    )
    if on_bands:
        return _forward_and_weight_grad_by_bands(x, w, g, stride, padding, dilation, groups)
    y = conv2d_forward(x, w, stride, padding, dilation, groups, None)
    return y, conv2d_weight_grad(x, g, w.shape[2:], stride, padding, dilation, groups)


def conv2d_grads(dy, x, w, stride, padding, dilation, groups, need_dx, need_dw):
    """(dx or None, dw or None). Both at once through ``conv_winograd.conv2d_grads`` where the
    Winograd path applies (the output gradient is transformed once for both), else one by one."""
    kernel = w.shape[2:]
    if need_dx and need_dw:
        if conv_winograd_7x7.applies(
            x.shape[1], dy.shape[1], kernel, stride, padding, dilation, groups, dy.shape[2:]
        ):
            return conv_winograd_7x7.conv2d_grads(x, dy, w, padding)
        if conv_winograd.applies(
            x.shape[1], dy.shape[1], kernel, stride, dilation, groups, dy.shape[2:], x.shape[0]
        ):
            return conv_winograd.conv2d_grads(x, dy, w, padding, dilation)
    dx = (
        conv2d_data_grad(dy, w, x.shape[2:], stride, padding, dilation, groups) if need_dx else None
    )
    dw = conv2d_weight_grad(x, dy, kernel, stride, padding, dilation, groups) if need_dw else None
    return dx, dw


# ------------------------------------------------------------------------------------------------
# The band engine
# ------------------------------------------------------------------------------------------------


def _chunks(n, ho, rows, wo, itemsize):
    """Chunks (n0, B, oy0, R) covering n images of ho output rows; rows = C*kh*kw.

    Small outputs: B whole images per chunk (as many as the budget allows). Large outputs: one
    image at a time, in bands of R output rows sized to the budget (bands of equal height).
    """
    row_bytes = rows * wo * itemsize  # columns of one output row of one image
    return conv_chunks.plan_chunks(
        n, ho, row_bytes, conv_chunks.CHUNK_BYTES, group_images=ho * wo < _GROUP_IMAGES_BELOW
    )


def _read_positions(a, n0, B, oy0, R):
    """Chunk of a (N, Ch, Hc, Wc) as the matrix (Ch, B*R*Wc): a view for one image, else a copy."""
    N, Ch, Hc, Wc = a.shape
    if B == 1:
        return a[n0].reshape(Ch, Hc * Wc)[:, oy0 * Wc : (oy0 + R) * Wc]
    return a[n0 : n0 + B].transpose(1, 0, 2, 3).reshape(Ch, B * Hc * Wc)  # (R == Hc)


def _output_positions(a, n0, B, oy0, R):
    """Where a GEMM writes a chunk of a: a view of a for one image, a scratch matrix otherwise."""
    if B == 1:
        return _read_positions(a, n0, B, oy0, R)
    return np.empty((a.shape[1], B * a.shape[2] * a.shape[3]), dtype=a.dtype)


def _store_positions(a, m, n0, B):
    """Copy a scratch matrix m (Ch, B*Hc*Wc) back into images n0 .. n0+B-1 of a."""
    if B > 1:
        N, Ch, Hc, Wc = a.shape
        a[n0 : n0 + B] = m.reshape(Ch, B, Hc, Wc).transpose(1, 0, 2, 3)


class _Bands:
    """What a band pass needs, shared by the three drivers: whether the convolution is pointwise
    (its input is its own column matrix), the column rows C*kh*kw, the chunks, the kernels'
    geometry arguments, and the chunks' column buffer in the thread's kept scratch memory (None
    when pointwise). The buffer's size is the largest chunk's, so it is bounded by CHUNK_BYTES
    (or one output row, if that is larger)."""

    def __init__(self, n, channels, out_size, kernel, stride, padding, dilation, dtype):
        ho, self.wo = out_size
        self.dtype = np.dtype(dtype)
        self.pointwise = is_pointwise(kernel, stride, padding)
        self.rows = channels * kernel[0] * kernel[1]
        self.chunks = _chunks(n, ho, self.rows, self.wo, self.dtype.itemsize)
        self.args = kernel_args(kernel, stride, padding, dilation)
        self.memory = None
        if not self.pointwise:
            size = self.rows * self.wo * max(B * R for _, B, _, R in self.chunks)
            self.memory = conv_chunks.scratch_memory(size * self.dtype.itemsize)

    def buffer(self, B, R):
        """The chunk's columns (C*kh*kw, B, R, Wo), contiguous."""
        count = self.rows * B * R * self.wo
        flat = self.memory[: count * self.dtype.itemsize].view(self.dtype)
        return flat.reshape(self.rows, B, R, self.wo)

    def columns(self, x, n0, B, oy0, R):
        """The chunk's column matrix (C*kh*kw, B*R*Wo): x itself when pointwise, else its
        im2col in the buffer."""
        if self.pointwise:
            return _read_positions(x, n0, B, oy0, R)
        cols4 = self.buffer(B, R)
        im2col_chunk_numba(x, cols4, n0, oy0, *self.args)
        return cols4.reshape(self.rows, B * R * self.wo)


def _forward_by_bands(x, w, stride, padding, dilation, groups, bias):
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    out_size = conv_output_size_2d((H, W), (kh, kw), stride, padding, dilation)
    bands = _Bands(N, C, out_size, (kh, kw), stride, padding, dilation, x.dtype)
    wg = w.reshape(groups, O // groups, Cg * kh * kw)  # (G, O/G, C/G*kh*kw)
    y = np.empty((N, O) + out_size, dtype=x.dtype)
    for n0, B, oy0, R in bands.chunks:
        cols = bands.columns(x, n0, B, oy0, R)
        out = _output_positions(y, n0, B, oy0, R)  # (O, B*R*Wo)
        P = out.shape[1]
        np.matmul(
            wg,
            cols.reshape(groups, Cg * kh * kw, P),
            out=out.reshape(groups, O // groups, P, copy=False),
        )
        if bias is not None:
            out += bias.reshape(O, 1)
        _store_positions(y, out, n0, B)
    return y


def _data_grad_by_bands(dy, w, in_size, stride, padding, dilation, groups):
    dy, w = np.ascontiguousarray(dy), np.ascontiguousarray(w)
    N, O, Ho, Wo = dy.shape
    _, Cg, kh, kw = w.shape
    C = Cg * groups
    bands = _Bands(N, C, (Ho, Wo), (kh, kw), stride, padding, dilation, dy.dtype)
    wt = w.reshape(groups, O // groups, Cg * kh * kw).transpose(0, 2, 1)  # (G, C/G*kh*kw, O/G)
    # pointwise: every pixel is written once; else the bands add into dx
    dx = (np.empty if bands.pointwise else np.zeros)((N, C) + tuple(in_size), dtype=dy.dtype)
    for n0, B, oy0, R in bands.chunks:
        dyc = _read_positions(dy, n0, B, oy0, R)  # (O, P)
        P = dyc.shape[1]
        if bands.pointwise:
            dcols = _output_positions(dx, n0, B, oy0, R)  # (C, P): dx itself when B == 1
        else:
            dcols4 = bands.buffer(B, R)
            dcols = dcols4.reshape(bands.rows, P)
        np.matmul(
            wt, dyc.reshape(groups, O // groups, P), out=dcols.reshape(groups, -1, P, copy=False)
        )
        if bands.pointwise:
            _store_positions(dx, dcols, n0, B)
        else:
            col2im_chunk_numba(dcols4, dx, n0, oy0, *bands.args)
    return dx


def _weight_grad_by_bands(x, dy, kernel, stride, padding, dilation, groups):
    x, dy = np.ascontiguousarray(x), np.ascontiguousarray(dy)
    N, C, H, W = x.shape
    _, O, Ho, Wo = dy.shape
    kh, kw = kernel
    Cg = C // groups
    bands = _Bands(N, C, (Ho, Wo), kernel, stride, padding, dilation, x.dtype)
    # Accumulated transposed, dw^T = sum cols @ dy^T: BLAS runs this layout ~20% faster here.
    dw_t = np.zeros((groups, Cg * kh * kw, O // groups), dtype=x.dtype)
    for n0, B, oy0, R in bands.chunks:
        cols = bands.columns(x, n0, B, oy0, R)
        dyc = _read_positions(dy, n0, B, oy0, R)  # (O, P)
        P = dyc.shape[1]
        dy_t = dyc.reshape(groups, O // groups, P).transpose(0, 2, 1)  # (G, P, O/G)
        # dw_t += cols @ dy^T, BLAS's beta = 1: no weight-sized temporary
        gemm_batch.products(cols.reshape(groups, Cg * kh * kw, P), dy_t, dw_t, accumulate=True)
    return np.ascontiguousarray(dw_t.transpose(0, 2, 1)).reshape(O, Cg, kh, kw)


def _forward_and_weight_grad_by_bands(x, w, g, stride, padding, dilation, groups):
    """``_forward_by_bands`` and ``_weight_grad_by_bands`` in one pass over the chunks: each
    chunk's columns of x feed both products."""
    x, w, g = np.ascontiguousarray(x), np.ascontiguousarray(w), np.ascontiguousarray(g)
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    out_size = conv_output_size_2d((H, W), (kh, kw), stride, padding, dilation)
    bands = _Bands(N, C, out_size, (kh, kw), stride, padding, dilation, x.dtype)
    depth = Cg * kh * kw
    wg = w.reshape(groups, O // groups, depth)  # (G, O/G, C/G*kh*kw)
    y = np.empty((N, O) + out_size, dtype=x.dtype)
    dw_t = np.zeros((groups, depth, O // groups), dtype=x.dtype)
    for n0, B, oy0, R in bands.chunks:
        cols = bands.columns(x, n0, B, oy0, R)
        out = _output_positions(y, n0, B, oy0, R)  # (O, B*R*Wo)
        P = out.shape[1]
        cols_g = cols.reshape(groups, depth, P)
        np.matmul(wg, cols_g, out=out.reshape(groups, O // groups, P, copy=False))
        _store_positions(y, out, n0, B)
        gc = _read_positions(g, n0, B, oy0, R)  # (O, P)
        gc_t = gc.reshape(groups, O // groups, P).transpose(0, 2, 1)
        gemm_batch.products(cols_g, gc_t, dw_t, accumulate=True)
    return y, np.ascontiguousarray(dw_t.transpose(0, 2, 1)).reshape(O, Cg, kh, kw)

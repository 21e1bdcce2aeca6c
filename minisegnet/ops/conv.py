"""2-D convolution as im2col + matrix product (GEMM), with stride, padding, dilation and groups.

What it computes (a cross-correlation, as in every deep-learning framework). With G groups, output
channel o belongs to group g = o // (O/G) and sees only the input channels of that group:

    y[n, o, oy, ox] = b[o] + sum over c < C/G, ky < kh, kx < kw of
                      w[o, c, ky, kx] * x_pad[n, g*C/G + c, oy*sh + ky*dh, ox*sw + kx*dw]

x_pad is x with ph zero rows above and below and pw zero columns left and right.

Shapes:  x (N, C, H, W),  w (O, C/G, kh, kw),  b (O,)  ->  y (N, O, Ho, Wo)
         Ho = floor((H + 2*ph - dh*(kh-1) - 1) / sh) + 1          (Wo the same with w, pw, ...)
         dh*(kh-1) + 1 is the dilated kernel's extent; it must fit in the padded input.

im2col. Copy every window into a column, so that the convolution becomes one matrix product:

    cols[n, c*kh*kw + ky*kw + kx, oy*Wo + ox] = x_pad[n, c, oy*sh + ky*dh, ox*sw + kx*dw]
    y[n] = w.reshape(O, C*kh*kw) @ cols[n]                  # (O, Ho*Wo), per group: its rows

col2im. The adjoint (transpose) of im2col: every input pixel receives the sum of the column entries
that were copied from it,

    x[n, c, h, w] = sum over ky, kx of cols[n, c*kh*kw + ky*kw + kx, oy*Wo + ox]
                    where oy = (h + ph - ky*dh) / sh and ox = (w + pw - kx*dw) / sw are whole
                    numbers inside the output,

which the kernels compute as a gather: each destination pixel collects its own taps, so parallel
iterations never write the same element (no atomics, deterministic).

Backward, with dy the gradient of y:

    db = sum over n, oy, ox of dy
    dw = sum over n of dy[n] @ cols[n]^T                    (im2col, then GEMM)
    dx = col2im(w^T @ dy[n])                                (GEMM, then col2im)

A transposed convolution (``ops/conv_transpose.py``) is the same three pieces used the other way
round: its forward is ``dx`` above, its backward-data is this file's forward.

Memory. cols is kh*kw times bigger than x (576 rows of 128*128 floats for a 3x3 conv over 64
channels: 38 MB per image), so it is never built for the whole batch. The drivers walk the batch
in *chunks* whose column buffer stays under ``CHUNK_BYTES``: several small images at once, or a
band of output rows of one large image. Peak memory does not grow with the batch.

Fast path. A 1x1 convolution with stride 1 and no padding needs no im2col at all: the columns
are the input itself, ``y[n] = w.reshape(O, C) @ x[n].reshape(C, H*W)``.

Time. The three matrix products are almost all of it (about 9.7 GFLOP each for a 3x3 conv
64->64 on 8 images of 128x128); im2col and col2im are memory copies (38 MB of columns per
image) that add about 15% on one core. The Numba kernels and OpenBLAS take turns on the same
cores at every chunk, so both thread pools must sleep rather than spin when idle
(OMP_WAIT_POLICY=PASSIVE for Numba's OpenMP layer); with spinning workers each switch costs
milliseconds.

Worked example (one channel, 3x3 input, 2x2 kernel, stride 1, no padding):

    x = [[1, 2, 3],     cols = [[1, 2, 4, 5],     (row ky*2+kx, column oy*2+ox)
         [4, 5, 6],             [2, 3, 5, 6],
         [7, 8, 9]]             [4, 5, 7, 8],
                                [5, 6, 8, 9]]
    w = [[1, 0], [0, -1]]  ->  y = [1, 0, 0, -1] @ cols = [-4, -4, -4, -4]  -> reshaped 2x2

Implementations, by backend (the same algorithm everywhere: im2col/col2im around matmuls):
    numpy     im2col_ref / col2im_ref (the definitions) inside the image-chunk driver
    numba     band-chunk driver around the Numba kernels im2col_chunk_numba/col2im_chunk_numba
              (in ops/conv_chunks.py, shared with ops/conv_row_shift.py);
              im2col_numba / col2im_numba are the contract functions built on those kernels.
              With vertical stride 1 and kh >= ROW_SHIFT_MIN_KH (one group), forward and
              both backward products take the row-shift variant in ops/conv_row_shift.py: im2col along
              the width only, kh products over shifted views (7x fewer copies for 7x7).
              Stride-1 3x3 convolutions with enough channels (conv_winograd.applies) take
              Winograd F(2x2, 3x3) in ops/conv_winograd.py first
    cuda      implicit GEMM (minisegnet/cuda/implicit_gemm.py: the im2col gather done while the
              tiles load, one launch per product) when CUDA_IMPLICIT_GEMM is True; else, and
              as the readable reference, minisegnet.cuda.conv.im2col / col2im inside the
              image-chunk driver (cupy.matmul, i.e. cuBLAS)
"""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager

import numpy as np

from minisegnet import backend
from minisegnet.arrays import array_module
from minisegnet.autograd import Function
from minisegnet.ops import conv_winograd
from minisegnet.ops.conv_chunks import col2im_chunk_numba, im2col_chunk_numba
from minisegnet.ops.geometry import conv_output_size, conv_output_size_2d, pair

__all__ = [
    "Conv2d",
    "conv_output_size",
    "im2col_ref",
    "col2im_ref",
    "im2col_numba",
    "col2im_numba",
    "conv2d_gemm",
    "conv2d_data_grad",
    "conv2d_weight_grad",
    "chunk_bytes",
    "release_scratch",
    "CHUNK_BYTES",
    "POINTWISE_FAST_PATH",
    "CUDA_IMPLICIT_GEMM",
    "cuda_implicit_gemm",
]

CHUNK_BYTES = 16 * 2**20
"""Budget for one chunk's column buffer (bytes). Change with ``with chunk_bytes(n):``."""

POINTWISE_FAST_PATH = True
"""Use the im2col-free path for 1x1 / stride 1 / no padding convolutions (tests switch it off)."""

CUDA_IMPLICIT_GEMM = True
"""cuda / cuda-emu backends: convolve with the implicit-GEMM kernels (``cuda/implicit_gemm.py``);
False: im2col + cuBLAS by image chunks (the readable reference and fallback)."""

ROW_SHIFT = True
"""Let the numba backend use ``ops/conv_row_shift.py`` where it applies (tests switch it off)."""

ROW_SHIFT_MIN_KH = 3
"""Smallest kernel height that takes the row-shift path (measured: see ``conv_row_shift``)."""

_GROUP_IMAGES_BELOW = 1024
"""Images with fewer output positions than this are batched into one GEMM (a per-image product
would be too thin to run BLAS well); larger ones run one image (or one band of rows) at a time."""


@contextmanager
def row_shift(enabled: bool, min_kh: int | None = None):
    """Temporarily allow or forbid the numba backend's row-shift path, optionally from kernel
    height ``min_kh`` on (tests compare both paths, on small kernels too)."""
    global ROW_SHIFT, ROW_SHIFT_MIN_KH
    previous = ROW_SHIFT, ROW_SHIFT_MIN_KH
    ROW_SHIFT = bool(enabled)
    if min_kh is not None:
        ROW_SHIFT_MIN_KH = int(min_kh)
    try:
        yield
    finally:
        ROW_SHIFT, ROW_SHIFT_MIN_KH = previous


@contextmanager
def cuda_implicit_gemm(enabled: bool):
    """Temporarily choose the cuda path: implicit GEMM (True) or im2col + cuBLAS (False)."""
    global CUDA_IMPLICIT_GEMM
    previous = CUDA_IMPLICIT_GEMM
    CUDA_IMPLICIT_GEMM = bool(enabled)
    try:
        yield
    finally:
        CUDA_IMPLICIT_GEMM = previous


@contextmanager
def chunk_bytes(n: int):
    """Temporarily set the column-buffer budget: ``with chunk_bytes(1): ...`` forces one output
    row per chunk (tests use it to check chunking changes nothing)."""
    global CHUNK_BYTES
    previous = CHUNK_BYTES
    CHUNK_BYTES = int(n)
    try:
        yield
    finally:
        CHUNK_BYTES = previous


# ------------------------------------------------------------------------------------------------
# Arguments and sizes
# ------------------------------------------------------------------------------------------------


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def check_geometry(op: str, stride, padding, dilation, groups):
    """Normalise stride/padding/dilation to (h, w) pairs and check their ranges."""
    stride = pair(op, "stride", stride)
    padding = pair(op, "padding", padding)
    dilation = pair(op, "dilation", dilation)
    if min(stride) < 1:
        raise ValueError(f"{op}: stride must be >= 1, got {stride}")
    if min(dilation) < 1:
        raise ValueError(f"{op}: dilation must be >= 1, got {dilation}")
    if min(padding) < 0:
        raise ValueError(f"{op}: padding must be >= 0, got {padding}")
    if not _is_int(groups) or groups < 1:
        raise ValueError(f"{op}: groups must be an int >= 1, got {groups!r}")
    return stride, padding, dilation, int(groups)


def check_tensors(op: str, x, w, b, out_channels: int):
    """Ranks and dtypes of input, weight and bias (shared by conv2d and conv_transpose2d)."""
    if x.ndim != 4:
        raise ValueError(f"{op}: input must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if w.ndim != 4:
        raise ValueError(f"{op}: weight must be 4-D, got shape {tuple(w.shape)}")
    if x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: input must be float32 or float64, got dtype {x.dtype}")
    if w.dtype != x.dtype:
        raise TypeError(
            f"{op}: weight dtype {w.dtype} differs from input dtype {x.dtype}; "
            "convert one of them with .to(dtype)"
        )
    if min(w.shape) < 1:
        raise ValueError(f"{op}: weight must not have an empty axis, got shape {tuple(w.shape)}")
    if min(x.shape[1:]) < 1:  # only the batch may be empty (N = 0 gives an empty output)
        raise ValueError(
            f"{op}: input must have non-empty channel and spatial axes, got shape {tuple(x.shape)}"
        )
    if b is not None:
        if tuple(b.shape) != (out_channels,):
            raise ValueError(
                f"{op}: bias must have shape ({out_channels},) (one per output channel), "
                f"got {tuple(b.shape)}"
            )
        if b.dtype != x.dtype:
            raise TypeError(f"{op}: bias dtype {b.dtype} differs from input dtype {x.dtype}")


def check_conv2d_args(x, w, b, stride, padding, dilation, groups):
    """Validate conv2d's arguments; return (stride, padding, dilation, groups) as ints/pairs."""
    op = "conv2d"
    stride, padding, dilation, groups = check_geometry(op, stride, padding, dilation, groups)
    check_tensors(op, x, w, b, w.shape[0] if w.ndim == 4 else -1)
    c, o = x.shape[1], w.shape[0]
    if c % groups:
        raise ValueError(f"{op}: input channels ({c}) must be divisible by groups={groups}")
    if o % groups:
        raise ValueError(
            f"{op}: out_channels (weight.shape[0] = {o}) must be divisible by groups={groups}"
        )
    if w.shape[1] * groups != c:
        raise ValueError(
            f"{op}: input has {c} channels but weight of shape {tuple(w.shape)} with "
            f"groups={groups} expects weight.shape[1]*groups = {w.shape[1] * groups}"
        )
    (h, wd), (kh, kw) = x.shape[2:], w.shape[2:]
    extent = (dilation[0] * (kh - 1) + 1, dilation[1] * (kw - 1) + 1)
    padded = (h + 2 * padding[0], wd + 2 * padding[1])
    if extent[0] > padded[0] or extent[1] > padded[1]:
        raise ValueError(
            f"{op}: the dilated kernel ({extent[0]}x{extent[1]}: kernel {kh}x{kw}, dilation "
            f"{dilation}) is larger than the padded input ({padded[0]}x{padded[1]})"
        )
    return stride, padding, dilation, groups


def _is_pointwise(kernel, stride, padding) -> bool:
    return POINTWISE_FAST_PATH and kernel == (1, 1) and stride == (1, 1) and padding == (0, 0)


# ------------------------------------------------------------------------------------------------
# NumPy reference: the definitions
# ------------------------------------------------------------------------------------------------


def im2col_ref(x, kernel, stride, padding, dilation):
    """x (B, C, H, W) -> cols (B, C*kh*kw, Ho*Wo); row c*kh*kw + ky*kw + kx, column oy*Wo + ox.

    For each tap (ky, kx) the entries of all windows form one strided slice of the padded input.
    """
    xp = array_module(x)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    B, C, H, W = x.shape
    Ho, Wo = conv_output_size_2d((H, W), kernel, stride, padding, dilation)
    x_pad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))  # (B, C, H+2ph, W+2pw)
    cols = xp.empty((B, C, kh, kw, Ho, Wo), dtype=x.dtype)
    for ky in range(kh):
        for kx in range(kw):
            top, left = ky * dh, kx * dw  # where tap (ky, kx) of window (0, 0) reads
            cols[:, :, ky, kx] = x_pad[
                :, :, top : top + sh * (Ho - 1) + 1 : sh, left : left + sw * (Wo - 1) + 1 : sw
            ]
    return cols.reshape(B, C * kh * kw, Ho * Wo)


def col2im_ref(cols, in_size, kernel, stride, padding, dilation):
    """cols (B, C*kh*kw, Ho*Wo) -> x (B, C, H, W): the adjoint of im2col_ref.

    The same strided slices as im2col, now added back into the padded image; the padding border
    is then cut off (gradient that flowed into zero padding goes nowhere). NumPy's slice ``+=``
    has no race (each tap is one whole-array statement); the Numba and CUDA kernels compute the
    same sums as a per-pixel gather.
    """
    xp = array_module(cols)
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    H, W = in_size
    Ho, Wo = conv_output_size_2d((H, W), kernel, stride, padding, dilation)
    B = cols.shape[0]
    C = cols.shape[1] // (kh * kw)
    cols = cols.reshape(B, C, kh, kw, Ho, Wo)
    x_pad = xp.zeros((B, C, H + 2 * ph, W + 2 * pw), dtype=cols.dtype)
    for ky in range(kh):
        for kx in range(kw):
            top, left = ky * dh, kx * dw
            x_pad[
                :, :, top : top + sh * (Ho - 1) + 1 : sh, left : left + sw * (Wo - 1) + 1 : sw
            ] += cols[:, :, ky, kx]
    return x_pad[:, :, ph : ph + H, pw : pw + W].copy()


def _kernel_args(kernel, stride, padding, dilation):
    return (*kernel, *stride, *padding, *dilation)


def im2col_numba(x, kernel, stride, padding, dilation):
    """Same contract as im2col_ref: x (B, C, H, W) -> cols (B, C*kh*kw, Ho*Wo)."""
    x = np.ascontiguousarray(x)
    B, C, H, W = x.shape
    Ho, Wo = conv_output_size_2d((H, W), kernel, stride, padding, dilation)
    rows = C * kernel[0] * kernel[1]
    cols = np.empty((B, rows, Ho * Wo), dtype=x.dtype)
    for n in range(B):  # cols[n] is the chunk "image n, all rows" in the kernel's layout
        view = cols[n].reshape(rows, 1, Ho, Wo)
        im2col_chunk_numba(x, view, n, 0, *_kernel_args(kernel, stride, padding, dilation))
    return cols


def col2im_numba(cols, in_size, kernel, stride, padding, dilation):
    """Same contract as col2im_ref: cols (B, C*kh*kw, Ho*Wo) -> x (B, C, H, W)."""
    cols = np.ascontiguousarray(cols)
    B, rows, _ = cols.shape
    H, W = in_size
    Ho, Wo = conv_output_size_2d((H, W), kernel, stride, padding, dilation)
    x = np.zeros((B, rows // (kernel[0] * kernel[1]), H, W), dtype=cols.dtype)
    for n in range(B):
        view = cols[n].reshape(rows, 1, Ho, Wo)
        col2im_chunk_numba(view, x, n, 0, *_kernel_args(kernel, stride, padding, dilation))
    return x


def _im2col_impl():
    return backend.pick(
        "im2col",
        numpy=im2col_ref,
        numba=im2col_numba,
        cuda=backend.lazy("minisegnet.cuda.conv", "im2col"),
    )


def _col2im_impl():
    return backend.pick(
        "col2im",
        numpy=col2im_ref,
        numba=col2im_numba,
        cuda=backend.lazy("minisegnet.cuda.conv", "col2im"),
    )


# ------------------------------------------------------------------------------------------------
# Drivers: the three products of a convolution, chunk by chunk
# ------------------------------------------------------------------------------------------------
# conv2d_gemm         y  = conv(x, w)             im2col, then GEMM       (conv forward)
# conv2d_data_grad    dx = conv^T(dy, w)          GEMM, then col2im       (conv backward-data)
# conv2d_weight_grad  dw = sum dy @ cols^T        im2col, then GEMM       (conv backward-weight)
#
# Weights are viewed with a group axis, w (G, O/G, C/G*kh*kw), and columns as (.., G, C/G*kh*kw,
# positions), so one batched matmul serves every group.


def conv2d_gemm(x, w, stride, padding, dilation, groups, bias=None):
    """y (N, O, Ho, Wo) = conv2d(x, w) (+ bias); arguments already checked and normalised."""
    if x.shape[0] == 0:  # an empty batch: an empty output (the kernels' chunking needs N >= 1)
        size = conv_output_size_2d(x.shape[2:], w.shape[2:], stride, padding, dilation)
        return array_module(x).empty((0, w.shape[0]) + size, x.dtype)
    impl = backend.pick("conv2d", numpy=_gemm_by_images, numba=_gemm_numba, cuda=_gemm_cuda)
    return impl(x, w, stride, padding, dilation, groups, bias)


def conv2d_data_grad(dy, w, in_size, stride, padding, dilation, groups):
    """dx (N, C, H, W) from dy (N, O, Ho, Wo), where (Ho, Wo) follow from in_size = (H, W)."""
    if dy.shape[0] == 0:  # an empty batch
        return array_module(dy).empty((0, w.shape[1] * groups) + tuple(in_size), dy.dtype)
    impl = backend.pick(
        "conv2d", numpy=_data_grad_by_images, numba=_data_grad_numba, cuda=_data_grad_cuda,
    )  # fmt: skip
    return impl(dy, w, in_size, stride, padding, dilation, groups)


def conv2d_weight_grad(x, dy, kernel, stride, padding, dilation, groups):
    """dw (O, C/G, kh, kw) from the input x (N, C, H, W) and dy (N, O, Ho, Wo)."""
    if x.shape[0] == 0:  # an empty batch: nothing to sum
        shape = (dy.shape[1], x.shape[1] // groups) + tuple(kernel)
        return array_module(x).zeros(shape, x.dtype)
    impl = backend.pick(
        "conv2d", numpy=_weight_grad_by_images, numba=_weight_grad_numba,
        cuda=_weight_grad_cuda,
    )  # fmt: skip
    return impl(x, dy, kernel, stride, padding, dilation, groups)


GPU_CHUNK_BYTES = 512 * 2**20
"""The column budget on a GPU (cuda backend), for the im2col fallback: one chunk for most
layers, since each chunk costs a Python loop turn and its launches, and device memory is large."""


def _images_per_chunk(n: int, bytes_per_image: int) -> int:
    budget = GPU_CHUNK_BYTES if backend.current().is_gpu else CHUNK_BYTES
    return max(1, min(n, budget // max(1, bytes_per_image)))


# --- CUDA: implicit GEMM, or the image-chunk driver below as the fallback ---------------------


def _implicit_gemm(x_shape, w_shape, stride, padding, dilation):
    """The implicit-GEMM module when switched on and the sizes fit its 32-bit counters. A
    pointwise convolution keeps its fast path (no im2col there: one cuBLAS product is best)."""
    if not CUDA_IMPLICIT_GEMM:
        return None
    if POINTWISE_FAST_PATH and _is_pointwise(w_shape[2:], stride, padding):
        return None
    from minisegnet.cuda import implicit_gemm

    out = conv_output_size_2d(x_shape[2:], w_shape[2:], stride, padding, dilation)
    return implicit_gemm if implicit_gemm.fits(x_shape, w_shape, out) else None


def _gemm_cuda(x, w, stride, padding, dilation, groups, bias):
    ig = _implicit_gemm(x.shape, w.shape, stride, padding, dilation)
    if ig is None:
        return _gemm_by_images(x, w, stride, padding, dilation, groups, bias)
    return ig.conv2d_forward(x, w, bias, stride, padding, dilation, groups)


def _data_grad_cuda(dy, w, in_size, stride, padding, dilation, groups):
    x_shape = (dy.shape[0], w.shape[1] * groups) + tuple(in_size)
    ig = _implicit_gemm(x_shape, w.shape, stride, padding, dilation)
    if ig is None:
        return _data_grad_by_images(dy, w, in_size, stride, padding, dilation, groups)
    return ig.conv2d_data_grad(dy, w, in_size, stride, padding, dilation, groups)


def _weight_grad_cuda(x, dy, kernel, stride, padding, dilation, groups):
    w_shape = (dy.shape[1], x.shape[1] // groups) + tuple(kernel)
    ig = _implicit_gemm(x.shape, w_shape, stride, padding, dilation)
    if ig is None:
        return _weight_grad_by_images(x, dy, kernel, stride, padding, dilation, groups)
    return ig.conv2d_weight_grad(x, dy, kernel, stride, padding, dilation, groups)


# --- by images: NumPy reference and CUDA fallback -----------------------------------------------


def _gemm_by_images(x, w, stride, padding, dilation, groups, bias):
    xp = array_module(x)
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    Ho, Wo = conv_output_size_2d((H, W), (kh, kw), stride, padding, dilation)
    pointwise = _is_pointwise((kh, kw), stride, padding)
    im2col = _im2col_impl()
    wg = w.reshape(groups, O // groups, Cg * kh * kw)  # (G, O/G, C/G*kh*kw)
    y = xp.empty((N, O, Ho * Wo), dtype=x.dtype)
    step = _images_per_chunk(N, C * kh * kw * Ho * Wo * x.itemsize)
    for n0 in range(0, N, step):
        xc = x[n0 : n0 + step]  # (B, C, H, W)
        B = xc.shape[0]
        if pointwise:
            cols = xc.reshape(B, C, H * W)
        else:
            cols = im2col(xc, (kh, kw), stride, padding, dilation)  # (B, C*kh*kw, Ho*Wo)
        cols = cols.reshape(B, groups, Cg * kh * kw, Ho * Wo)
        y[n0 : n0 + B] = (wg @ cols).reshape(B, O, Ho * Wo)  # (B, G, O/G, Ho*Wo)
    y = y.reshape(N, O, Ho, Wo)
    if bias is not None:
        y += bias.reshape(1, O, 1, 1)
    return y


def _data_grad_by_images(dy, w, in_size, stride, padding, dilation, groups):
    xp = array_module(dy)
    N, O, Ho, Wo = dy.shape
    _, Cg, kh, kw = w.shape
    H, W = in_size
    C = Cg * groups
    pointwise = _is_pointwise((kh, kw), stride, padding)
    col2im = _col2im_impl()
    wt = w.reshape(groups, O // groups, Cg * kh * kw).transpose(0, 2, 1)  # (G, C/G*kh*kw, O/G)
    dx = xp.empty((N, C, H, W), dtype=dy.dtype)
    step = _images_per_chunk(N, C * kh * kw * Ho * Wo * dy.itemsize)
    for n0 in range(0, N, step):
        dyc = dy[n0 : n0 + step]
        B = dyc.shape[0]
        dcols = wt @ dyc.reshape(B, groups, O // groups, Ho * Wo)  # (B, G, C/G*kh*kw, Ho*Wo)
        dcols = dcols.reshape(B, C * kh * kw, Ho * Wo)
        if pointwise:
            dx[n0 : n0 + B] = dcols.reshape(B, C, H, W)
        else:
            dx[n0 : n0 + B] = col2im(dcols, (H, W), (kh, kw), stride, padding, dilation)
    return dx


def _weight_grad_by_images(x, dy, kernel, stride, padding, dilation, groups):
    xp = array_module(x)
    N, C, H, W = x.shape
    _, O, Ho, Wo = dy.shape
    kh, kw = kernel
    Cg = C // groups
    pointwise = _is_pointwise(kernel, stride, padding)
    im2col = _im2col_impl()
    dw = xp.zeros((groups, O // groups, Cg * kh * kw), dtype=x.dtype)
    step = _images_per_chunk(N, C * kh * kw * Ho * Wo * x.itemsize)
    for n0 in range(0, N, step):
        xc = x[n0 : n0 + step]
        B = xc.shape[0]
        cols = (
            xc.reshape(B, C, H * W) if pointwise else im2col(xc, kernel, stride, padding, dilation)
        )
        cols = cols.reshape(B, groups, Cg * kh * kw, Ho * Wo)
        dyc = dy[n0 : n0 + B].reshape(B, groups, O // groups, Ho * Wo)
        dw += (dyc @ cols.transpose(0, 1, 3, 2)).sum(axis=0)  # (G, O/G, C/G*kh*kw)
    return dw.reshape(O, Cg, kh, kw)


# --- Numba: row shifts where they apply, else bands ------------------------------------------


def _uses_row_shift(kernel, stride, padding, groups) -> bool:
    return (
        ROW_SHIFT
        and stride[0] == 1
        and kernel[0] >= max(2, ROW_SHIFT_MIN_KH)
        and groups == 1
        and not _is_pointwise(kernel, stride, padding)
    )


def _gemm_numba(x, w, stride, padding, dilation, groups, bias):
    if conv_winograd.applies(x.shape[1], w.shape[0], w.shape[2:], stride, dilation, groups):
        return conv_winograd.conv2d_forward(x, w, padding, bias, dilation)
    if _uses_row_shift(w.shape[2:], stride, padding, groups):
        from minisegnet.ops import conv_row_shift

        return conv_row_shift.conv2d_forward(x, w, stride, padding, dilation, bias)
    return _gemm_by_bands_numba(x, w, stride, padding, dilation, groups, bias)


def _data_grad_numba(dy, w, in_size, stride, padding, dilation, groups):
    if conv_winograd.applies(
        w.shape[1] * groups, w.shape[0], w.shape[2:], stride, dilation, groups
    ):
        return conv_winograd.conv2d_data_grad(dy, w, in_size, padding, dilation)
    kernel = w.shape[2:]
    if _uses_row_shift(kernel, stride, padding, groups):
        from minisegnet.ops import conv_row_shift

        if conv_row_shift.applies_to_data_grad(kernel, stride, padding, dilation):
            return conv_row_shift.conv2d_data_grad(dy, w, in_size, stride, padding, dilation)
    return _data_grad_by_bands_numba(dy, w, in_size, stride, padding, dilation, groups)


def _weight_grad_numba(x, dy, kernel, stride, padding, dilation, groups):
    if conv_winograd.applies(x.shape[1], dy.shape[1], kernel, stride, dilation, groups):
        return conv_winograd.conv2d_weight_grad(x, dy, padding, dilation)
    if _uses_row_shift(kernel, stride, padding, groups):
        from minisegnet.ops import conv_row_shift

        return conv_row_shift.conv2d_weight_grad(x, dy, kernel, stride, padding, dilation)
    return _weight_grad_by_bands_numba(x, dy, kernel, stride, padding, dilation, groups)


# --- by bands: Numba ------------------------------------------------------------------------


def _chunks(n, ho, rows, wo, itemsize):
    """Chunks (n0, B, oy0, R) covering n images of ho output rows; rows = C*kh*kw.

    Small outputs: B whole images per chunk (as many as the budget allows). Large outputs: one
    image at a time, in bands of R output rows sized to the budget (bands of equal height).
    """
    row_bytes = rows * wo * itemsize  # columns of one output row of one image
    if ho * wo < _GROUP_IMAGES_BELOW and ho * row_bytes <= CHUNK_BYTES:
        step = _images_per_chunk(n, ho * row_bytes)
        step = math.ceil(n / math.ceil(n / step))  # equal chunks: 7 images, budget 4 -> 4, 3
        return [(n0, min(step, n - n0), 0, ho) for n0 in range(0, n, step)]
    band = min(ho, max(1, CHUNK_BYTES // max(1, row_bytes)))
    band = math.ceil(ho / math.ceil(ho / band))
    return [(n0, 1, oy0, min(band, ho - oy0)) for n0 in range(n) for oy0 in range(0, ho, band)]


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


_scratch = threading.local()


def scratch_memory(nbytes: int) -> np.ndarray:
    """At least ``nbytes`` of this thread's column memory (uint8), grown when too small and kept
    for the next call. One convolution product uses it at a time."""
    memory = getattr(_scratch, "memory", None)
    if memory is None or memory.nbytes < nbytes:
        memory = _scratch.memory = np.empty(nbytes, dtype=np.uint8)
    return memory


class _ColumnBuffer:
    """The chunks' column matrix, in memory kept from call to call (per thread): allocating and
    page-faulting tens of MB at every layer would cost a few ms each time. Its size is the
    largest chunk's, so it is bounded by CHUNK_BYTES (or one output row, if that is larger)."""

    def __init__(self, rows, chunks, wo, dtype):
        size = rows * wo * max((B * R for _, B, _, R in chunks), default=0)
        self.rows, self.wo, self.dtype = rows, wo, np.dtype(dtype)
        self.memory = scratch_memory(size * self.dtype.itemsize)

    def get(self, B, R):  # (C*kh*kw, B, R, Wo), contiguous
        count = self.rows * B * R * self.wo
        flat = self.memory[: count * self.dtype.itemsize].view(self.dtype)
        return flat.reshape(self.rows, B, R, self.wo)


def release_scratch() -> None:
    """Free this thread's cached column memory (it is otherwise kept for the next call)."""
    _scratch.memory = None


def _gemm_by_bands_numba(x, w, stride, padding, dilation, groups, bias):
    x, w = np.ascontiguousarray(x), np.ascontiguousarray(w)
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    Ho, Wo = conv_output_size_2d((H, W), (kh, kw), stride, padding, dilation)
    pointwise = _is_pointwise((kh, kw), stride, padding)
    rows = C * kh * kw
    wg = w.reshape(groups, O // groups, Cg * kh * kw)  # (G, O/G, C/G*kh*kw)
    y = np.empty((N, O, Ho, Wo), dtype=x.dtype)
    chunks = _chunks(N, Ho, rows, Wo, x.itemsize)
    buffer = None if pointwise else _ColumnBuffer(rows, chunks, Wo, x.dtype)
    args = _kernel_args((kh, kw), stride, padding, dilation)
    for n0, B, oy0, R in chunks:
        if pointwise:
            cols = _read_positions(x, n0, B, oy0, R)  # the input is its own column matrix
        else:
            cols4 = buffer.get(B, R)
            im2col_chunk_numba(x, cols4, n0, oy0, *args)
            cols = cols4.reshape(rows, B * R * Wo)
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


def _data_grad_by_bands_numba(dy, w, in_size, stride, padding, dilation, groups):
    dy, w = np.ascontiguousarray(dy), np.ascontiguousarray(w)
    N, O, Ho, Wo = dy.shape
    _, Cg, kh, kw = w.shape
    H, W = in_size
    C = Cg * groups
    pointwise = _is_pointwise((kh, kw), stride, padding)
    rows = C * kh * kw
    wt = w.reshape(groups, O // groups, Cg * kh * kw).transpose(0, 2, 1)  # (G, C/G*kh*kw, O/G)
    chunks = _chunks(N, Ho, rows, Wo, dy.itemsize)
    args = _kernel_args((kh, kw), stride, padding, dilation)
    if pointwise:
        dx = np.empty((N, C, H, W), dtype=dy.dtype)
    else:
        dx = np.zeros((N, C, H, W), dtype=dy.dtype)  # bands add into it
        buffer = _ColumnBuffer(rows, chunks, Wo, dy.dtype)
    for n0, B, oy0, R in chunks:
        dyc = _read_positions(dy, n0, B, oy0, R)  # (O, P)
        P = dyc.shape[1]
        if pointwise:
            dcols = _output_positions(dx, n0, B, oy0, R)  # (C, P): dx itself when B == 1
        else:
            dcols4 = buffer.get(B, R)
            dcols = dcols4.reshape(rows, P)
        np.matmul(
            wt, dyc.reshape(groups, O // groups, P), out=dcols.reshape(groups, -1, P, copy=False)
        )
        if pointwise:
            _store_positions(dx, dcols, n0, B)
        else:
            col2im_chunk_numba(dcols4, dx, n0, oy0, *args)
    return dx


def _weight_grad_by_bands_numba(x, dy, kernel, stride, padding, dilation, groups):
    x, dy = np.ascontiguousarray(x), np.ascontiguousarray(dy)
    N, C, H, W = x.shape
    _, O, Ho, Wo = dy.shape
    kh, kw = kernel
    Cg = C // groups
    pointwise = _is_pointwise(kernel, stride, padding)
    rows = C * kh * kw
    chunks = _chunks(N, Ho, rows, Wo, x.itemsize)
    buffer = None if pointwise else _ColumnBuffer(rows, chunks, Wo, x.dtype)
    args = _kernel_args(kernel, stride, padding, dilation)
    # Accumulated transposed, dw^T = sum cols @ dy^T: BLAS runs this layout ~20% faster here.
    dw_t = np.zeros((groups, Cg * kh * kw, O // groups), dtype=x.dtype)
    part = np.empty_like(dw_t)
    for n0, B, oy0, R in chunks:
        if pointwise:
            cols = _read_positions(x, n0, B, oy0, R)
        else:
            cols4 = buffer.get(B, R)
            im2col_chunk_numba(x, cols4, n0, oy0, *args)
            cols = cols4.reshape(rows, B * R * Wo)
        dyc = _read_positions(dy, n0, B, oy0, R)  # (O, P)
        P = dyc.shape[1]
        dy_t = dyc.reshape(groups, O // groups, P).transpose(0, 2, 1)  # (G, P, O/G)
        np.matmul(cols.reshape(groups, Cg * kh * kw, P), dy_t, out=part)
        dw_t += part
    return np.ascontiguousarray(dw_t.transpose(0, 2, 1)).reshape(O, Cg, kh, kw)


# ------------------------------------------------------------------------------------------------
# The autograd Function
# ------------------------------------------------------------------------------------------------


def bias_grad(dy):
    """db[o] = sum over n, oy, ox of dy[n, o, oy, ox]."""
    N, O, Ho, Wo = dy.shape
    return dy.reshape(N, O, Ho * Wo).sum(axis=2).sum(axis=0)


class Conv2d(Function):
    """y = conv2d(x, w) + b; see the module docstring. ``b`` may be None."""

    def forward(self, x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
        stride, padding, dilation, groups = check_conv2d_args(
            x, w, b, stride, padding, dilation, groups
        )
        y = conv2d_gemm(x, w, stride, padding, dilation, groups, bias=b)
        self.save(
            x=x, w=w, has_bias=b is not None, stride=stride, padding=padding, dilation=dilation,
            groups=groups,
        )  # fmt: skip
        return y

    def backward(self, dy):
        s = self.saved
        xp = array_module(dy)
        dy = xp.ascontiguousarray(dy)
        geometry = (s.stride, s.padding, s.dilation, s.groups)
        dx = dw = None
        if self.needs_grad[0]:
            dx = conv2d_data_grad(dy, s.w, s.x.shape[2:], *geometry)
        if self.needs_grad[1]:
            dw = conv2d_weight_grad(s.x, dy, s.w.shape[2:], *geometry)
        if not s.has_bias:
            return dx, dw
        db = bias_grad(dy) if self.needs_grad[2] else None
        return dx, dw, db

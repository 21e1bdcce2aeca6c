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
in *chunks* whose column buffer stays under ``conv_chunks.CHUNK_BYTES``: several images at once,
or (the numba engine) a band of output rows of one large image. Peak memory does not grow with
the batch.

Fast path. A 1x1 convolution with stride 1 and no padding needs no im2col at all: the columns
are the input itself, ``y[n] = w.reshape(O, C) @ x[n].reshape(C, H*W)``
(``conv_chunks.POINTWISE_FAST_PATH = False`` turns it off, for tests).

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

Implementations, by backend (the same algorithm everywhere: im2col/col2im around matmuls), all
listed in the kernel table ``_KERNELS`` below:
    numpy     im2col_ref / col2im_ref (the definitions) inside the image-chunk driver of this file
    numba     the engine in ops/conv_engine.py: Winograd F(4x4)/F(6x6) for stride-1 3x3
              convolutions (ops/conv_winograd.py), the row-shift variant for vertical stride 1
              (ops/conv_row_shift.py: im2col along the width only, 7x fewer copies for 7x7; run
              as one product of all kernel rows by ops/conv_row_stack.py), and
              otherwise bands of output rows around the Numba kernels of ops/conv_chunks.py;
              im2col_numba / col2im_numba here are the contract functions built on those kernels
    cuda      implicit GEMM (minisegnet/cuda/implicit_gemm.py: the im2col gather done while the
              tiles load, one launch per product) when CUDA_IMPLICIT_GEMM is True; else, and
              as the readable reference, minisegnet.cuda.conv.im2col / col2im inside the
              image-chunk driver (cupy.matmul, i.e. cuBLAS)

The arguments are checked once, by ``functional.conv2d`` (``geometry.check_conv2d``); this file
trusts them: (h, w) pairs for stride, padding and dilation, an int groups.
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np

from minisegnet import backend
from minisegnet.arrays import array_module
from minisegnet.autograd import Function
from minisegnet.ops import conv_chunks, conv_engine
from minisegnet.ops.conv_chunks import col2im_chunk_numba, im2col_chunk_numba, kernel_args
from minisegnet.ops.geometry import conv_output_size, conv_output_size_2d

__all__ = [
    "Conv2d", "conv_output_size", "im2col_ref", "col2im_ref", "im2col_numba", "col2im_numba",
    "conv2d_gemm", "conv2d_data_grad", "conv2d_weight_grad", "conv2d_grads",
    "conv2d_forward_and_weight_grad", "bias_grad",
    "CUDA_IMPLICIT_GEMM",
    "cuda_implicit_gemm", "GPU_CHUNK_BYTES",
]  # fmt: skip

CUDA_IMPLICIT_GEMM = True
"""cuda / cuda-emu backends: convolve with the implicit-GEMM kernels (``cuda/implicit_gemm.py``);
False: im2col + cuBLAS by image chunks (the readable reference and fallback)."""

GPU_CHUNK_BYTES = 512 * 2**20
"""The column budget on a GPU (cuda backend), for the im2col fallback: one chunk for most
layers, since each chunk costs a Python loop turn and its launches, and device memory is large.
On the CPU the budget is ``conv_chunks.CHUNK_BYTES`` (16 MB)."""


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


# ------------------------------------------------------------------------------------------------
# Numba: the same contract on the chunk kernels of ops/conv_chunks.py
# ------------------------------------------------------------------------------------------------


def im2col_numba(x, kernel, stride, padding, dilation):
    """Same contract as im2col_ref: x (B, C, H, W) -> cols (B, C*kh*kw, Ho*Wo)."""
    x = np.ascontiguousarray(x)
    B, C, H, W = x.shape
    Ho, Wo = conv_output_size_2d((H, W), kernel, stride, padding, dilation)
    rows = C * kernel[0] * kernel[1]
    cols = np.empty((B, rows, Ho * Wo), dtype=x.dtype)
    for n in range(B):  # cols[n] is the chunk "image n, all rows" in the kernel's layout
        view = cols[n].reshape(rows, 1, Ho, Wo)
        im2col_chunk_numba(x, view, n, 0, *kernel_args(kernel, stride, padding, dilation))
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
        col2im_chunk_numba(view, x, n, 0, *kernel_args(kernel, stride, padding, dilation))
    return x


# ------------------------------------------------------------------------------------------------
# By images: the readable driver (numpy backend, and the cuda fallback)
# ------------------------------------------------------------------------------------------------
# conv2d_gemm         y  = conv(x, w)             im2col, then GEMM       (conv forward)
# conv2d_data_grad    dx = conv^T(dy, w)          GEMM, then col2im       (conv backward-data)
# conv2d_weight_grad  dw = sum dy @ cols^T        im2col, then GEMM       (conv backward-weight)
#
# Weights are viewed with a group axis, w (G, O/G, C/G*kh*kw), and columns as (.., G, C/G*kh*kw,
# positions), so one batched matmul serves every group.


def _image_chunks(n: int, column_bytes: int):
    """Slices of the batch whose columns (``column_bytes`` per image) fit the budget."""
    budget = GPU_CHUNK_BYTES if backend.current().is_gpu else conv_chunks.CHUNK_BYTES
    step = max(1, min(n, budget // max(1, column_bytes)))
    return [slice(n0, n0 + step) for n0 in range(0, n, step)]


def _columns(xc, kernel, stride, padding, dilation):
    """cols (B, C*kh*kw, Ho*Wo) of the images xc: the images themselves for a pointwise conv."""
    if conv_chunks.is_pointwise(kernel, stride, padding):
        return xc.reshape(xc.shape[0], xc.shape[1], -1)
    return _impl("im2col")(xc, kernel, stride, padding, dilation)


def _gemm_by_images(x, w, stride, padding, dilation, groups, bias):
    xp = array_module(x)
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    Ho, Wo = conv_output_size_2d((H, W), (kh, kw), stride, padding, dilation)
    wg = w.reshape(groups, O // groups, Cg * kh * kw)  # (G, O/G, C/G*kh*kw)
    y = xp.empty((N, O, Ho * Wo), dtype=x.dtype)
    for images in _image_chunks(N, C * kh * kw * Ho * Wo * x.itemsize):
        xc = x[images]  # (B, C, H, W)
        B = xc.shape[0]
        cols = _columns(xc, (kh, kw), stride, padding, dilation)  # (B, C*kh*kw, Ho*Wo)
        cols = cols.reshape(B, groups, Cg * kh * kw, Ho * Wo)
        y[images] = (wg @ cols).reshape(B, O, Ho * Wo)  # (B, G, O/G, Ho*Wo)
    y = y.reshape(N, O, Ho, Wo)
    if bias is not None:
        y += bias.reshape(1, O, 1, 1)
    return y


def _data_grad_by_images(dy, w, in_size, stride, padding, dilation, groups):
    xp = array_module(dy)
    N, O, Ho, Wo = dy.shape
    _, Cg, kh, kw = w.shape
    C = Cg * groups
    pointwise = conv_chunks.is_pointwise((kh, kw), stride, padding)
    wt = w.reshape(groups, O // groups, Cg * kh * kw).transpose(0, 2, 1)  # (G, C/G*kh*kw, O/G)
    dx = xp.empty((N, C) + tuple(in_size), dtype=dy.dtype)
    for images in _image_chunks(N, C * kh * kw * Ho * Wo * dy.itemsize):
        dyc = dy[images]
        B = dyc.shape[0]
        dcols = wt @ dyc.reshape(B, groups, O // groups, Ho * Wo)  # (B, G, C/G*kh*kw, Ho*Wo)
        dcols = dcols.reshape(B, C * kh * kw, Ho * Wo)
        if pointwise:
            dx[images] = dcols.reshape(B, C, *in_size)
        else:
            dx[images] = _impl("col2im")(dcols, in_size, (kh, kw), stride, padding, dilation)
    return dx


def _weight_grad_by_images(x, dy, kernel, stride, padding, dilation, groups):
    xp = array_module(x)
    N, C, H, W = x.shape
    _, O, Ho, Wo = dy.shape
    kh, kw = kernel
    Cg = C // groups
    dw = xp.zeros((groups, O // groups, Cg * kh * kw), dtype=x.dtype)
    for images in _image_chunks(N, C * kh * kw * Ho * Wo * x.itemsize):
        xc = x[images]
        B = xc.shape[0]
        cols = _columns(xc, kernel, stride, padding, dilation)
        cols = cols.reshape(B, groups, Cg * kh * kw, Ho * Wo)
        dyc = dy[images].reshape(B, groups, O // groups, Ho * Wo)
        dw += (dyc @ cols.transpose(0, 1, 3, 2)).sum(axis=0)  # (G, O/G, C/G*kh*kw)
    return dw.reshape(O, Cg, kh, kw)


# ------------------------------------------------------------------------------------------------
# CUDA: implicit GEMM, or the image-chunk driver above as the fallback
# ------------------------------------------------------------------------------------------------


def _implicit_gemm(x_shape, w_shape, stride, padding, dilation):
    """The implicit-GEMM module when switched on and the sizes fit its 32-bit counters. A
    pointwise convolution keeps its fast path (no im2col there: one cuBLAS product is best)."""
    if not CUDA_IMPLICIT_GEMM or conv_chunks.is_pointwise(w_shape[2:], stride, padding):
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


def _grads_one_by_one(dy, x, w, stride, padding, dilation, groups, need_dx, need_dw):
    """Both gradients by the two functions below (each dispatched by backend)."""
    geometry = (stride, padding, dilation, groups)
    dx = conv2d_data_grad(dy, w, x.shape[2:], *geometry) if need_dx else None
    dw = conv2d_weight_grad(x, dy, w.shape[2:], *geometry) if need_dw else None
    return dx, dw


def _forward_and_weight_grad_one_by_one(x, w, g, stride, padding, dilation, groups):
    """(conv2d(x, w), the weight gradient from x and g), as two calls of the current backend."""
    geometry = (stride, padding, dilation, groups)
    return conv2d_gemm(x, w, *geometry), conv2d_weight_grad(x, g, tuple(w.shape[2:]), *geometry)


# ------------------------------------------------------------------------------------------------
# The kernel table and the three products
# ------------------------------------------------------------------------------------------------
# Every implementation of each product, by backend: the table a reader (and grep) reads. The
# numba engine (Winograd, row shifts, bands) is in ops/conv_engine.py.
_KERNELS = {
    "im2col": {
        "numpy": im2col_ref, "numba": im2col_numba,
        "cuda": backend.lazy("minisegnet.cuda.conv", "im2col"),
    },
    "col2im": {
        "numpy": col2im_ref, "numba": col2im_numba,
        "cuda": backend.lazy("minisegnet.cuda.conv", "col2im"),
    },
    "conv2d_forward": {
        "numpy": _gemm_by_images, "numba": conv_engine.conv2d_forward, "cuda": _gemm_cuda,
    },
    "conv2d_data_grad": {
        "numpy": _data_grad_by_images, "numba": conv_engine.conv2d_data_grad,
        "cuda": _data_grad_cuda,
    },
    "conv2d_weight_grad": {
        "numpy": _weight_grad_by_images, "numba": conv_engine.conv2d_weight_grad,
        "cuda": _weight_grad_cuda,
    },
    "conv2d_grads": {  # both gradients; numba shares work between them (Winograd)
        "numpy": _grads_one_by_one, "numba": conv_engine.conv2d_grads,
        "cuda": _grads_one_by_one,
    },
    "conv2d_forward_and_weight_grad": {  # a transposed convolution's backward; numba shares
        # the im2col of the band path between the two products
        "numpy": _forward_and_weight_grad_one_by_one,
        "numba": conv_engine.conv2d_forward_and_weight_grad,
        "cuda": _forward_and_weight_grad_one_by_one,
    },
}  # fmt: skip


def _impl(op: str):
    """The current backend's implementation of ``op`` (a key of ``_KERNELS``)."""
    return backend.pick(op, **_KERNELS[op])


def conv2d_gemm(x, w, stride, padding, dilation, groups, bias=None):
    """y (N, O, Ho, Wo) = conv2d(x, w) (+ bias); arguments already checked and normalised."""
    if x.shape[0] == 0:  # an empty batch: an empty output (the kernels' chunking needs N >= 1)
        size = conv_output_size_2d(x.shape[2:], w.shape[2:], stride, padding, dilation)
        return array_module(x).empty((0, w.shape[0]) + size, x.dtype)
    return _impl("conv2d_forward")(x, w, stride, padding, dilation, groups, bias)


def conv2d_data_grad(dy, w, in_size, stride, padding, dilation, groups):
    """dx (N, C, H, W) from dy (N, O, Ho, Wo), where (Ho, Wo) follow from in_size = (H, W)."""
    if dy.shape[0] == 0:  # an empty batch
        return array_module(dy).empty((0, w.shape[1] * groups) + tuple(in_size), dy.dtype)
    return _impl("conv2d_data_grad")(dy, w, in_size, stride, padding, dilation, groups)


def conv2d_weight_grad(x, dy, kernel, stride, padding, dilation, groups):
    """dw (O, C/G, kh, kw) from the input x (N, C, H, W) and dy (N, O, Ho, Wo)."""
    if x.shape[0] == 0:  # an empty batch: nothing to sum
        shape = (dy.shape[1], x.shape[1] // groups) + tuple(kernel)
        return array_module(x).zeros(shape, x.dtype)
    return _impl("conv2d_weight_grad")(x, dy, kernel, stride, padding, dilation, groups)


def conv2d_grads(dy, x, w, stride, padding, dilation, groups, need_dx=True, need_dw=True):
    """(dx or None, dw or None): ``conv2d_data_grad`` and ``conv2d_weight_grad`` of the same
    convolution, computed together where the backend shares work between them."""
    if x.shape[0] == 0:  # an empty batch: the one-by-one functions know what to return
        return _grads_one_by_one(dy, x, w, stride, padding, dilation, groups, need_dx, need_dw)
    return _impl("conv2d_grads")(dy, x, w, stride, padding, dilation, groups, need_dx, need_dw)


# ------------------------------------------------------------------------------------------------
# The autograd Function
# ------------------------------------------------------------------------------------------------


def conv2d_forward_and_weight_grad(x, w, g, stride, padding, dilation, groups):
    """(conv2d(x, w) without bias, the weight gradient of a convolution of x whose output
    gradient is g): both halves of a transposed convolution's backward, in one pass where the
    backend can share work (``_KERNELS``)."""
    if x.shape[0] == 0:  # an empty batch: the one-by-one functions know what to return
        return _forward_and_weight_grad_one_by_one(x, w, g, stride, padding, dilation, groups)
    return _impl("conv2d_forward_and_weight_grad")(x, w, g, stride, padding, dilation, groups)


def bias_grad(dy):
    """db[o] = sum over n, oy, ox of dy[n, o, oy, ox]."""
    N, O, Ho, Wo = dy.shape
    return dy.reshape(N, O, Ho * Wo).sum(axis=2).sum(axis=0)


def with_bias_grad(function: Function, dy, dx, dw):
    """A convolution's gradients (dx, dw), plus db when it was called with a bias (shared by
    Conv2d and ConvTranspose2d, whose bias gradients are the same sum)."""
    if not function.saved.has_bias:
        return dx, dw
    return dx, dw, bias_grad(dy) if function.needs_grad[2] else None


class Conv2d(Function):
    """y = conv2d(x, w) + b; see the module docstring. ``b`` may be None. Arguments as
    ``geometry.check_conv2d`` returns them: (h, w) pairs and an int ``groups``."""

    def forward(self, x, w, b, stride, padding, dilation, groups):
        y = conv2d_gemm(x, w, stride, padding, dilation, groups, bias=b)
        self.save(
            x=x, w=w, has_bias=b is not None, stride=stride, padding=padding, dilation=dilation,
            groups=groups,
        )  # fmt: skip
        return y

    def backward(self, dy):
        s = self.saved
        dy = array_module(dy).ascontiguousarray(dy)
        geometry = (s.stride, s.padding, s.dilation, s.groups)
        dx, dw = conv2d_grads(dy, s.x, s.w, *geometry, self.needs_grad[0], self.needs_grad[1])
        return with_bias_grad(self, dy, dx, dw)

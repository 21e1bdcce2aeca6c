"""im2col and col2im as CUDA kernels (``kernels/conv.cu``), for the ``cuda`` and ``cuda-emu``
backends.

Kernels launched: ``im2col<T>`` and ``col2im<T>`` (T = float, double), one thread per
destination element; col2im gathers (no atomics). The matrix products of a convolution are not
here: ``ops/conv.py`` calls ``xp.matmul`` (cuBLAS on a GPU through CuPy, NumPy on cuda-emu).

    im2col(x, kernel, stride, padding, dilation) -> cols
        x (B, C, H, W) -> cols (B, C*kh*kw, Ho*Wo); row c*kh*kw + ky*kw + kx; zero padding
        Ho = (H + 2*ph - dh*(kh-1) - 1) // sh + 1, Wo likewise
    col2im(cols, in_size, kernel, stride, padding, dilation) -> x
        cols (B, C*kh*kw, Ho*Wo) -> x (B, C, H, W), the adjoint of im2col (sums overlaps)
"""

from __future__ import annotations

from minisegnet.arrays import array_module
from minisegnet.cuda.launch import check_array, ctype, grid_1d, int32, launch
from minisegnet.ops.geometry import conv_output_size_2d, pair

__all__ = ["im2col", "col2im"]

SOURCE = "conv.cu"


def _geometry(op, kernel, stride, padding, dilation):
    return (
        pair(op, "kernel", kernel, 1),
        pair(op, "stride", stride, 1),
        pair(op, "padding", padding, 0),
        pair(op, "dilation", dilation, 1),
    )


def _ints(b, c, h, w, kernel, stride, padding, dilation, ho, wo) -> tuple:
    """The int parameters im2col<T> and col2im<T> share, in their order."""
    return int32(b, c, h, w, *kernel, *stride, *padding, *dilation, ho, wo)


def im2col(x, kernel, stride, padding, dilation):
    """x (B, C, H, W) -> cols (B, C*kh*kw, Ho*Wo). Launches ``im2col<T>``."""
    check_array("im2col", "x", x, ndim=4)
    kernel, stride, padding, dilation = _geometry("im2col", kernel, stride, padding, dilation)
    b, c, h, w = x.shape
    ho, wo = conv_output_size_2d((h, w), kernel, stride, padding, dilation)
    if ho < 1 or wo < 1:
        raise ValueError(
            f"im2col: the dilated kernel {kernel} (dilation {dilation}) does not fit the padded "
            f"input {(h, w)} + 2*{padding}: output size would be {(ho, wo)}"
        )
    cols = array_module(x).empty((b, c * kernel[0] * kernel[1], ho * wo), x.dtype)
    args = (x, cols, *_ints(b, c, h, w, kernel, stride, padding, dilation, ho, wo))
    if cols.size:
        launch(SOURCE, f"im2col<{ctype(x.dtype)}>", *grid_1d(cols.size), args)
    return cols


def col2im(cols, in_size, kernel, stride, padding, dilation):
    """cols (B, C*kh*kw, Ho*Wo) -> x (B, C, H, W), (H, W) = in_size. Launches ``col2im<T>``."""
    check_array("col2im", "cols", cols, ndim=3)
    kernel, stride, padding, dilation = _geometry("col2im", kernel, stride, padding, dilation)
    h, w = pair("col2im", "in_size", in_size, 1)
    ho, wo = conv_output_size_2d((h, w), kernel, stride, padding, dilation)
    b, rows, positions = cols.shape
    kk = kernel[0] * kernel[1]
    if rows % kk or positions != ho * wo:
        raise ValueError(
            f"col2im: cols must have shape (B, C*{kk}, {ho * wo}) for in_size {(h, w)}, kernel "
            f"{kernel}, stride {stride}, padding {padding}, dilation {dilation}; got {cols.shape}"
        )
    c = rows // kk
    x = array_module(cols).empty((b, c, h, w), cols.dtype)
    args = (cols, x, *_ints(b, c, h, w, kernel, stride, padding, dilation, ho, wo))
    if x.size:
        launch(SOURCE, f"col2im<{ctype(cols.dtype)}>", *grid_1d(x.size), args)
    return x

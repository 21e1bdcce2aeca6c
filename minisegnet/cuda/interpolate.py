"""Bilinear and nearest resizing as CUDA kernels (``kernels/interpolate.cu``), for the ``cuda``
and ``cuda-emu`` backends, with PyTorch's coordinate rules (``F.interpolate``).

Kernels launched (T = float, double):
    bilinear_forward<T>, nearest_forward<T>      one thread per output pixel
    bilinear_backward<T>, nearest_backward<T>    one thread per input pixel, gathering from the
                                                 output pixels that read it (no atomics)

    bilinear_forward(x, out_size, align_corners, scale) -> y      x (N, C, Hi, Wi) -> (N, C, Ho, Wo)
    bilinear_backward(dy, in_size, align_corners, scale) -> dx
    nearest_forward(x, out_size, scale) -> y
    nearest_backward(dy, in_size, scale) -> dx

``scale`` is the contract's (scale_h, scale_w): the ratio r of the source-coordinate mapping,
source pixels per output pixel (``F.interpolate(scale_factor=f)`` passes r = 1/f, as PyTorch
maps), or None to map with r = in/out. ``align_corners=True`` maps with (in-1)/(out-1) and
ignores ``scale``; an axis whose length does not change is copied. The ratio is computed here,
in the tensor's dtype for bilinear and in float32 for nearest (PyTorch's choices), and passed
to the kernel.
"""

from __future__ import annotations

import numpy as np

from minisegnet.arrays import array_module
from minisegnet.cuda.launch import check_array, ctype, grid_1d, int32, launch
from minisegnet.ops.geometry import pair

__all__ = [
    "bilinear_forward",
    "bilinear_backward",
    "nearest_forward",
    "nearest_backward",
    "bilinear_ratio",
    "nearest_ratio",
]

SOURCE = "interpolate.cu"


def _scales(op, scale):
    if scale is None:
        return (None, None)
    if not isinstance(scale, (tuple, list)) or len(scale) != 2:
        raise TypeError(f"{op}: scale must be None or a (scale_h, scale_w) pair, got {scale!r}")
    scale = tuple(None if s is None else float(s) for s in scale)
    if any(s is not None and not s > 0 for s in scale):
        raise ValueError(f"{op}: scale ratios must be positive, got {scale}")
    return scale


def bilinear_ratio(in_size: int, out_size: int, align_corners: bool, scale, dtype):
    """r of one axis, in ``dtype``: (in-1)/(out-1) with align_corners, else ``scale`` if given,
    else in/out (PyTorch's area_pixel_compute_scale, with scale = 1/scale_factor)."""
    t = np.dtype(dtype).type
    if align_corners:
        return t(in_size - 1) / t(out_size - 1) if out_size > 1 else t(0)
    if scale is not None:
        return t(scale)
    return t(in_size) / t(out_size)


def nearest_ratio(in_size: int, out_size: int, scale):
    """r of one axis for 'nearest', in float32 for every dtype (as PyTorch computes it):
    ``scale`` if given, else in/out."""
    if scale is not None:
        return np.float32(scale)
    return np.float32(in_size) / np.float32(out_size)


def _resize(kernel, x, sizes, extra, grad: bool):
    """Shared launch code: x is the kernel's source array (N, C, a, b), sizes (Hi, Wi, Ho, Wo)."""
    n, c = x.shape[:2]
    hi, wi, ho, wo = sizes
    out_shape = (n, c, hi, wi) if grad else (n, c, ho, wo)
    out = array_module(x).empty(out_shape, x.dtype)
    if out.size:
        launch(
            SOURCE,
            f"{kernel}<{ctype(x.dtype)}>",
            *grid_1d(out.size),
            (x, out, *int32(n, c, hi, wi, ho, wo), *extra),
        )
    return out


def bilinear_forward(x, out_size, align_corners, scale):
    """x (N, C, Hi, Wi) -> y (N, C, Ho, Wo). Launches ``bilinear_forward<T>``."""
    op = "bilinear_forward"
    check_array(op, "x", x, ndim=4)
    ho, wo = pair(op, "out_size", out_size, 1)
    hi, wi = x.shape[2:]
    if hi < 1 or wi < 1:
        raise ValueError(f"{op}: x must have a non-empty plane, got shape {x.shape}")
    sh, sw = _scales(op, scale)
    ratios = (
        bilinear_ratio(hi, ho, align_corners, sh, x.dtype),
        bilinear_ratio(wi, wo, align_corners, sw, x.dtype),
    )
    extra = (np.int32(bool(align_corners)), *ratios)
    return _resize("bilinear_forward", x, (hi, wi, ho, wo), extra, grad=False)


def bilinear_backward(dy, in_size, align_corners, scale):
    """dy (N, C, Ho, Wo) -> dx (N, C, Hi, Wi). Launches ``bilinear_backward<T>``."""
    op = "bilinear_backward"
    check_array(op, "dy", dy, ndim=4)
    hi, wi = pair(op, "in_size", in_size, 1)
    ho, wo = dy.shape[2:]
    sh, sw = _scales(op, scale)
    ratios = (
        bilinear_ratio(hi, ho, align_corners, sh, dy.dtype),
        bilinear_ratio(wi, wo, align_corners, sw, dy.dtype),
    )
    extra = (np.int32(bool(align_corners)), *ratios)
    return _resize("bilinear_backward", dy, (hi, wi, ho, wo), extra, grad=True)


def nearest_forward(x, out_size, scale):
    """x (N, C, Hi, Wi) -> y (N, C, Ho, Wo). Launches ``nearest_forward<T>``."""
    op = "nearest_forward"
    check_array(op, "x", x, ndim=4)
    ho, wo = pair(op, "out_size", out_size, 1)
    hi, wi = x.shape[2:]
    if hi < 1 or wi < 1:
        raise ValueError(f"{op}: x must have a non-empty plane, got shape {x.shape}")
    sh, sw = _scales(op, scale)
    extra = (nearest_ratio(hi, ho, sh), nearest_ratio(wi, wo, sw))
    return _resize("nearest_forward", x, (hi, wi, ho, wo), extra, grad=False)


def nearest_backward(dy, in_size, scale):
    """dy (N, C, Ho, Wo) -> dx (N, C, Hi, Wi). Launches ``nearest_backward<T>``."""
    op = "nearest_backward"
    check_array(op, "dy", dy, ndim=4)
    hi, wi = pair(op, "in_size", in_size, 1)
    ho, wo = dy.shape[2:]
    sh, sw = _scales(op, scale)
    extra = (nearest_ratio(hi, ho, sh), nearest_ratio(wi, wo, sw))
    return _resize("nearest_backward", dy, (hi, wi, ho, wo), extra, grad=True)

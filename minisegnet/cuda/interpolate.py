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

from minisegnet.cuda.launch import launch_plane_map, plane_sizes

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


def _bilinear(op, src, size, align_corners, scale, grad):
    """The shared body of bilinear_forward and bilinear_backward: the ratios in src's dtype."""
    (hi, wi), (ho, wo) = plane_sizes(op, src, size, grad, least=1, nonempty_input=True)
    sh, sw = _scales(op, scale)
    ratios = (
        bilinear_ratio(hi, ho, align_corners, sh, src.dtype),
        bilinear_ratio(wi, wo, align_corners, sw, src.dtype),
    )
    extra = (np.int32(bool(align_corners)), *ratios)
    return launch_plane_map(SOURCE, op, src, (hi, wi), (ho, wo), extra, grad)


def _nearest(op, src, size, scale, grad):
    """The shared body of nearest_forward and nearest_backward: the ratios in float32."""
    (hi, wi), (ho, wo) = plane_sizes(op, src, size, grad, least=1, nonempty_input=True)
    sh, sw = _scales(op, scale)
    extra = (nearest_ratio(hi, ho, sh), nearest_ratio(wi, wo, sw))
    return launch_plane_map(SOURCE, op, src, (hi, wi), (ho, wo), extra, grad)


def bilinear_forward(x, out_size, align_corners, scale):
    """x (N, C, Hi, Wi) -> y (N, C, Ho, Wo). Launches ``bilinear_forward<T>``."""
    return _bilinear("bilinear_forward", x, out_size, align_corners, scale, grad=False)


def bilinear_backward(dy, in_size, align_corners, scale):
    """dy (N, C, Ho, Wo) -> dx (N, C, Hi, Wi). Launches ``bilinear_backward<T>``."""
    return _bilinear("bilinear_backward", dy, in_size, align_corners, scale, grad=True)


def nearest_forward(x, out_size, scale):
    """x (N, C, Hi, Wi) -> y (N, C, Ho, Wo). Launches ``nearest_forward<T>``."""
    return _nearest("nearest_forward", x, out_size, scale, grad=False)


def nearest_backward(dy, in_size, scale):
    """dy (N, C, Ho, Wo) -> dx (N, C, Hi, Wi). Launches ``nearest_backward<T>``."""
    return _nearest("nearest_backward", dy, in_size, scale, grad=True)

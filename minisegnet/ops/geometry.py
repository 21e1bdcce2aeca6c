"""Geometry of 2-D windows: (h, w) pairs and every output-size formula, in one place.

The bottom floor of the ops: it imports only NumPy, so every op file, every CUDA wrapper and
``nn/`` can use it without reaching up to ``tensor.py``. Sizes per axis (PyTorch's rules):

* convolution:            Ho = floor((H + 2p - d(k - 1) - 1) / s) + 1
* transposed convolution: Ho = (H - 1)s - 2p + d(k - 1) + output_padding + 1
* pooling:                Ho = floor or ceil((H + 2p - k) / s) + 1, and in ceil mode the last
                          window must start inside the input or the left padding
* unpooling (default):    H  = (Hp - 1)s - 2p + k
* adaptive bins:          bin o covers [floor(o H / Ho), ceil((o + 1) H / Ho))

``switch_dtype`` is here too because the switches' dtype follows from the window size alone.

The argument checks of the window ops live here as well (``check_conv2d``, ``pool_geometry``,
...): ``functional.py`` calls them once, at the public entry, and the op files trust what they
are given. Every message names the op, the argument, what was expected and what was given.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "pair", "switch_dtype", "conv_output_size", "conv_output_size_2d",
    "conv_transpose_output_size", "pool_output_size", "unpool_output_size",
    "adaptive_output_size", "adaptive_bins", "conv_transpose_output_size_2d", "conv_geometry",
    "check_conv2d", "check_conv_transpose2d",
]  # fmt: skip


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def pair(op: str, name: str, value, minimum: int | None = None) -> tuple[int, int]:
    """``3`` -> ``(3, 3)``, ``(3, 5)`` -> ``(3, 5)``; anything else is a TypeError naming ``op``
    and ``name``. With ``minimum``, a ValueError unless both entries are >= it (``None``: the
    caller checks ranges itself, with its own message)."""
    if _is_int(value):
        value = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_int(v) for v in value):
        value = (int(value[0]), int(value[1]))
    else:
        raise TypeError(f"{op}: {name} must be an int or a pair of ints (h, w), got {value!r}")
    if minimum is not None and min(value) < minimum:
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value}")
    return value


def switch_dtype(kernel) -> np.dtype:
    """uint8 when a window has at most 256 positions (up to 16x16), int32 otherwise."""
    return np.dtype(np.uint8) if kernel[0] * kernel[1] <= 256 else np.dtype(np.int32)


def conv_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    """floor((size + 2*padding - dilation*(kernel-1) - 1) / stride) + 1, along one axis."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_output_size_2d(in_size, kernel, stride, padding, dilation) -> tuple[int, int]:
    """(Ho, Wo): :func:`conv_output_size` along both axes of (h, w) pairs."""
    return tuple(
        conv_output_size(in_size[i], kernel[i], stride[i], padding[i], dilation[i]) for i in (0, 1)
    )


def conv_transpose_output_size(size, kernel, stride, padding, dilation, output_padding) -> int:
    """(size - 1)*stride - 2*padding + dilation*(kernel - 1) + output_padding + 1, one axis."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def pool_output_size(op: str, in_size, kernel, stride, padding, ceil_mode: bool) -> tuple[int, int]:
    """(Ho, Wo) by PyTorch's rule (see the module docstring); an error if no window fits."""
    out = []
    for axis, size, k, s, p in zip(("height", "width"), in_size, kernel, stride, padding):
        span = size + 2 * p - k
        if span < 0:
            raise ValueError(
                f"{op}: kernel_size {tuple(kernel)} is larger than the padded input: input "
                f"{axis} {size} + 2*padding {p} = {size + 2 * p} < kernel {k}"
            )
        o = (-(-span // s) if ceil_mode else span // s) + 1
        if ceil_mode and (o - 1) * s >= size + p:
            o -= 1  # the last window would start inside the bottom/right padding
        out.append(o)
    return out[0], out[1]


def unpool_output_size(op: str, pooled_size, kernel, stride, padding, output_size=None):
    """(H, W) to unpool (Hp, Wp) into: PyTorch's default, or ``output_size`` after checking
    that pooling it with this geometry (floor or ceil mode) gives (Hp, Wp)."""
    if output_size is None:
        return tuple(
            (p - 1) * s - 2 * pad + k for p, k, s, pad in zip(pooled_size, kernel, stride, padding)
        )
    sizes = tuple(output_size)
    if len(sizes) not in (2, 4) or not all(_is_int(v) for v in sizes):
        raise TypeError(
            f"{op}: output_size must be (H, W) or (N, C, H, W) ints, got {output_size!r}"
        )
    size = (int(sizes[-2]), int(sizes[-1]))
    if min(size) < 1:
        raise ValueError(f"{op}: output_size must be positive, got {size}")
    candidates = []
    for ceil_mode in (False, True):
        try:
            candidates.append(pool_output_size(op, size, kernel, stride, padding, ceil_mode))
        except ValueError:
            candidates.append(None)
    for axis in (0, 1):
        if all(c is None or c[axis] != pooled_size[axis] for c in candidates):
            got = [None if c is None else c[axis] for c in candidates]
            raise ValueError(
                f"{op}: output_size {size} could not have been pooled to the input's size "
                f"{tuple(pooled_size)} with kernel {kernel}, stride {stride}, padding {padding} "
                f"(its {('height', 'width')[axis]} {size[axis]} pools to {got[0]} in floor mode "
                f"and {got[1]} in ceil mode, not {pooled_size[axis]})"
            )
    return size


def adaptive_output_size(op: str, in_size, output_size) -> tuple[int, int]:
    """``6`` -> (6, 6); ``(3, None)`` -> (3, W): None keeps the input's size."""
    if _is_int(output_size):
        output_size = (output_size, output_size)
    if not isinstance(output_size, (tuple, list)) or len(output_size) != 2:
        raise TypeError(
            f"{op}: output_size must be an int or a pair (ints or None), got {output_size!r}"
        )
    size = []
    for given, keep in zip(output_size, in_size):
        if given is None:
            size.append(int(keep))
        elif _is_int(given) and given >= 1:
            size.append(int(given))
        else:
            raise ValueError(
                f"{op}: output_size entries must be positive ints or None, got {output_size!r}"
            )
    return size[0], size[1]


def adaptive_bins(size, out):
    """Bin o covers [floor(o*size/out), ceil((o+1)*size/out)); returns (lo, hi) int64 arrays."""
    o = np.arange(out, dtype=np.int64)
    return (o * size) // out, ((o + 1) * size + out - 1) // out


# ------------------------------------------------------------------------------------------------
# Argument checks of the convolutions (called by functional.conv2d / conv_transpose2d)
# ------------------------------------------------------------------------------------------------


def conv_geometry(op: str, stride, padding, dilation, groups):
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


def _check_conv_tensors(op: str, x, w, b, out_channels: int):
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


def check_conv2d(x, w, b, stride, padding, dilation, groups):
    """Validate conv2d's arguments; return (stride, padding, dilation, groups) as ints/pairs."""
    op = "conv2d"
    stride, padding, dilation, groups = conv_geometry(op, stride, padding, dilation, groups)
    _check_conv_tensors(op, x, w, b, w.shape[0] if w.ndim == 4 else -1)
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


def conv_transpose_output_size_2d(in_size, kernel, stride, padding, dilation, output_padding):
    """(Ho, Wo): :func:`conv_transpose_output_size` along both axes of (h, w) pairs."""
    return tuple(
        conv_transpose_output_size(
            in_size[i], kernel[i], stride[i], padding[i], dilation[i], output_padding[i]
        )
        for i in (0, 1)
    )


def check_conv_transpose2d(x, w, b, stride, padding, output_padding, groups, dilation):
    """Validate; return (stride, padding, output_padding, dilation, groups) as ints/pairs."""
    op = "conv_transpose2d"
    stride, padding, dilation, groups = conv_geometry(op, stride, padding, dilation, groups)
    output_padding = pair(op, "output_padding", output_padding)
    out_channels = w.shape[1] * groups if w.ndim == 4 else -1
    _check_conv_tensors(op, x, w, b, out_channels)
    c = x.shape[1]
    if c != w.shape[0]:
        raise ValueError(
            f"{op}: input has {c} channels but weight of shape {tuple(w.shape)} expects "
            f"weight.shape[0] = {w.shape[0]} (the weight is (in_channels, out_channels/groups, "
            "kh, kw))"
        )
    if c % groups:
        raise ValueError(f"{op}: input channels ({c}) must be divisible by groups={groups}")
    for i, axis in enumerate("hw"):
        limit = max(stride[i], dilation[i])
        if not 0 <= output_padding[i] < limit:
            raise ValueError(
                f"{op}: output_padding must satisfy 0 <= output_padding < max(stride, "
                f"dilation) = {limit} along {axis}, got output_padding={output_padding}"
            )
    out_size = conv_transpose_output_size_2d(
        x.shape[2:], w.shape[2:], stride, padding, dilation, output_padding
    )
    if min(out_size) < 1:
        raise ValueError(
            f"{op}: the output size {out_size} is not positive (input {tuple(x.shape[2:])}, "
            f"kernel {tuple(w.shape[2:])}, stride {stride}, padding {padding}, dilation "
            f"{dilation}, output_padding {output_padding}); reduce padding"
        )
    return stride, padding, output_padding, dilation, groups

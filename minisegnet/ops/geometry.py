"""Geometry of 2-D windows: (h, w) pairs and every output-size formula, in one place.

The bottom floor of the ops: it imports only NumPy and ``arrays.py``, so every op file, every CUDA wrapper and
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

import math

import numpy as np

from minisegnet.arrays import array_module, is_device_array

__all__ = [
    "pair", "switch_dtype", "conv_output_size", "conv_output_size_2d",
    "conv_transpose_output_size", "pool_output_size", "unpool_output_size",
    "adaptive_output_size", "adaptive_bins", "conv_transpose_output_size_2d", "conv_geometry",
    "check_conv2d", "check_conv_transpose2d", "pool_geometry", "check_nchw",
    "check_pool2d", "check_adaptive_avg_pool2d", "check_max_unpool2d", "check_flat_indices",
    "check_pool_indices", "check_switches", "check_interpolate",
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


# ------------------------------------------------------------------------------------------------
# Argument checks of the pooling ops (called by functional's pooling functions and nn/pooling.py)
# ------------------------------------------------------------------------------------------------


def pool_geometry(op: str, kernel_size, stride, padding):
    """Validated (kernel, stride, padding) pairs; ``stride=None`` (or ``[]``) means the kernel."""
    kernel = pair(op, "kernel_size", kernel_size, minimum=1)
    no_stride = stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0)
    stride = kernel if no_stride else pair(op, "stride", stride, 1)
    padding = pair(op, "padding", padding, minimum=0)
    for axis, k, p in zip(("height", "width"), kernel, padding):
        if 2 * p > k:
            raise ValueError(
                f"{op}: padding must be at most half the kernel size, got padding {padding} "
                f"for kernel_size {kernel} (the {axis} padding {p} > {k} // 2)"
            )
    return kernel, stride, padding


def check_nchw(op: str, name: str, x, floating: bool = True) -> None:
    """``x`` 4-D (N, C, H, W) with a non-empty plane (and float32/float64 when ``floating``)."""
    if x.ndim != 4:
        raise ValueError(f"{op}: {name} must be 4-D (N, C, H, W), got shape {tuple(x.shape)}")
    if floating and x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: {name} must be float32 or float64, got dtype {x.dtype}")
    if min(x.shape[2:]) < 1:  # only the batch (or channels) may be empty, as in PyTorch
        raise ValueError(f"{op}: {name} must have a non-empty plane, got shape {tuple(x.shape)}")


def check_pool2d(op: str, x, kernel_size, stride, padding, ceil_mode):
    """max_pool2d's and avg_pool2d's arguments -> (kernel, stride, padding, out_size)."""
    check_nchw(op, "input", x)
    kernel, stride, padding = pool_geometry(op, kernel_size, stride, padding)
    out_size = pool_output_size(op, x.shape[2:], kernel, stride, padding, ceil_mode)
    return kernel, stride, padding, out_size


def check_adaptive_avg_pool2d(x, output_size) -> tuple[int, int]:
    """adaptive_avg_pool2d's arguments -> the output size (Ho, Wo)."""
    op = "adaptive_avg_pool2d"
    check_nchw(op, "input", x)
    return adaptive_output_size(op, x.shape[2:], output_size)


# ------------------------------------------------------------------------------------------------
# Argument checks of max unpooling (called by functional.max_unpool2d)
# ------------------------------------------------------------------------------------------------


def check_max_unpool2d(x, kernel_size, stride, padding, output_size):
    """max_unpool2d's input and geometry -> (kernel, stride, padding, out_size (H, W))."""
    op = "max_unpool2d"
    check_nchw(op, "input", x)
    kernel, stride, padding = pool_geometry(op, kernel_size, stride, padding)
    if output_size is not None and len(tuple(output_size)) == 4:
        if tuple(output_size)[:2] != x.shape[:2]:
            raise ValueError(
                f"{op}: output_size {tuple(output_size)} must have the input's (N, C) = "
                f"{x.shape[:2]}"
            )
    out_size = unpool_output_size(op, x.shape[2:], kernel, stride, padding, output_size)
    return kernel, stride, padding, out_size


def check_flat_indices(op: str, raw, given: str) -> None:
    """PyTorch-style indices must be an integer array (``given``: the type that was passed)."""
    if not hasattr(raw, "dtype") or raw.dtype.kind not in "iu":
        raise TypeError(
            f"{op}: indices must be the PoolIndices returned by max_pool2d(..., "
            f"return_indices=True) (or flat integer indices), got {given}"
        )


def check_pool_indices(op: str, indices, in_shape, kernel, stride, padding, out_size) -> None:
    """A PoolIndices fits this unpooling: an array of switches of the input's shape, recorded
    with the same geometry, and the output large enough for every switch it may hold."""
    if not (isinstance(indices.data, np.ndarray) or is_device_array(indices.data)):
        raise TypeError(
            f"{op}: indices.data must be an array of switches, got {type(indices.data).__name__}"
        )
    if indices.shape != tuple(in_shape):
        raise ValueError(
            f"{op}: indices must have the input's shape {tuple(in_shape)}, got {indices.shape}"
        )
    if (indices.kernel, indices.stride, indices.padding) != (kernel, stride, padding):
        raise ValueError(
            f"{op}: indices were recorded by a pool with kernel {indices.kernel}, stride "
            f"{indices.stride}, padding {indices.padding}, but unpooling was asked for kernel "
            f"{kernel}, stride {stride}, padding {padding}"
        )
    # The furthest a switch can point: the last window's end, or the recorded input's edge.
    reach = tuple(
        min(size, (p - 1) * st - pad + k)
        for size, p, k, st, pad in zip(indices.in_size, in_shape[2:], kernel, stride, padding)
    )
    if out_size[0] < reach[0] or out_size[1] < reach[1]:
        raise ValueError(
            f"{op}: output size {out_size} is too small for these indices: they were recorded on "
            f"an input of size {indices.in_size} and can point at rows/columns up to "
            f"{(reach[0] - 1, reach[1] - 1)}; pass output_size={indices.in_size}"
        )


def check_switches(op: str, switches, kernel, stride, padding, out_size) -> None:
    """Every switch must be a position ``k = ky*kW + kx`` of its window (0 <= k < kH*kW, in the
    switch dtype of this kernel) whose pixel lies inside the (H, W) = ``out_size`` plane: the
    kernels index with the switches unchecked, so one out of range would make them read or write
    outside their arrays. Switches from ``max_pool2d`` always pass; hand-made or edited ones
    may not.

    Cost: one min/max pass over the switches, then a per-switch check only for the windows
    that overhang the padding or the plane's edge (the first and last few rows and columns)."""
    expected = switch_dtype(kernel)
    if switches.dtype != expected:
        raise TypeError(
            f"{op}: indices must hold {expected} switches (window positions ky*kW + kx for "
            f"kernel {kernel}, as max_pool2d returns them), got dtype {switches.dtype}"
        )
    if switches.size == 0:
        return
    xp = array_module(switches)
    (kh, kw), positions = kernel, kernel[0] * kernel[1]
    low = int(switches.min()) if switches.dtype.kind == "i" else 0
    high = int(switches.max())
    if low < 0 or high >= positions:
        bad = low if low < 0 else high
        where = tuple(int(v[0]) for v in xp.nonzero(switches == bad))
        raise ValueError(
            f"{op}: indices hold the switch {bad} at position {where}, but a {kh}x{kw} window "
            f"has positions 0 <= k < {positions}"
        )
    pooled = switches.shape[2:]
    for axis, name in ((0, "row"), (1, "column")):
        origin = xp.arange(pooled[axis]) * stride[axis] - padding[axis]  # first pixel per window
        overhang = xp.nonzero((origin < 0) | (origin + kernel[axis] > out_size[axis]))[0]
        if overhang.size == 0:
            continue
        edge = xp.take(switches, overhang, axis=2 + axis).astype(np.int64)
        offset = edge // kw if axis == 0 else edge % kw  # ky or kx
        shape = (-1, 1) if axis == 0 else (1, -1)
        pixel = origin[overhang].reshape(shape) + offset
        outside = (pixel < 0) | (pixel >= out_size[axis])
        if bool(outside.any()):
            where = [int(v[0]) for v in xp.nonzero(outside)]
            at = int(pixel[tuple(where)])
            where[2 + axis] = int(overhang[where[2 + axis]])
            raise ValueError(
                f"{op}: indices hold the switch {int(switches[tuple(where)])} at position "
                f"{tuple(where)}, which points at {name} {at}, outside the output's {name}s "
                f"0..{out_size[axis] - 1} (kernel {kernel}, stride {stride}, padding {padding})"
            )


# ------------------------------------------------------------------------------------------------
# Argument checks of interpolate (called by functional.interpolate)
# ------------------------------------------------------------------------------------------------


def _positive_pair(name, value, kind, what):
    """``value`` or ``(value_h, value_w)`` -> a pair of positive numbers of ``kind``."""
    values = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    ok = len(values) == 2 and all(
        isinstance(v, kind) and not isinstance(v, bool) and 0 < v < math.inf for v in values
    )
    if not ok:
        raise (ValueError if len(values) == 2 else TypeError)(
            f"interpolate: {name} must be a positive {what} or a pair of them, got {value!r}"
        )
    return values


def check_resize_options(op: str, size, scale_factor, mode, align_corners) -> None:
    """The options of a resize that need no input (``nn.Upsample`` checks them when built,
    ``interpolate`` when called): exactly one of ``size`` and ``scale_factor``; mode "nearest"
    or "bilinear"; ``align_corners`` for "bilinear" only."""
    if (size is None) == (scale_factor is None):
        raise ValueError(
            f"{op}: give exactly one of size and scale_factor, got size={size!r}, "
            f"scale_factor={scale_factor!r}"
        )
    if mode not in ("nearest", "bilinear"):
        raise ValueError(f"{op}: mode must be 'nearest' or 'bilinear', got {mode!r}")
    if mode == "nearest" and align_corners is not None:
        raise ValueError(
            f"{op}: align_corners only applies to mode='bilinear', got "
            f"align_corners={align_corners!r} with mode='nearest'"
        )


def check_interpolate(x, size, scale_factor, mode, align_corners):
    """interpolate's arguments -> (out_size, scale): scale is None when ``size`` was given, else
    (1/factor_h, 1/factor_w), the source step PyTorch uses with a scale factor."""
    op = "interpolate"
    if x.ndim != 4:
        raise ValueError(
            f"{op}: input must be 4-D (N, C, H, W), got shape {x.shape} (for a label map "
            "(N, H, W) add the channel axis first: labels[:, None])"
        )
    check_resize_options(op, size, scale_factor, mode, align_corners)
    in_size = x.shape[2:]
    if min(in_size) < 1:
        raise ValueError(f"{op}: input must have a non-empty plane, got shape {x.shape}")
    if size is not None:
        out_size = _positive_pair("size", size, (int, np.integer), "int")
        out_size, scale = (int(out_size[0]), int(out_size[1])), None
    else:
        factors = _positive_pair(
            "scale_factor", scale_factor, (int, float, np.integer, np.floating), "finite number"
        )
        out_size = tuple(int(math.floor(s * float(f))) for s, f in zip(in_size, factors))
        if min(out_size) < 1:
            raise ValueError(
                f"{op}: scale_factor {scale_factor!r} makes an empty output from an input of "
                f"size {tuple(in_size)} (output size {out_size})"
            )
        scale = (1.0 / float(factors[0]), 1.0 / float(factors[1]))
    if mode == "nearest":
        if x.dtype.kind not in "iub" and x.dtype not in (np.float32, np.float64):
            raise TypeError(
                f"{op}: nearest needs a float32, float64, integer or bool input, got {x.dtype}"
            )
    elif x.dtype not in (np.float32, np.float64):
        raise TypeError(f"{op}: bilinear needs a float32 or float64 input, got {x.dtype}")
    return out_size, scale

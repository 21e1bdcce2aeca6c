"""Batch normalization, local response normalization and dropout masks as CUDA kernels
(``kernels/normalization.cu``), for the ``cuda`` and ``cuda-emu`` backends.

Kernels launched (T = float, double):
    batch_norm_stats<T>             one block per channel: shared-memory tree reductions with
                                    __syncthreads (the lesson of the file), sums in double
    batch_norm_forward<T>           one thread per element
    batch_norm_backward_reduce<T>   one block per channel (dweight, dbias), like the stats
    batch_norm_backward_dx<T>       one thread per element
    lrn_forward<T>, lrn_backward<T> one thread per element, window across channels (gather)
    dropout_mask<float>             one thread per mask element, counter-based hash

    batch_norm_stats(x) -> (mean, var)                   per channel over (N, H, W); biased var
    batch_norm_forward(x, mean, invstd, weight, bias) -> y
    batch_norm_backward(dy, x, mean, invstd, weight) -> (dx, dweight, dbias)   training mode
    lrn_forward(x, size, alpha, beta, k) -> (y, scale)
    lrn_backward(dy, x, y, scale, size, alpha, beta) -> dx
    dropout_mask(shape, p, seed, per_channel) -> mask    float32, 0 or 1/(1-p)

x is (N, C, H, W), or any (N, C, *) (viewed as (N, C, HW)); per-channel arrays are (C,).
weight/bias of None mean 1 and 0 (an affine-free batch norm).
"""

from __future__ import annotations

import math

import numpy as np

from minisegnet.arrays import array_module
from minisegnet.cuda.launch import check_array, ctype, int32, launch, launch_1d, xp

__all__ = [
    "batch_norm_stats",
    "batch_norm_forward",
    "batch_norm_backward",
    "lrn_forward",
    "lrn_backward",
    "dropout_mask",
    "REDUCTION_BLOCK",
]

SOURCE = "normalization.cu"
REDUCTION_BLOCK = 256  # threads per channel block; a power of two (block_sum's tree needs it)


def _nc_hw(op, name, x):
    check_array(op, name, x)
    if x.ndim < 2:
        raise ValueError(
            f"{op}: {name} must be (N, C, ...) with at least 2 dimensions, got {x.shape}"
        )
    return x.shape[0], x.shape[1], math.prod(x.shape[2:])


def _per_channel(op, name, a, like, channels, default=None):
    """A (C,) array of ``like``'s dtype and module; ``default`` fills it when a is None."""
    module = array_module(like)
    if a is None and default is not None:
        return module.full((channels,), default, like.dtype)
    check_array(op, name, a, ndim=1)
    if a.shape != (channels,) or a.dtype != like.dtype:
        raise ValueError(
            f"{op}: {name} must be a ({channels},) {like.dtype} array, got {a.shape} {a.dtype}"
        )
    return a


def _launch_per_channel(kernel_name, c, args):
    """One block of REDUCTION_BLOCK threads per channel, with REDUCTION_BLOCK doubles of
    dynamic shared memory (block_sum's buffer); no launch for 0 channels."""
    if c:
        launch(
            SOURCE,
            kernel_name,
            (c, 1, 1),
            (REDUCTION_BLOCK, 1, 1),
            args,
            shared_mem=REDUCTION_BLOCK * 8,
        )


def batch_norm_stats(x):
    """Per-channel (mean, biased var) of x (N, C, *). Launches ``batch_norm_stats<T>`` with one
    block of REDUCTION_BLOCK threads per channel and REDUCTION_BLOCK doubles of shared memory."""
    n, c, hw = _nc_hw("batch_norm_stats", "x", x)
    if n * hw == 0:
        raise ValueError(f"batch_norm_stats: x has no values per channel (shape {x.shape})")
    module = array_module(x)
    mean, var = module.empty(c, x.dtype), module.empty(c, x.dtype)
    _launch_per_channel(f"batch_norm_stats<{ctype(x.dtype)}>", c, (x, mean, var, *int32(n, c, hw)))
    return mean, var


def batch_norm_forward(x, mean, invstd, weight, bias):
    """y = (x - mean) * invstd * weight + bias per channel. Launches ``batch_norm_forward<T>``."""
    op = "batch_norm_forward"
    n, c, hw = _nc_hw(op, "x", x)
    mean = _per_channel(op, "mean", mean, x, c)
    invstd = _per_channel(op, "invstd", invstd, x, c)
    weight = _per_channel(op, "weight", weight, x, c, default=1)
    bias = _per_channel(op, "bias", bias, x, c, default=0)
    y = array_module(x).empty_like(x)
    args = (x, mean, invstd, weight, bias, y, *int32(n, c, hw))
    launch_1d(SOURCE, f"batch_norm_forward<{ctype(x.dtype)}>", y.size, args)
    return y


def batch_norm_backward(dy, x, mean, invstd, weight):
    """Training-mode backward -> (dx, dweight, dbias). Launches ``batch_norm_backward_reduce<T>``
    (one block per channel) then ``batch_norm_backward_dx<T>`` (one thread per element)."""
    op = "batch_norm_backward"
    n, c, hw = _nc_hw(op, "x", x)
    check_array(op, "dy", dy)
    if dy.shape != x.shape or dy.dtype != x.dtype:
        raise ValueError(f"{op}: dy must match x ({x.shape} {x.dtype}), got {dy.shape} {dy.dtype}")
    mean = _per_channel(op, "mean", mean, x, c)
    invstd = _per_channel(op, "invstd", invstd, x, c)
    weight = _per_channel(op, "weight", weight, x, c, default=1)
    module = array_module(x)
    dweight, dbias = module.empty(c, x.dtype), module.empty(c, x.dtype)
    dx = module.empty_like(x)
    t = ctype(x.dtype)
    sizes = int32(n, c, hw)
    _launch_per_channel(
        f"batch_norm_backward_reduce<{t}>", c, (dy, x, mean, invstd, dweight, dbias, *sizes)
    )
    args = (dy, x, mean, invstd, weight, dweight, dbias, dx, *sizes)
    launch_1d(SOURCE, f"batch_norm_backward_dx<{t}>", dx.size, args)
    return dx, dweight, dbias


def _lrn_params(op, size, alpha, beta, dtype):
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
        raise ValueError(f"{op}: size must be a positive int, got {size!r}")
    t = np.dtype(dtype).type
    return np.int32(size), t(alpha), t(beta)


def lrn_forward(x, size, alpha, beta, k):
    """x (N, C, *) -> (y, scale), scale = k + alpha/size * sum of squares over the channel
    window c - size//2 .. c + (size-1)//2, y = x * scale^-beta. Launches ``lrn_forward<T>``."""
    op = "lrn_forward"
    n, c, hw = _nc_hw(op, "x", x)
    size, alpha, beta = _lrn_params(op, size, alpha, beta, x.dtype)
    module = array_module(x)
    y, scale = module.empty_like(x), module.empty_like(x)
    args = (x, y, scale, *int32(n, c, hw), size, alpha, beta, x.dtype.type(k))
    launch_1d(SOURCE, f"lrn_forward<{ctype(x.dtype)}>", y.size, args)
    return y, scale


def lrn_backward(dy, x, y, scale, size, alpha, beta):
    """dx of lrn_forward (a gather over the windows containing each channel).
    Launches ``lrn_backward<T>``."""
    op = "lrn_backward"
    n, c, hw = _nc_hw(op, "x", x)
    for name, a in (("dy", dy), ("y", y), ("scale", scale)):
        check_array(op, name, a)
        if a.shape != x.shape or a.dtype != x.dtype:
            raise ValueError(
                f"{op}: {name} must match x ({x.shape} {x.dtype}), got {a.shape} {a.dtype}"
            )
    size, alpha, beta = _lrn_params(op, size, alpha, beta, x.dtype)
    dx = array_module(x).empty_like(x)
    args = (dy, x, y, scale, dx, *int32(n, c, hw), size, alpha, beta)
    launch_1d(SOURCE, f"lrn_backward<{ctype(x.dtype)}>", dx.size, args)
    return dx


def dropout_mask(shape, p, seed, per_channel):
    """The float32 mask (0 or 1/(1-p)) of ``shape``, or (N, C, 1, ..., 1) with ``per_channel``:
    element i (or plane n*C + c) is kept when hash(seed, i) >= p (see kernels/normalization.cu).
    Allocated with ``xp()`` (CuPy on the ``cuda`` backend). Launches ``dropout_mask<float>``."""
    shape = tuple(int(s) for s in shape)
    if per_channel:
        if len(shape) < 2:
            raise ValueError(f"dropout_mask: per_channel needs (N, C, ...) shapes, got {shape}")
        shape = shape[:2] + (1,) * (len(shape) - 2)
    p = float(p)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout_mask: p must be in [0, 1], got {p}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"dropout_mask: seed must be an int, got {seed!r}")
    keep_scale = 0.0 if p >= 1.0 else 1.0 / (1.0 - p)
    mask = xp().empty(shape, np.float32)
    seed = np.uint64(int(seed) & (2**64 - 1))
    args = (mask, np.int64(mask.size), seed, np.float64(p), np.float64(keep_scale))
    launch_1d(SOURCE, "dropout_mask<float>", mask.size, args)
    return mask

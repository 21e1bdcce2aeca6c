"""Softmax cross-entropy with class weights and an ignore label as CUDA kernels
(``kernels/loss.cu``), for the ``cuda`` and ``cuda-emu`` backends.

Kernels launched (T = float, double): ``cross_entropy_forward<T>`` and
``cross_entropy_backward<T>``, one thread per position (a sample, or a pixel) computing the
stable log-sum-exp over the classes and writing that position's outputs only.

    cross_entropy_forward(logits, target, weight, ignore_index) -> (loss, wpos)
        logits (N, C, H, W) or (N, C); target (N, H, W) or (N,) integer labels; weight (C,) or
        None. loss[q] = -weight[t] * log softmax(z[q])[t], wpos[q] = weight[t]; both 0 where
        target == ignore_index; both shaped like target.
    cross_entropy_backward(logits, target, weight, ignore_index, scale_per_position) -> dlogits
        dlogits[n, c, q] = scale[q] * weight[t] * (softmax[c] - [c == t]); 0 at ignored positions.
        scale_per_position has target's shape (or one element, broadcast): the reduction's factor,
        e.g. dy / sum(wpos) for reduction="mean".

    cross_entropy_fused(logits, target, weight, ignore_index) -> (loss, wpos, grad, totals)
        one launch of ``cross_entropy_fused<T>``: loss and wpos as above, grad = dlogits with
        scale 1 (so the backward is grad * scale), totals = (sum loss, sum wpos) as a (2,)
        array from the kernel's per-block partial sums (one small reduction). Meant to buy, on a
        GPU: one kernel and one read of the logits per training step instead of forward + two
        sums + backward (which re-read the logits and recomputed every exp); issue 15 measured
        2.0 ms against PyTorch's 0.19 ms for 8x21x128x128. The number awaits a GPU measurement
        (benchmarks/gpu_kernels.py).

Labels must lie in [0, C) or equal ignore_index (checked here, as the kernel cannot raise).
Integer targets of another dtype are converted to int64 (the kernel's ``const long long*``).
"""

from __future__ import annotations

import numpy as np

from minisegnet.arrays import array_module
from minisegnet.cuda.launch import check_array, ctype, grid_1d, int32, launch

__all__ = ["cross_entropy_forward", "cross_entropy_backward", "cross_entropy_fused"]

SOURCE = "loss.cu"


def _prepare(op, logits, target, weight, ignore_index):
    """Checked (target as int64, weight, sizes): weight None becomes ones; sizes are the
    kernels' last four arguments (int N, int C, int HW, long long ignore_index)."""
    check_array(op, "logits", logits, ndim=(2, 4))
    module = array_module(logits)
    n, c = logits.shape[:2]
    expected = (n,) + tuple(logits.shape[2:])
    if not hasattr(target, "dtype") or target.dtype.kind not in "iu":
        raise TypeError(
            f"{op}: target must be an integer array, got {getattr(target, 'dtype', type(target))}"
        )
    if tuple(target.shape) != expected:
        raise ValueError(f"{op}: target must have shape {expected}, got {tuple(target.shape)}")
    target = module.ascontiguousarray(target, dtype=np.int64)
    if weight is None:
        weight = module.ones(c, logits.dtype)
    else:
        check_array(op, "weight", weight, ndim=1)
        if weight.shape != (c,) or weight.dtype != logits.dtype:
            raise ValueError(
                f"{op}: weight must be a ({c},) {logits.dtype} array, got {weight.shape} "
                f"{weight.dtype}"
            )
    bad = (target != ignore_index) & ((target < 0) | (target >= c))
    if bool(bad.any()):
        values = sorted({int(v) for v in module.unique(target[bad])[:10].tolist()})
        raise ValueError(
            f"{op}: target holds {values}, neither a class in [0, {c}) nor "
            f"ignore_index={ignore_index}"
        )
    hw = int(np.prod(logits.shape[2:], dtype=np.int64))
    return target, weight, (*int32(n, c, hw), np.int64(ignore_index))


def _per_position(logits, target):
    """(loss, wpos): two uninitialised arrays shaped like target, in the logits' dtype."""
    module = array_module(logits)
    return module.empty(target.shape, logits.dtype), module.empty(target.shape, logits.dtype)


def cross_entropy_forward(logits, target, weight, ignore_index):
    """-> (loss, wpos), shaped like target. Launches ``cross_entropy_forward<T>``."""
    target, weight, sizes = _prepare("cross_entropy_forward", logits, target, weight, ignore_index)
    loss, wpos = _per_position(logits, target)
    args = (logits, target, weight, loss, wpos, *sizes)
    if loss.size:
        launch(SOURCE, f"cross_entropy_forward<{ctype(logits.dtype)}>", *grid_1d(loss.size), args)
    return loss, wpos


def cross_entropy_backward(logits, target, weight, ignore_index, scale_per_position):
    """-> dlogits shaped like logits. Launches ``cross_entropy_backward<T>``."""
    op = "cross_entropy_backward"
    target, weight, sizes = _prepare(op, logits, target, weight, ignore_index)
    module = array_module(logits)
    scale = module.asarray(scale_per_position)
    if scale.dtype.kind != "f":
        raise TypeError(f"{op}: scale_per_position must be floating point, got {scale.dtype}")
    if scale.size == 1:
        scale = module.full(target.shape, scale.reshape(()), logits.dtype)
    elif scale.size != target.size:
        raise ValueError(
            f"{op}: scale_per_position must have {target.size} elements (target's shape "
            f"{tuple(target.shape)}) or one, got shape {tuple(scale.shape)}"
        )
    scale = module.ascontiguousarray(scale.reshape(target.shape), dtype=logits.dtype)
    dlogits = module.empty_like(logits)
    args = (logits, target, weight, scale, dlogits, *sizes)
    if target.size:
        kernel = f"cross_entropy_backward<{ctype(logits.dtype)}>"
        launch(SOURCE, kernel, *grid_1d(target.size), args)
    return dlogits


FUSED_BLOCK = 256  # threads per block of cross_entropy_fused (a power of two, <= 1024)


def cross_entropy_fused(logits, target, weight, ignore_index):
    """-> (loss, wpos, grad, totals). Launches ``cross_entropy_fused<T>`` once."""
    target, weight, sizes = _prepare("cross_entropy_fused", logits, target, weight, ignore_index)
    loss, wpos = _per_position(logits, target)
    module = array_module(logits)
    grad = module.empty_like(logits)
    if not loss.size:
        return loss, wpos, grad, module.zeros(2, logits.dtype)
    grid, block = grid_1d(loss.size, FUSED_BLOCK)
    partial = module.empty((grid[0], 2), logits.dtype)
    args = (logits, target, weight, loss, wpos, grad, partial, *sizes)
    launch(SOURCE, f"cross_entropy_fused<{ctype(logits.dtype)}>", grid, block, args)
    totals = partial[0] if grid[0] == 1 else partial.sum(axis=0)
    return loss, wpos, grad, totals

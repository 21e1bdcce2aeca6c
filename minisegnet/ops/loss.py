"""Softmax cross-entropy over the class axis, with class weights and an ignore label.

For logits z of shape (N, C) or (N, C, H, W) and integer targets t of shape (N,) or (N, H, W),
at every position p (a sample, or a pixel) whose target is not ``ignore_index``:

    log p[p, c] = z[p, c] - logsumexp_c' z[p, c']         (stable: subtract the max first)
    loss[p]     = -w[t_p] * log p[p, t_p]

    reduction="mean":  sum_p loss[p] / sum_p w[t_p]       (PyTorch's weighted mean)
    reduction="sum":   sum_p loss[p]
    reduction="none":  loss, shape of t, 0 at ignored positions

Ignored positions are left out of the sum *and* the normaliser. If every position is ignored,
the mean is 0/0; we return 0 with a zero gradient rather than NaN (PyTorch returns NaN), since a
fully-ignored crop is a normal event when training on random crops. An empty batch (N = 0) is the
same case: 0 for "mean" and "sum", an empty array for "none", empty gradients.

Backward (per position, before the reduction's scale):

    dz[p, c] = w[t_p] * (softmax(z)[p, c] - [c == t_p])

Low-level functions (the kernel contract; every backend has the same two):

    cross_entropy_forward(logits, target, weight, ignore_index) -> (loss, w_pos)
        loss[p] as above and w_pos[p] = w[t_p] (0 where ignored), both shaped like target
    cross_entropy_backward(logits, target, weight, ignore_index, scale) -> dz
        dz[p, c] = scale[p] * w[t_p] * (softmax(z)[p, c] - [c == t_p]), shaped like logits;
        scale[p] is the reduction's factor times the incoming gradient (dy / sum w_pos for
        "mean", dy for "sum", dy[p] for "none")

The backward recomputes the softmax from the logits instead of keeping a (P, C) copy from the
forward: one more pass over the logits, one fewer array the size of the network's output.
Targets reach the kernels as int64 (uint8 label maps are converted). The Numba kernels work on
the (N, C, H*W) layout directly: a block of consecutive pixels of one image at a time, looping
over classes outside and pixels inside, so every inner loop reads contiguous memory and no
(N*H*W, C) transposed copy is made.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from minisegnet import backend
from minisegnet.arrays import array_module
from minisegnet.autograd import Function, is_grad_enabled
from minisegnet.ops import kernel_table, loss_fused


def _to_rows(logits):
    """(N, C, H, W) -> (N*H*W, C) so every position is one row; (N, C) stays."""
    if logits.ndim == 2:
        return logits
    n, c, h, w = logits.shape
    return logits.transpose(0, 2, 3, 1).reshape(-1, c)


def _from_rows(rows, shape):
    if len(shape) == 2:
        return rows
    n, c, h, w = shape
    return rows.reshape(n, h, w, c).transpose(0, 3, 1, 2)


# --------------------------------------------------------------------------- reference
def _softmax_rows_ref(logits, target, weight, ignore_index):
    """Shared by the reference forward and backward: rows, labels, validity and softmax."""
    xp = array_module(logits)
    z = _to_rows(logits)  # (P, C)
    t = target.reshape(-1)  # (P,)
    valid = t != ignore_index
    t_safe = xp.where(valid, t, 0)
    z_max = z.max(axis=1, keepdims=True)
    e = xp.exp(z - z_max)
    sum_e = e.sum(axis=1, keepdims=True)
    log_p = z - z_max - xp.log(sum_e)  # (P, C)
    w_pos = (weight[t_safe] if weight is not None else xp.ones_like(t_safe, dtype=z.dtype)) * valid
    return z, t_safe, log_p, w_pos.astype(z.dtype), e / sum_e


def cross_entropy_forward_ref(logits, target, weight, ignore_index):
    """(per-position loss, per-position weight), both shaped like ``target``."""
    xp = array_module(logits)
    z, t_safe, log_p, w_pos, _ = _softmax_rows_ref(logits, target, weight, ignore_index)
    loss = -w_pos * log_p[xp.arange(z.shape[0]), t_safe]
    return loss.astype(z.dtype).reshape(target.shape), w_pos.reshape(target.shape)


def cross_entropy_backward_ref(logits, target, weight, ignore_index, scale_per_position):
    """dz, shaped like ``logits``: scale[p] * w[t_p] * (softmax(z)[p] - onehot(t_p))."""
    xp = array_module(logits)
    z, t_safe, _, w_pos, softmax = _softmax_rows_ref(logits, target, weight, ignore_index)
    dz = softmax  # (P, C), a fresh array
    dz[xp.arange(z.shape[0]), t_safe] -= 1
    dz *= (w_pos * scale_per_position.reshape(-1))[:, None]  # w_pos is 0 at ignored positions
    return _from_rows(dz, logits.shape).astype(logits.dtype)


# --------------------------------------------------------------------------- Numba
_BLOCK = 512  # pixels of one image handled together by one prange iteration


@njit(inline="always")
def _block(job, blocks, length):
    """Image n and pixels [start, stop) of parallel job ``job`` (``blocks`` jobs per image)."""
    n = job // blocks
    start = (job % blocks) * _BLOCK
    return n, start, min(start + _BLOCK, length)


@njit(inline="always")
def _softmax_sums(z, n, start, stop, z_max, total, e_out):
    """For the pixels [start, stop) of image n: z_max = the max over classes of z, total = the
    sum over classes of exp(z - z_max); with ``e_out`` (not None) each exp(z - z_max) is also
    kept there (the backward's dz: exp, which dominates the time, then runs once per element).
    Classes outside, pixels inside, so every inner loop reads contiguous memory."""
    for i in range(start, stop):
        z_max[n, i] = z[n, 0, i]
        total[n, i] = 0
    for c in range(1, z.shape[1]):
        for i in range(start, stop):
            z_max[n, i] = max(z_max[n, i], z[n, c, i])
    for c in range(z.shape[1]):
        for i in range(start, stop):
            e = np.exp(z[n, c, i] - z_max[n, i])
            if e_out is not None:  # decided when Numba compiles the caller
                e_out[n, c, i] = e
            total[n, i] += e


def kernel_layout(logits, target, weight, dtype):
    """The kernels' arrays: logits (N, C, L), int64 targets (N, L), weight (C,) of ``dtype``
    (ones when None)."""
    n_, c_ = logits.shape[:2]
    z = np.ascontiguousarray(logits).reshape(n_, c_, -1)
    t = np.ascontiguousarray(target, dtype=np.int64).reshape(n_, -1)
    w = np.ones(c_, dtype) if weight is None else weight.astype(dtype)
    return z, t, w


@njit(parallel=True, cache=True)
def _forward_kernel(z, target, weight, ignore_index, z_max, sum_e, loss, w_pos):
    """z (N, C, L); target, z_max, sum_e, loss, w_pos (N, L). One block of pixels per iteration;
    each iteration writes only its own pixels. z_max and sum_e (float64) are scratch space."""
    n_, c_, l_ = z.shape
    blocks = (l_ + _BLOCK - 1) // _BLOCK
    for job in prange(n_ * blocks):
        n, start, stop = _block(job, blocks, l_)
        _softmax_sums(z, n, start, stop, z_max, sum_e, None)
        for i in range(start, stop):
            t = target[n, i]
            if t == ignore_index:
                loss[n, i] = 0
                w_pos[n, i] = 0
            else:
                log_p = np.float64(z[n, t, i]) - z_max[n, i] - np.log(sum_e[n, i])
                loss[n, i] = -weight[t] * log_p
                w_pos[n, i] = weight[t]


def cross_entropy_forward_numba(logits, target, weight, ignore_index):
    if logits.size == 0:  # an empty batch: nothing for the kernel (reshape(-1) cannot size it)
        return cross_entropy_forward_ref(logits, target, weight, ignore_index)
    z, t, w = kernel_layout(logits, target, weight, logits.dtype)  # (N, C, L), (N, L), (C,)
    z_max = np.empty(t.shape, logits.dtype)
    sum_e = np.empty(t.shape, np.float64)
    loss = np.empty(t.shape, logits.dtype)
    w_pos = np.empty(t.shape, logits.dtype)
    _forward_kernel(z, t, w, np.int64(ignore_index), z_max, sum_e, loss, w_pos)
    return loss.reshape(target.shape), w_pos.reshape(target.shape)


@njit(parallel=True, cache=True)
def _backward_kernel(z, target, weight, ignore_index, scale, z_max, inv_sum, g, dz):
    """z, dz (N, C, L); target, scale, z_max, inv_sum, g (N, L), the last three scratch.
    One block of pixels per iteration; dz[n, :, block] is written by that iteration only."""
    n_, c_, l_ = z.shape
    blocks = (l_ + _BLOCK - 1) // _BLOCK
    for job in prange(n_ * blocks):
        n, start, stop = _block(job, blocks, l_)
        _softmax_sums(z, n, start, stop, z_max, inv_sum, dz)  # dz holds exp(z - max)
        for i in range(start, stop):
            inv_sum[n, i] = 1 / inv_sum[n, i]
            t = target[n, i]
            g[n, i] = 0 if t == ignore_index else weight[t] * scale[n, i]
        for c in range(c_):
            for i in range(start, stop):
                onehot = 1.0 if c == target[n, i] else 0.0
                dz[n, c, i] = g[n, i] * (dz[n, c, i] * inv_sum[n, i] - onehot)


def cross_entropy_backward_numba(logits, target, weight, ignore_index, scale_per_position):
    if logits.size == 0:  # an empty batch
        return cross_entropy_backward_ref(logits, target, weight, ignore_index, scale_per_position)
    z, t, w = kernel_layout(logits, target, weight, logits.dtype)  # (N, C, L), (N, L), (C,)
    scale = np.ascontiguousarray(scale_per_position, dtype=np.float64).reshape(t.shape)
    z_max = np.empty(t.shape, logits.dtype)
    inv_sum = np.empty(t.shape, np.float64)
    g = np.empty(t.shape, np.float64)
    dz = np.empty_like(z)
    _backward_kernel(z, t, w, np.int64(ignore_index), scale, z_max, inv_sum, g, dz)
    return dz.reshape(logits.shape)


# --------------------------------------------------------------------------- Function
# kernel: (NumPy reference, Numba kernel); the CUDA wrappers are in cuda/loss.py
_KERNELS = {
    "cross_entropy_forward": (cross_entropy_forward_ref, cross_entropy_forward_numba),
    "cross_entropy_backward": (cross_entropy_backward_ref, cross_entropy_backward_numba),
}
_impl = kernel_table("minisegnet.cuda.loss", _KERNELS)


CUDA_FUSED = True
"""cuda / cuda-emu backends, while gradients are recorded: one fused kernel computes loss and
gradient (``minisegnet.cuda.loss.cross_entropy_fused``); False: forward and backward kernels."""


def _fused_impl():
    if not CUDA_FUSED or not is_grad_enabled() or not backend.current().name.startswith("cuda"):
        return None
    return backend.lazy("minisegnet.cuda.loss", "cross_entropy_fused")


class CrossEntropy(Function):
    def forward(self, logits, target, weight=None, ignore_index=255, reduction="mean"):
        xp = array_module(logits)
        target = xp.ascontiguousarray(target).astype(xp.int64, copy=False)
        logits = xp.ascontiguousarray(logits)
        fused = _fused_impl()
        if fused is not None:  # cuda: one kernel for loss and gradient (cuda/loss.py)
            return self._forward_fused(fused, xp, logits, target, weight, ignore_index, reduction)
        softmax_sums = None
        if backend.current().name == "numba" and loss_fused.applies(logits):
            # The vectorised passes of ops/loss_fused.py; the kernels above otherwise.
            loss, w_pos, softmax_sums = loss_fused.cross_entropy_forward(
                logits, target, weight, ignore_index
            )
        else:
            loss, w_pos = _impl("cross_entropy_forward")(logits, target, weight, ignore_index)
        total_weight = w_pos.sum()
        self.save(
            logits=logits,
            target=target,
            weight=weight,
            ignore_index=ignore_index,
            reduction=reduction,
            total_weight=total_weight,
            softmax_sums=softmax_sums,
        )
        if reduction == "none":
            return loss
        total = loss.sum()
        if reduction == "sum":
            return total.astype(logits.dtype)
        return (total / total_weight if total_weight > 0 else total * 0).astype(logits.dtype)

    def _forward_fused(self, fused, xp, logits, target, weight, ignore_index, reduction):
        """The loss from one fused kernel that also leaves the unscaled gradient; no host sync
        (the mean's 0/0 guard is an xp.where, not a Python if)."""
        loss, _, grad, totals = fused(logits, target, weight, ignore_index)
        total, total_weight = totals[0], totals[1]
        inv_weight = xp.where(total_weight > 0, 1 / xp.where(total_weight > 0, total_weight, 1), 0)
        self.save(cuda_grad=grad, reduction=reduction, inv_weight=inv_weight)
        if reduction == "none":
            return loss
        if reduction == "sum":
            return total.astype(logits.dtype)
        return (total * inv_weight).astype(logits.dtype)

    def backward(self, dy):
        s = self.saved
        if getattr(s, "cuda_grad", None) is not None:  # the cuda kernel's gradient, scaled
            if s.reduction == "none":  # dy (N[, H, W]): one factor per position
                return s.cuda_grad * dy.reshape(dy.shape[:1] + (1,) + dy.shape[1:])
            factor = dy * s.inv_weight if s.reduction == "mean" else dy
            return s.cuda_grad * factor.astype(s.cuda_grad.dtype)
        xp = array_module(s.logits)
        dtype = s.logits.dtype
        if s.reduction == "mean":
            dy = dy / s.total_weight if s.total_weight > 0 else dy * 0
        if s.softmax_sums is not None:  # ops/loss_fused.py: one pass from the forward's sums
            return loss_fused.cross_entropy_backward(
                s.logits, s.target, s.weight, s.ignore_index, dy, s.softmax_sums
            )
        if s.reduction == "none":
            scale = dy  # (N[, H, W]), one factor per position
        else:
            scale = xp.empty(s.target.shape, dtype)
            scale[...] = dy
        scale = xp.ascontiguousarray(scale, dtype=dtype)
        return _impl("cross_entropy_backward")(s.logits, s.target, s.weight, s.ignore_index, scale)

"""Batch normalisation (Ioffe & Szegedy 2015): normalise each channel, then scale and shift.

    mean[c]   = 1/M * sum over n, y, x of x[n, c, y, x]                  M = N*H*W
    var[c]    = 1/M * sum over n, y, x of (x[n, c, y, x] - mean[c])^2    (biased: divides by M)
    invstd[c] = 1 / sqrt(var[c] + eps)
    xhat      = (x - mean[c]) * invstd[c]
    y         = xhat * weight[c] + bias[c]

Shapes:  x (N, C, H, W) or (N, C) [or (N, C, L)] -> y same shape;  weight, bias, running_* (C,)
         (the kernels see 4-D arrays: (N, C) arrives as (N, C, 1, 1), (N, C, L) as (N, C, L, 1))

Training uses the batch's mean and var, and updates the running estimates in place
(PyTorch's convention, momentum m, the *unbiased* variance for the running estimate):

    running_mean = (1 - m) * running_mean + m * mean
    running_var  = (1 - m) * running_var  + m * var * M / (M - 1)

Evaluation uses running_mean and running_var instead of the batch statistics.

Backward (training: mean and var depend on x, which adds the last two terms):

    dbias[c]   = sum dy[n, c, y, x]
    dweight[c] = sum dy * xhat
    dx         = weight[c] * invstd[c] * (dy - dbias[c] / M - xhat * dweight[c] / M)

Backward (evaluation: mean and invstd are constants):  dx = dy * weight[c] * invstd[c];
dweight and dbias as above.

Kernels: the statistics are two passes per channel (the mean, then the squared deviations from
it), accumulated in float64 even for float32 data, which is what keeps var accurate when
|mean| >> std. ``weight`` and ``bias`` are always arrays in the kernels (ones and zeros for a
layer with affine=False), so each kernel has one signature per dtype.

Worked example: one channel holding [1, 2, 3, 4]: mean 2.5, var 1.25, invstd 0.8944 (eps 0),
y = [-1.342, -0.447, 0.447, 1.342]; the running var is updated with 1.25 * 4/3 = 1.667.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from minisegnet.arrays import array_module
from minisegnet.autograd import Function
from minisegnet.ops import kernel_table


# --------------------------------------------------------------------------- reference
def batch_norm_stats_ref(x):
    """Per-channel mean and biased variance over (N, H, W). x (N, C, H, W) -> ((C,), (C,))."""
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(0, 2, 3))  # (C,)
    var = ((x64 - mean[None, :, None, None]) ** 2).mean(axis=(0, 2, 3))  # (C,), two passes
    return mean.astype(x.dtype), var.astype(x.dtype)


def batch_norm_forward_ref(x, mean, invstd, weight, bias):
    """y = (x - mean) * invstd * weight + bias, per channel. x (N, C, H, W), the rest (C,)."""

    def per_channel(a):
        return a[None, :, None, None]  # (1, C, 1, 1)

    return (x - per_channel(mean)) * per_channel(invstd) * per_channel(weight) + per_channel(bias)


def batch_norm_backward_ref(dy, x, mean, invstd, weight):
    """Training-mode backward: (dx, dweight, dbias). dy, x (N, C, H, W); the rest (C,)."""
    n, c, h, w = x.shape
    count = n * h * w
    xhat = (x - mean[None, :, None, None]) * invstd[None, :, None, None]  # (N, C, H, W)
    dbias = dy.sum(axis=(0, 2, 3), dtype=np.float64)  # (C,)
    dweight = (dy * xhat).sum(axis=(0, 2, 3), dtype=np.float64)  # (C,)
    dbias, dweight = dbias.astype(x.dtype), dweight.astype(x.dtype)
    dx = (weight * invstd)[None, :, None, None] * (
        dy - (dbias / count)[None, :, None, None] - xhat * (dweight / count)[None, :, None, None]
    )
    return dx.astype(x.dtype), dweight, dbias


# --------------------------------------------------------------------------- Numba
@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _stats_kernel(x, mean, var):
    """One channel per prange iteration; float64 sums ('reassoc' lets them vectorise)."""
    n_, c_, h_, w_ = x.shape
    xs = x.reshape(n_, c_, h_ * w_)  # (N, C, H*W), a view
    count = n_ * h_ * w_
    for c in prange(c_):
        total = 0.0
        for n in range(n_):
            for i in range(h_ * w_):
                total += xs[n, c, i]
        mu = total / count
        squares = 0.0
        for n in range(n_):
            for i in range(h_ * w_):
                d = xs[n, c, i] - mu
                squares += d * d
        mean[c] = mu
        var[c] = squares / count


def batch_norm_stats_numba(x):
    c = x.shape[1]
    mean = np.empty(c, np.float64)
    var = np.empty(c, np.float64)
    _stats_kernel(x, mean, var)
    return mean.astype(x.dtype), var.astype(x.dtype)


@njit(parallel=True, cache=True)
def _forward_kernel(x, mean, invstd, weight, bias, y):
    """One (n, c) plane per prange iteration: writes y[n, c] only."""
    n_, c_, h_, w_ = x.shape
    xs = x.reshape(n_, c_, h_ * w_)
    ys = y.reshape(n_, c_, h_ * w_)
    for plane in prange(n_ * c_):
        n, c = plane // c_, plane % c_
        mu, scale, shift = mean[c], invstd[c] * weight[c], bias[c]
        for i in range(h_ * w_):
            ys[n, c, i] = (xs[n, c, i] - mu) * scale + shift


def batch_norm_forward_numba(x, mean, invstd, weight, bias):
    y = np.empty_like(x)
    _forward_kernel(x, mean, invstd, weight, bias, y)
    return y


@njit(parallel=True, cache=True, fastmath={"reassoc"})
def _backward_kernel(dy, x, mean, invstd, weight, dx, dweight, dbias):
    """One channel per prange iteration: two float64 sums, then dx[:, c] (race-free)."""
    n_, c_, h_, w_ = x.shape
    hw = h_ * w_
    xs, dys, dxs = x.reshape(n_, c_, hw), dy.reshape(n_, c_, hw), dx.reshape(n_, c_, hw)
    count = n_ * hw
    for c in prange(c_):
        mu = mean[c]
        sum_dy = 0.0
        sum_dy_xmu = 0.0
        for n in range(n_):
            for i in range(hw):
                g = dys[n, c, i]
                sum_dy += g
                sum_dy_xmu += g * (xs[n, c, i] - mu)
        istd = np.float64(invstd[c])
        dbias[c] = sum_dy
        dweight[c] = sum_dy_xmu * istd
        # dx = weight*invstd * (dy - sum_dy/M - (x - mean) * invstd^2 * sum_dy_xmu / M)
        a = dx.dtype.type(weight[c] * istd)
        k1 = dx.dtype.type(sum_dy / count)
        k2 = dx.dtype.type(sum_dy_xmu * istd * istd / count)
        for n in range(n_):
            for i in range(hw):
                dxs[n, c, i] = a * (dys[n, c, i] - k1 - (xs[n, c, i] - mu) * k2)


def batch_norm_backward_numba(dy, x, mean, invstd, weight):
    dx = np.empty_like(x)
    dweight = np.empty(x.shape[1], np.float64)
    dbias = np.empty(x.shape[1], np.float64)
    _backward_kernel(dy, x, mean, invstd, weight, dx, dweight, dbias)
    return dx, dweight.astype(x.dtype), dbias.astype(x.dtype)


# --------------------------------------------------------------------------- dispatch
# kernel: (NumPy reference, Numba kernel); the CUDA wrappers are in cuda/normalization.py
_KERNELS = {
    "batch_norm_stats": (batch_norm_stats_ref, batch_norm_stats_numba),
    "batch_norm_forward": (batch_norm_forward_ref, batch_norm_forward_numba),
    "batch_norm_backward": (batch_norm_backward_ref, batch_norm_backward_numba),
}
_impl = kernel_table("minisegnet.cuda.normalization", _KERNELS)


def as_4d(x):
    """(N, C) -> (N, C, 1, 1); (N, C, L) -> (N, C, L, 1); (N, C, H, W) unchanged (contiguous)."""
    xp = array_module(x)
    if x.ndim == 2:
        x = x.reshape(x.shape + (1, 1))
    elif x.ndim == 3:
        x = x.reshape(x.shape + (1,))
    return xp.ascontiguousarray(x)


def update_running_stats(running_mean, running_var, mean, var, count, momentum):
    """In place: running = (1 - momentum) * running + momentum * batch (unbiased var)."""
    unbiased = var * (count / (count - 1))
    running_mean *= 1 - momentum
    running_mean += (momentum * mean).astype(running_mean.dtype)
    running_var *= 1 - momentum
    running_var += (momentum * unbiased).astype(running_var.dtype)


class BatchNorm(Function):
    """Inputs: x and, when given, weight and bias tensors (in that order).

    ``running_mean``/``running_var`` are plain arrays, updated in place when ``training``.
    The arguments are checked by ``minisegnet.functional.batch_norm``.
    """

    def forward(
        self, x, weight=None, bias=None, *, running_mean, running_var, training, momentum, eps
    ):
        xp = array_module(x)
        x4 = as_4d(x)  # (N, C, H, W)
        channels = x4.shape[1]
        count = x4.shape[0] * x4.shape[2] * x4.shape[3]
        w = weight if weight is not None else xp.ones(channels, x.dtype)
        b = bias if bias is not None else xp.zeros(channels, x.dtype)
        if x.size == 0:  # an empty batch: an empty output, running statistics untouched
            self.save(empty=True, weight=w, has_weight=weight is not None,
                      has_bias=bias is not None, shape=x.shape)  # fmt: skip
            return xp.empty(x.shape, x.dtype)
        if training:
            mean, var = _impl("batch_norm_stats")(x4)  # (C,), (C,)
            if running_mean is not None:
                update_running_stats(running_mean, running_var, mean, var, count, momentum)
        else:
            mean, var = running_mean.astype(x.dtype), running_var.astype(x.dtype)
        invstd = (1 / xp.sqrt(var + x.dtype.type(eps))).astype(x.dtype)  # (C,)
        y = _impl("batch_norm_forward")(x4, mean, invstd, w, b)
        self.save(
            x4=x4, mean=mean, invstd=invstd, weight=w, training=training, empty=False,
            has_weight=weight is not None, has_bias=bias is not None, shape=x.shape,
        )  # fmt: skip
        return y.reshape(x.shape)

    def backward(self, dy):
        s = self.saved
        xp = array_module(dy)
        if s.empty:  # nothing flowed through: dx is empty, dweight and dbias are 0
            zero = xp.zeros_like(s.weight)
            return (xp.zeros(s.shape, dy.dtype),) + (zero,) * (s.has_weight + s.has_bias)
        dy4 = xp.ascontiguousarray(dy.reshape(s.x4.shape))  # (N, C, H, W)
        need_affine = any(self.needs_grad[1:])
        if s.training:
            dx, dweight, dbias = _impl("batch_norm_backward")(dy4, s.x4, s.mean, s.invstd, s.weight)
        else:
            # mean and invstd are constants: dx = dy * weight * invstd, i.e. the forward map
            # applied to dy with mean 0 and bias 0.
            zeros = xp.zeros_like(s.mean)
            dx = _impl("batch_norm_forward")(dy4, zeros, s.invstd, s.weight, zeros)
            dweight = dbias = None
            if need_affine:  # the training backward's sums are the same; its dx is not used
                _, dweight, dbias = _impl("batch_norm_backward")(
                    dy4, s.x4, s.mean, s.invstd, s.weight
                )
        grads = [dx.reshape(s.shape)]
        if s.has_weight:
            grads.append(dweight)
        if s.has_bias:
            grads.append(dbias)
        return tuple(grads)

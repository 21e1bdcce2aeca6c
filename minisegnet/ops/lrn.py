"""Local response normalisation across channels (Krizhevsky et al. 2012), PyTorch's formula.

With n = size, the window of channel c is c - n//2 .. c + (n-1)//2 (channels outside 0..C-1
count as zeros; the average still divides by n):

    scale[n, c, y, x] = k + alpha/n * sum over c' in window(c) of x[n, c', y, x]^2
    y[n, c, y, x]     = x[n, c, y, x] * scale[n, c, y, x] ** -beta

Shapes: x (N, C, H, W) -> y, scale (N, C, H, W). Other ranks (N, C, *) are viewed as
(N, C, L, 1) before the kernels run.

Backward. y_c depends on x_j directly (j = c) and through scale_c for every j in window(c):

    d y_c / d x_j = [j == c] * scale_c^-beta - 2*alpha*beta/n * x_c * x_j * scale_c^(-beta-1)

so, gathering over the channels c whose window contains j (c = j - (n-1)//2 .. j + n//2; note
the mirrored offsets when n is even):

    dx_j = dy_j * scale_j^-beta - 2*alpha*beta/n * x_j * sum over those c of dy_c * y_c / scale_c

SegNet-Basic normalises its input image with size 5, alpha 1e-4, beta 0.75, k 1.

Kernels: one (n, c) plane per Numba iteration, summing its window of channels (a gather, so the
planes are independent). The cost is the power: for the usual beta = 0.75 the kernels use
s^-0.75 = 1 / (sqrt(s) * sqrt(sqrt(s))), which vectorises; other betas call pow per value, which
without Intel's SVML library is scalar and runs at about NumPy's speed.

Worked example: one pixel, channels [1, 2], size 2, alpha 1, beta 1, k 1: windows are {0} and
{0, 1} (c - 1 .. c + 0), scale = [1 + 1/2, 1 + 5/2] = [1.5, 3.5], y = [0.667, 0.571].
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from minisegnet.arrays import array_module
from minisegnet.autograd import Function
from minisegnet.ops import kernel_table


# --------------------------------------------------------------------------- reference
def lrn_forward_ref(x, size, alpha, beta, k):
    """(y, scale), both shaped like x (N, C, H, W)."""
    xp = array_module(x)
    n_, c_ = x.shape[:2]
    before = size // 2  # window(c) = c - size//2 .. c + (size-1)//2
    squares = xp.zeros((n_, c_ + size - 1) + x.shape[2:], x.dtype)  # zero-padded channels
    squares[:, before : before + c_] = x * x
    total = xp.zeros_like(x)
    for offset in range(size):  # window(c) = padded channels c .. c + size - 1
        total += squares[:, offset : offset + c_]
    scale = k + (alpha / size) * total
    y = x * scale ** (-beta)
    return y.astype(x.dtype), scale.astype(x.dtype)


def lrn_backward_ref(dy, x, y, scale, size, alpha, beta):
    """dx (N, C, H, W), as a gather over the channels whose window contains j."""
    xp = array_module(x)
    n_, c_ = x.shape[:2]
    after = (size - 1) // 2  # channels c with j in window(c): j - (size-1)//2 .. j + size//2
    q = xp.zeros((n_, c_ + size - 1) + x.shape[2:], x.dtype)  # dy * y / scale, padded
    q[:, after : after + c_] = dy * y / scale
    total = xp.zeros_like(x)
    for offset in range(size):  # channels j - after .. j + before
        total += q[:, offset : offset + c_]
    dx = dy * scale ** (-beta) - (2 * alpha * beta / size) * x * total
    return dx.astype(x.dtype)


# --------------------------------------------------------------------------- Numba
@njit(parallel=True, cache=True)
def _forward_kernel(x, size, alpha, beta, k, y, scale):
    """One (n, c) plane per prange iteration; the scale plane accumulates its own window."""
    n_, c_, h_, w_ = x.shape
    hw = h_ * w_
    xs, ys, ss = x.reshape(n_, c_, hw), y.reshape(n_, c_, hw), scale.reshape(n_, c_, hw)
    coef = x.dtype.type(alpha / size)
    kk = x.dtype.type(k)
    neg_beta = x.dtype.type(-beta)
    for plane in prange(n_ * c_):
        n, c = plane // c_, plane % c_
        first, last = max(0, c - size // 2), min(c_ - 1, c + (size - 1) // 2)
        for i in range(hw):
            ss[n, c, i] = 0
        for cc in range(first, last + 1):
            for i in range(hw):
                v = xs[n, cc, i]
                ss[n, c, i] += v * v
        if beta == 0.75:  # the usual value: s^-0.75 = 1 / (sqrt(s) * sqrt(sqrt(s))), vectorises
            for i in range(hw):
                s = kk + coef * ss[n, c, i]
                ss[n, c, i] = s
                r = np.sqrt(s)
                ys[n, c, i] = xs[n, c, i] / (r * np.sqrt(r))
        else:
            for i in range(hw):
                s = kk + coef * ss[n, c, i]
                ss[n, c, i] = s
                ys[n, c, i] = xs[n, c, i] * s**neg_beta


def lrn_forward_numba(x, size, alpha, beta, k):
    x = np.ascontiguousarray(x)
    y = np.empty_like(x)
    scale = np.empty_like(x)
    _forward_kernel(x, size, float(alpha), float(beta), float(k), y, scale)
    return y, scale


@njit(parallel=True, cache=True)
def _backward_kernel(dy, x, y, scale, size, alpha, beta, dx):
    """One destination plane (n, j) per prange iteration, gathering from channels
    j - (size-1)//2 .. j + size//2; dx[n, j] doubles as the accumulator."""
    n_, c_, h_, w_ = x.shape
    hw = h_ * w_
    xs, ys, ss = x.reshape(n_, c_, hw), y.reshape(n_, c_, hw), scale.reshape(n_, c_, hw)
    dys, dxs = dy.reshape(n_, c_, hw), dx.reshape(n_, c_, hw)
    coef = x.dtype.type(2 * alpha * beta / size)
    neg_beta = x.dtype.type(-beta)
    for plane in prange(n_ * c_):
        n, j = plane // c_, plane % c_
        first, last = max(0, j - (size - 1) // 2), min(c_ - 1, j + size // 2)
        for i in range(hw):
            dxs[n, j, i] = 0
        for c in range(first, last + 1):
            for i in range(hw):
                dxs[n, j, i] += dys[n, c, i] * ys[n, c, i] / ss[n, c, i]
        for i in range(hw):
            if beta == 0.75:
                r = np.sqrt(ss[n, j, i])
                direct = dys[n, j, i] / (r * np.sqrt(r))
            else:
                direct = dys[n, j, i] * ss[n, j, i] ** neg_beta
            dxs[n, j, i] = direct - coef * xs[n, j, i] * dxs[n, j, i]


def lrn_backward_numba(dy, x, y, scale, size, alpha, beta):
    dx = np.empty_like(x)
    _backward_kernel(np.ascontiguousarray(dy), x, y, scale, size, float(alpha), float(beta), dx)
    return dx


# --------------------------------------------------------------------------- Function
def _as_4d(x):
    """(N, C, *) -> (N, C, L, 1) for ranks other than 4 (a view of contiguous data)."""
    if x.ndim == 4:
        return array_module(x).ascontiguousarray(x)
    length = int(np.prod(x.shape[2:]))  # not -1: an empty input cannot size it
    return array_module(x).ascontiguousarray(x).reshape(x.shape[0], x.shape[1], length, 1)


# kernel: (NumPy reference, Numba kernel); the CUDA wrappers are in cuda/normalization.py
_KERNELS = {
    "lrn_forward": (lrn_forward_ref, lrn_forward_numba),
    "lrn_backward": (lrn_backward_ref, lrn_backward_numba),
}
_impl = kernel_table("minisegnet.cuda.normalization", _KERNELS)


class LocalResponseNorm(Function):
    """The arguments are checked by ``minisegnet.functional.local_response_norm``."""

    def forward(self, x, size, alpha, beta, k):
        x4 = _as_4d(x)  # (N, C, H, W)
        y, scale = _impl("lrn_forward")(x4, size, alpha, beta, k)
        self.save(x4=x4, y=y, scale=scale, size=size, alpha=alpha, beta=beta, shape=x.shape)
        return y.reshape(x.shape)

    def backward(self, dy):
        s = self.saved
        dy4 = array_module(dy).ascontiguousarray(dy).reshape(s.x4.shape)
        dx = _impl("lrn_backward")(dy4, s.x4, s.y, s.scale, s.size, s.alpha, s.beta)
        return dx.reshape(s.shape)

"""Softmax and log-softmax along one axis, computed stably.

    softmax(x)_i     = exp(x_i - m) / sum_j exp(x_j - m)          m = max_j x_j
    log_softmax(x)_i = x_i - m - log sum_j exp(x_j - m)

Subtracting the maximum changes nothing mathematically and keeps exp from overflowing: the
largest term becomes exp(0) = 1, so the sum lies in [1, n] and its log is finite.

Shapes: x (any) -> y (same shape); ``axis`` is the class axis (1 for (N, C, H, W) logits).

Backward (y the forward output, sums along the axis):

    softmax:      dx = y * (dy - sum_j dy_j * y_j)
    log_softmax:  dx = dy - exp(y) * sum_j dy_j

Worked example: softmax([1, 2, 3]) = [0.0900, 0.2447, 0.6652];
log_softmax([1, 2, 3]) = [-2.4076, -1.4076, -0.4076].

These are a handful of vectorised array calls that NumPy (and CuPy, on the GPU) already run as
fast as a hand-written kernel would, so every backend shares them, like ``elementwise.py``. The
fused per-pixel version used for training (softmax + cross-entropy) lives in ``loss.py``.
"""

from __future__ import annotations

from minisegnet.arrays import array_module
from minisegnet.autograd import Function


def softmax_ref(x, axis):
    if x.size == 0:  # an empty input (the max of an empty axis is undefined): an empty output
        return x.copy()
    xp = array_module(x)
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_backward_ref(dy, y, axis):
    return y * (dy - (dy * y).sum(axis=axis, keepdims=True))


def log_softmax_ref(x, axis):
    if x.size == 0:
        return x.copy()
    xp = array_module(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))


def log_softmax_backward_ref(dy, y, axis):
    return dy - array_module(y).exp(y) * dy.sum(axis=axis, keepdims=True)


class Softmax(Function):
    def forward(self, x, axis):
        y = softmax_ref(x, axis)
        self.save(y=y, axis=axis)
        return y

    def backward(self, dy):
        return softmax_backward_ref(dy, self.saved.y, self.saved.axis)


class LogSoftmax(Function):
    def forward(self, x, axis):
        y = log_softmax_ref(x, axis)
        self.save(y=y, axis=axis)
        return y

    def backward(self, dy):
        return log_softmax_backward_ref(dy, self.saved.y, self.saved.axis)

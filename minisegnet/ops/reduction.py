"""Reductions over axes: sum, mean, max.

    y = sum_i x_i      dx_i = dy                       (dy broadcast back over the reduced axes)
    y = mean_i x_i     dx_i = dy / n
    y = max_i x_i      dx_i = dy * [x_i == y] / (number of maxima)

For ``max`` the gradient is shared equally between tied maxima, which keeps it a valid
subgradient and matches PyTorch's ``amax``.
"""

from __future__ import annotations

import numpy as np

from minisegnet.arrays import array_module
from minisegnet.autograd import Function


def _normalize_axis(axis, ndim: int):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(
                f"axis: expected values in [{-ndim}, {ndim}) for a {ndim}-d tensor, got {axis}"
            )
        out.append(a % ndim)
    return tuple(sorted(set(out)))


def _expand(dy, in_shape, axes, keepdims):
    """Reinsert reduced axes (as size 1) so ``dy`` broadcasts against the input."""
    if not keepdims:
        shape = list(in_shape)
        for a in axes:
            shape[a] = 1
        dy = dy.reshape(shape)
    return dy


class Sum(Function):
    def forward(self, x, axis=None, keepdims=False):
        axes = _normalize_axis(axis, x.ndim)
        self.save(shape=x.shape, axes=axes, keepdims=keepdims)
        return x.sum(axis=axes, keepdims=keepdims)

    def backward(self, dy):
        s = self.saved
        dy = _expand(dy, s.shape, s.axes, s.keepdims)
        return _broadcast_to(dy, s.shape)


class Mean(Function):
    def forward(self, x, axis=None, keepdims=False):
        axes = _normalize_axis(axis, x.ndim)
        count = 1
        for a in axes:
            count *= x.shape[a]
        self.save(shape=x.shape, axes=axes, keepdims=keepdims, count=count)
        return x.mean(axis=axes, keepdims=keepdims)

    def backward(self, dy):
        s = self.saved
        dy = _expand(dy, s.shape, s.axes, s.keepdims)
        return _broadcast_to(dy / dy.dtype.type(s.count), s.shape)


class Max(Function):
    def forward(self, x, axis=None, keepdims=False):
        axes = _normalize_axis(axis, x.ndim)
        y = x.max(axis=axes, keepdims=True)
        self.save(x=x, y_kept=y, axes=axes, keepdims=keepdims)
        return y if keepdims else y.reshape([n for i, n in enumerate(y.shape) if i not in axes])

    def backward(self, dy):
        s = self.saved
        dy = _expand(dy, s.x.shape, s.axes, s.keepdims)
        is_max = s.x == s.y_kept
        count = is_max.sum(axis=s.axes, keepdims=True)
        return (is_max * (dy / count)).astype(s.x.dtype)


def _broadcast_to(dy, shape):
    # A writable copy: callers may accumulate into gradients in place.
    return array_module(dy).broadcast_to(dy, shape).copy()

"""Shape operations: reshape, transpose, indexing/slicing, concatenation, padding; and
``cat``/``stack``, the functions on tensors that concatenation makes.

None of these change values, they only move them, so each backward moves the gradient back:

    reshape       dx = dy.reshape(x.shape)
    transpose     dx = dy.transpose(inverse permutation)
    x[index]      dx = zeros(x.shape); dx[index] += dy     (np.add.at when an index repeats)
    concatenate   dx_k = the k-th slab of dy
    pad           dx = dy with the padding sliced off

Indexing and slicing are what FCN's crops are made of: ``score[:, :, 19:19 + H, 19:19 + W]``.
"""

from __future__ import annotations

import numpy as np

from minisegnet.arrays import array_module
from minisegnet.autograd import Function


class Reshape(Function):
    def forward(self, x, shape):
        self.save(shape=x.shape)
        try:
            return x.reshape(shape)
        except ValueError:
            raise ValueError(
                f"reshape: cannot reshape a tensor of shape {x.shape} ({x.size} elements) "
                f"into shape {tuple(shape)}"
            ) from None

    def backward(self, dy):
        return dy.reshape(self.saved.shape)


class Transpose(Function):
    def forward(self, x, axes=None):
        if axes is None:
            axes = tuple(reversed(range(x.ndim)))
        if sorted(a % x.ndim for a in axes) != list(range(x.ndim)) or len(axes) != x.ndim:
            raise ValueError(
                f"transpose: axes must be a permutation of {tuple(range(x.ndim))}, "
                f"got {tuple(axes)}"
            )
        axes = tuple(a % x.ndim for a in axes)
        self.save(inverse=tuple(np.argsort(axes)))
        return x.transpose(axes)

    def backward(self, dy):
        return dy.transpose(self.saved.inverse)


def _is_basic(index) -> bool:
    """True for ints, slices, None and Ellipsis only: such an index never repeats an element."""
    items = index if isinstance(index, tuple) else (index,)
    return all(isinstance(i, (int, np.integer, slice, type(None), type(Ellipsis))) for i in items)


class GetItem(Function):
    def forward(self, x, index):
        self.save(shape=x.shape, dtype=x.dtype, index=index)
        try:
            y = x[index]
        except IndexError as error:
            raise IndexError(
                f"index {index!r} is invalid for a tensor of shape {x.shape}: {error}"
            ) from None
        xp = array_module(x)
        return y if isinstance(y, xp.ndarray) else xp.asarray(y)

    def backward(self, dy):
        s = self.saved
        xp = array_module(dy)
        dx = xp.zeros(s.shape, dtype=s.dtype)
        if _is_basic(s.index):
            dx[s.index] = dy  # basic indexing selects each element at most once
        else:
            # Advanced indexing may select an element several times: accumulate.
            if xp is np:
                np.add.at(dx, s.index, dy)
            else:
                xp.add.at(dx, s.index, dy)
        return dx


class Concatenate(Function):
    def forward(self, *arrays, axis=0):
        first = arrays[0]
        self.save(axis=axis, sizes=[a.shape[axis] for a in arrays])
        return array_module(first).concatenate(arrays, axis=axis)

    def backward(self, dy):
        s = self.saved
        bounds = np.cumsum(s.sizes)[:-1].tolist()  # plain ints: CuPy takes no host arrays
        return tuple(array_module(dy).split(dy, bounds, axis=s.axis))


class Pad(Function):
    """Constant padding; ``pad`` is PyTorch's flat tuple, last axis first:
    (left, right) pads the last axis, (left, right, top, bottom) the last two, and so on."""

    def forward(self, x, pad, value=0.0):
        widths = [(0, 0)] * x.ndim
        for i in range(len(pad) // 2):
            widths[x.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
        self.save(slices=tuple(slice(lo, lo + n) for (lo, _), n in zip(widths, x.shape)))
        return array_module(x).pad(x, widths, mode="constant", constant_values=value)

    def backward(self, dy):
        return dy[self.saved.slices].copy()

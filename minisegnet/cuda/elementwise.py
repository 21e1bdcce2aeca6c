"""Elementwise kernels (``kernels/elementwise.cu``), the first CUDA kernels to read: one thread
per element, ``i = blockIdx.x * blockDim.x + threadIdx.x``.

Kernels launched (T = float, double): ``relu_forward<T>``, ``relu_backward<T>``, ``add<T>``,
``mul<T>``, ``axpy<T>``. Arrays must have equal shapes and dtypes (no broadcasting: the ops layer
broadcasts with NumPy/CuPy, whose own elementwise loops are as fast as these).

    relu_forward(x) -> y              y = max(x, 0)
    relu_backward(dy, x) -> dx        dx = dy * [x > 0]
    add(a, b) -> a + b,  mul(a, b) -> a * b
    axpy(alpha, x, y) -> y            y += alpha * x in place (an SGD step: axpy(-lr, grad, w))
"""

from __future__ import annotations

import numpy as np

from minisegnet.arrays import array_module
from minisegnet.cuda.launch import check_array, ctype, launch_1d

__all__ = ["relu_forward", "relu_backward", "add", "mul", "axpy"]

SOURCE = "elementwise.cu"


def _same(op, names, arrays):
    for name, a in zip(names, arrays):
        check_array(op, name, a)
    first = arrays[0]
    for name, a in zip(names[1:], arrays[1:]):
        if a.shape != first.shape or a.dtype != first.dtype:
            raise ValueError(
                f"{op}: {name} must match {names[0]} ({first.shape} {first.dtype}), got "
                f"{a.shape} {a.dtype}"
            )


def _run(kernel, arrays, out):
    """kernel<T>(*arrays, out, count), one thread per element of out; returns out."""
    launch_1d(SOURCE, f"{kernel}<{ctype(out.dtype)}>", out.size, (*arrays, out, np.int64(out.size)))
    return out


def relu_forward(x):
    """y = max(x, 0). Launches ``relu_forward<T>``."""
    _same("relu_forward", ("x",), (x,))
    return _run("relu_forward", (x,), array_module(x).empty_like(x))


def relu_backward(dy, x):
    """dx = dy * [x > 0]. Launches ``relu_backward<T>``."""
    _same("relu_backward", ("dy", "x"), (dy, x))
    return _run("relu_backward", (dy, x), array_module(x).empty_like(x))


def add(a, b):
    """a + b. Launches ``add<T>``."""
    _same("add", ("a", "b"), (a, b))
    return _run("add", (a, b), array_module(a).empty_like(a))


def mul(a, b):
    """a * b. Launches ``mul<T>``."""
    _same("mul", ("a", "b"), (a, b))
    return _run("mul", (a, b), array_module(a).empty_like(a))


def axpy(alpha, x, y):
    """y += alpha * x, in place; returns y. Launches ``axpy<T>``."""
    _same("axpy", ("x", "y"), (x, y))
    args = (y.dtype.type(alpha), x, y, np.int64(y.size))
    launch_1d(SOURCE, f"axpy<{ctype(y.dtype)}>", y.size, args)
    return y

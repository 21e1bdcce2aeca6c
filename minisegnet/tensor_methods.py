"""Tensor's methods that run an op: ``a + b``, ``a @ b``, ``t.exp()``, ``t.sum()``,
``t.reshape()``, ``t[i]``, ``t.to("cuda")``.

Each method calls one :class:`~minisegnet.autograd.Function` from ``minisegnet/ops/``. They live
here, not in ``tensor.py``, because of the floors (``tests/test_architecture.py``): every op
file imports ``Tensor``, so ``tensor.py`` cannot import the op files back without making a
circle of them. This module sits one floor above the ops; ``minisegnet/__init__.py`` imports it,
so the methods are attached to ``Tensor`` as soon as ``minisegnet`` is imported, before any
tensor exists.

``METHODS`` at the end is the whole story, one row per method: its name and what it runs. Most
rows are made by four small builders (``binary``, ``reflected``, ``unary``, ``reduction``); the
few methods with logic of their own (``**``, ``reshape``, ``t[i]``, ``to``) are written out.
"""

from __future__ import annotations

import numpy as np

from minisegnet.ops.device import ToDevice
from minisegnet.ops.elementwise import (
    Abs,
    Add,
    Cast,
    Div,
    Exp,
    Log,
    Mul,
    Neg,
    Pow,
    PowScalar,
    ReLU,
    Sigmoid,
    Sqrt,
    Sub,
    Tanh,
)
from minisegnet.ops.matmul import MatMul
from minisegnet.ops.reduction import Max, Mean, Sum
from minisegnet.ops.shape import GetItem, Reshape, Transpose
from minisegnet.tensor import FLOAT_DTYPES, Tensor, as_tuple, target_dtype

__all__ = ["METHODS"]


def operand(value, like: Tensor) -> Tensor:
    """Make the other operand of a binary op a tensor of ``like``'s dtype and array module.

    Python scalars adopt the tensor's dtype (so ``x * 2`` stays float32). Two tensors of
    different float dtypes are an error rather than a silent upcast.
    """
    if isinstance(value, Tensor):
        if value.dtype != like.dtype and value.dtype in FLOAT_DTYPES and like.dtype in FLOAT_DTYPES:
            raise TypeError(
                f"operands have different dtypes ({like.dtype} and {value.dtype}); "
                "convert one with .to(dtype) first"
            )
        return value
    if isinstance(value, (int, float, bool, np.number)):
        return Tensor.from_array(like.xp.asarray(value, dtype=like.dtype))
    array = like.xp.asarray(value)
    if array.dtype.kind == "f" and array.dtype != like.dtype:
        raise TypeError(
            f"operands have different dtypes ({like.dtype} and {array.dtype}); "
            "convert one with .astype() or .to(dtype) first"
        )
    return Tensor.from_array(array.astype(like.dtype) if array.dtype.kind != "f" else array)


# ----------------------------------------------------------------------------- the builders
def binary(op):
    """``a <op> b``: ``b`` (a tensor, a Python number or an array) becomes an operand like ``a``."""

    def method(self, other):
        return op.apply(self, operand(other, self))

    return method


def reflected(op):
    """``b <op> a`` where ``b`` is not a tensor: Python calls ``a.__rsub__(b)`` for ``2 - a``."""

    def method(self, other):
        return op.apply(operand(other, self), self)

    return method


def unary(op):
    """``t.exp()``: the op on the tensor alone."""

    def method(self):
        return op.apply(self)

    return method


def reduction(op):
    """``t.sum(dim=None, keepdim=False)``, PyTorch's names: over every axis, one axis or a tuple
    of axes. NumPy's names ``axis=`` and ``keepdims=`` are accepted too, so array code reads the
    same on a Tensor."""

    name = op.__name__.lower()  # "sum", "mean", "max": the method's name in errors

    def method(self, dim=None, keepdim: bool = False, *, axis=None, keepdims=None):
        dim = _one_of(name, "dim", dim, "axis", axis)
        keepdim = _one_of(name, "keepdim", keepdim or None, "keepdims", keepdims)
        return op.apply(self, axis=dim, keepdims=bool(keepdim))

    return method


def _one_of(op: str, name, value, alias, alias_value):
    """``value``, or ``alias_value`` when only the NumPy spelling was given; both is an error."""
    if alias_value is None:
        return value
    if value is not None:
        raise TypeError(f"{op}: give {name}= or {alias}=, not both")
    return alias_value


# ----------------------------------------------------------------------------- written out
def power(self, exponent):
    """``t ** p``: a constant exponent (a Python number) has its own, cheaper op."""
    if isinstance(exponent, (int, float)):
        return PowScalar.apply(self, exponent=float(exponent))
    return Pow.apply(self, operand(exponent, self))


def reshape(self, *shape):
    """``t.reshape(2, 3)`` or ``t.reshape((2, 3))``; one size may be -1."""
    return Reshape.apply(self, shape=as_tuple(shape))


def view(self, *shape):
    return self.reshape(*shape)


def flatten(self, start_dim: int = 0):
    start = start_dim % self.ndim if self.ndim else 0
    return self.reshape(self.shape[:start] + (-1,))


def transpose(self, *axes):
    """``t.transpose()`` reverses the axes; ``t.transpose(0, 2, 1)`` permutes them."""
    return Transpose.apply(self, axes=as_tuple(axes) or None)


def permute(self, *axes):
    return self.transpose(*axes)


def getitem(self, index):
    """``t[index]``: ints, slices, ``None``, ``...`` and integer or boolean arrays (or tensors)."""
    if isinstance(index, Tensor):
        index = index.data
    elif isinstance(index, tuple):
        index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return GetItem.apply(self, index=index)


def to(self, target):
    """Convert: ``t.to("float64")``, ``t.to(np.float32)``, ``t.to("cuda")``, ``t.to("cpu")``.

    Both conversions are differentiable (the gradient converts or moves back). A move is the
    one op that may take a tensor off the backend's device.
    """
    if isinstance(target, str) and target in ("cpu", "cuda"):
        return ToDevice.apply(self, device=target)
    dtype = target_dtype("to", target)
    if dtype == self.dtype:
        return self
    return Cast.apply(self, dtype=dtype)


def cpu(self):
    return self.to("cpu")


def cuda(self):
    return self.to("cuda")


def float32(self):
    return self.to(np.float32)


def float64(self):
    return self.to(np.float64)


# ----------------------------------------------------------------------------- the table
METHODS = {
    # arithmetic (``a + b`` calls ``a.__add__(b)``; ``2 + a`` calls ``a.__radd__(2)``)
    "__add__": binary(Add),
    "__radd__": reflected(Add),
    "__sub__": binary(Sub),
    "__rsub__": reflected(Sub),
    "__mul__": binary(Mul),
    "__rmul__": reflected(Mul),
    "__truediv__": binary(Div),
    "__rtruediv__": reflected(Div),
    "__pow__": power,
    "__rpow__": reflected(Pow),
    "__matmul__": binary(MatMul),
    "__rmatmul__": reflected(MatMul),
    "__neg__": unary(Neg),
    # elementwise functions
    "exp": unary(Exp),
    "log": unary(Log),
    "sqrt": unary(Sqrt),
    "relu": unary(ReLU),
    "sigmoid": unary(Sigmoid),
    "tanh": unary(Tanh),
    "abs": unary(Abs),
    # reductions
    "sum": reduction(Sum),
    "mean": reduction(Mean),
    "max": reduction(Max),
    # shape
    "reshape": reshape,
    "view": view,
    "flatten": flatten,
    "transpose": transpose,
    "permute": permute,
    "T": property(transpose),
    "__getitem__": getitem,
    # dtype and device
    "to": to,
    "cpu": cpu,
    "cuda": cuda,
    "float": float32,
    "double": float64,
}


def attach(cls, methods) -> None:
    """Set each method on ``cls``, named as if it were written in the class (so
    ``help(Tensor.sum)`` and tracebacks say ``Tensor.sum``)."""
    for name, method in methods.items():
        if callable(method):
            method.__name__ = name
            method.__qualname__ = f"{cls.__name__}.{name}"
        setattr(cls, name, method)


attach(Tensor, METHODS)

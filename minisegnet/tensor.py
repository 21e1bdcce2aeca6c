"""``Tensor``: an array plus the bookkeeping reverse-mode autograd needs.

A tensor wraps a NumPy array (a CuPy array on the ``cuda`` backend: the active backend decides
where new tensors live, see ``minisegnet/arrays.py``). Arithmetic on tensors calls
the :class:`~minisegnet.autograd.Function` subclasses in ``minisegnet/ops/``; each records itself
as the ``creator`` of its result when any input ``requires_grad``. ``loss.backward()`` then fills
``.grad`` of every leaf tensor that requires grad (see ``autograd.py`` for the engine).

    x = ms.tensor([[1.0, 2.0]], requires_grad=True)      # float32 unless told otherwise
    y = (x * x).sum()
    y.backward()
    x.grad                                                # array([[2., 4.]], dtype=float32)

Floating tensors are float32 unless ``dtype=np.float64`` is asked for (gradient checks do), even
when made from a float64 NumPy array. Integer
tensors (labels, pooling switches) exist too but cannot require grad. Operations never mix
float32 and float64 silently: convert one side with ``.to(dtype)`` first.

Two files make a tensor, one floor apart (the floors: ``tests/test_architecture.py``):

* this file: the data and what is read from it (shape, dtype, device, ``numpy()``), the graph
  bookkeeping (``requires_grad``, ``grad``, ``creator``) and ``backward``, and every method that
  records no graph node (comparisons, ``argmax``, ``detach``). It imports only ``arrays``,
  ``backend`` and ``autograd``, and ``autograd`` imports it back: the engine's one circle
  (``Function.apply`` makes tensors, ``Tensor.backward`` runs the engine).
* ``tensor_methods.py``: every method that runs an op (``a + b``, ``a @ b``, ``t.exp()``,
  ``t.sum()``, ``t.reshape()``, ``t[i]``, ``t.to("cuda")``), as one table of
  ``name -> Function``. The op files import ``Tensor``, so ``Tensor`` cannot import them back;
  the table sits one floor above the ops and attaches the methods to ``Tensor`` when
  ``minisegnet`` is imported (``minisegnet/__init__.py`` imports it), so every tensor has them.
"""

from __future__ import annotations

import numpy as np

from minisegnet import autograd, backend
from minisegnet.arrays import ArrayHolder, array_module, device_of, to_device

__all__ = ["Tensor", "tensor", "array_module", "zeros", "ones", "randn", "target_dtype"]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _as_array(data, dtype=None):
    """Turn array-likes into an array of an allowed dtype (float32 for float data by default),
    on the active backend's device (the device rule, ``minisegnet/arrays.py``)."""
    if isinstance(data, Tensor):
        data = data.data
    current = backend.current()
    if device_of(data) != current.device:
        data = to_device(data, current.device)
    xp = current.xp
    if dtype is not None:
        dtype = np.dtype(dtype)
        return xp.asarray(data, dtype=dtype)
    array = xp.asarray(data)
    if array.dtype.kind == "c":
        raise TypeError(f"tensor: complex data is not supported (got {array.dtype})")
    if array.dtype.kind == "f" and array.dtype != np.float32:
        # Float data of any precision becomes float32 unless a dtype is asked for explicitly:
        # NumPy produces float64 by default, and a float64 input meeting float32 weights would
        # otherwise be an error at the first layer.
        array = array.astype(np.float32)
    return array


class Tensor(ArrayHolder):
    """An n-dimensional array that can record the operations applied to it.

    Attributes: ``data`` (the array), ``requires_grad``, ``grad`` (an array, filled by
    ``backward`` on leaves), ``creator`` (the Function that produced it, None for leaves).
    ``shape``, ``dtype``, ``ndim``, ``size``, ``xp``, ``device`` and ``numpy()`` are read from
    ``data`` (:class:`~minisegnet.arrays.ArrayHolder`). The operator methods are in
    ``tensor_methods.py`` (see this module's docstring).
    """

    __array_priority__ = 1000  # so ``ndarray * Tensor`` calls Tensor.__rmul__

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        self.data = _as_array(data, dtype)
        self.grad = None
        self.creator: autograd.Function | None = None
        self.output_index = 0
        self._retains_grad = False
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def from_array(cls, array, requires_grad: bool = False) -> Tensor:
        """A tensor around ``array`` as it is: no copy, no dtype conversion and no move to the
        backend's device (``Tensor(data)`` and ``ms.tensor`` do all three). For arrays an op
        produced, or that the caller already made where the backend computes."""
        t = cls.__new__(cls)
        t.data = array
        t.grad = None
        t.creator = None
        t.output_index = 0
        t._retains_grad = False
        t.requires_grad = requires_grad
        return t

    def __len__(self) -> int:
        return self.shape[0]

    def requires_grad_(self, flag: bool = True) -> Tensor:
        if flag and self.dtype not in FLOAT_DTYPES:
            raise TypeError(
                f"requires_grad: only float32/float64 tensors can require grad, got {self.dtype}"
            )
        self.requires_grad = bool(flag)
        return self

    def retain_grad(self) -> Tensor:
        """Keep ``.grad`` on this non-leaf tensor too (handy when teaching backprop)."""
        self._retains_grad = True
        return self

    def item(self) -> float:
        if self.size != 1:
            raise ValueError(
                f"item: only one-element tensors convert to a scalar, got {self.shape}"
            )
        return self.data.reshape(()).item()

    def tolist(self):
        return self.numpy().tolist()

    def detach(self) -> Tensor:
        """The same data, cut from the graph."""
        return Tensor.from_array(self.data)

    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Compute gradients of this tensor with respect to every leaf that requires grad.

        ``grad`` defaults to 1 for a scalar; a non-scalar needs it given (same shape).
        """
        autograd.backward(self, grad, retain_graph=retain_graph)

    def _accumulate_grad(self, g) -> None:
        # The first gradient is kept as it is (no copy: an op's gradient is a fresh array, and
        # ``.grad`` is never modified in place); later ones make a new sum.
        self.grad = g if self.grad is None else self.grad + g

    def zero_grad(self) -> None:
        self.grad = None

    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), precision=4, separator=", ", threshold=50)
        extra = ""
        if self.creator is not None:
            extra = f", creator={type(self.creator).__name__}"
        elif self.requires_grad:
            extra = ", requires_grad=True"
        return f"tensor({body}, dtype={self.dtype}{extra})"

    def __bool__(self) -> bool:
        return bool(self.item())

    def __float__(self) -> float:
        return float(self.item())

    # ----------------------------------------------------------------- no graph
    # Comparisons give plain boolean tensors (no gradient).
    def _compare(self, other, op):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor.from_array(op(self.data, other))

    def __lt__(self, other):
        return self._compare(other, lambda a, b: a < b)

    def __le__(self, other):
        return self._compare(other, lambda a, b: a <= b)

    def __gt__(self, other):
        return self._compare(other, lambda a, b: a > b)

    def __ge__(self, other):
        return self._compare(other, lambda a, b: a >= b)

    def argmax(self, dim=None, keepdim: bool = False, *, axis=None):
        """Index of the maximum along ``dim`` (``axis``, NumPy's name, is accepted too); no
        gradient: returns a plain integer tensor."""
        if axis is not None:
            if dim is not None:
                raise TypeError("argmax: give dim= or axis=, not both")
            dim = axis
        index = self.data.argmax(axis=dim)
        if keepdim and dim is not None:
            index = array_module(index).expand_dims(index, dim)
        return Tensor.from_array(index)


def target_dtype(op: str, target) -> np.dtype:
    """The dtype a ``.to(target)`` names, or an error that lists what ``target`` may be."""
    try:
        return np.dtype(target)
    except TypeError:
        raise ValueError(
            f"{op}: expected a device ('cpu' or 'cuda') or a dtype (np.float32, 'float64'), "
            f"got {target!r}"
        ) from None


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """Make a tensor from array-like data (float data becomes float32 unless ``dtype`` says)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def as_tuple(args) -> tuple:
    """``f(2, 3)`` and ``f((2, 3))`` both mean ``(2, 3)``: the arguments of ``zeros``, ``ones``,
    ``randn``, ``reshape`` and ``transpose``, as one tuple."""
    if len(args) == 1 and isinstance(args[0], (tuple, list)):
        return tuple(args[0])
    return tuple(args)


def zeros(*shape, dtype=np.float32, requires_grad: bool = False) -> Tensor:
    xp = backend.current().xp
    return Tensor(xp.zeros(as_tuple(shape), dtype=dtype), requires_grad=requires_grad)


def ones(*shape, dtype=np.float32, requires_grad: bool = False) -> Tensor:
    xp = backend.current().xp
    return Tensor(xp.ones(as_tuple(shape), dtype=dtype), requires_grad=requires_grad)


def randn(*shape, dtype=np.float32, requires_grad: bool = False, seed=None) -> Tensor:
    """Standard normal samples (from NumPy's generator with ``seed``), on the current backend."""
    array = np.random.default_rng(seed).standard_normal(as_tuple(shape)).astype(dtype)
    return Tensor(backend.current().xp.asarray(array), requires_grad=requires_grad)

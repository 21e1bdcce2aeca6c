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
"""

from __future__ import annotations

import numpy as np

from minisegnet import autograd, backend
from minisegnet.arrays import array_module, device_of, to_device, to_host

__all__ = ["Tensor", "tensor", "array_module", "zeros", "ones", "randn", "cat", "stack"]

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


class Tensor:
    """An n-dimensional array that can record the operations applied to it.

    Attributes: ``data`` (the array), ``requires_grad``, ``grad`` (an array, filled by
    ``backward`` on leaves), ``creator`` (the Function that produced it, None for leaves).
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
    def _wrap(cls, array, requires_grad: bool = False) -> Tensor:
        """Wrap an array produced by an op without converting it."""
        t = cls.__new__(cls)
        t.data = array
        t.grad = None
        t.creator = None
        t.output_index = 0
        t._retains_grad = False
        t.requires_grad = requires_grad
        return t

    # ----------------------------------------------------------------- basic properties
    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def xp(self):
        """The array module of the data: ``numpy`` or ``cupy``."""
        return array_module(self.data)

    @property
    def device(self) -> str:
        """``"cuda"`` when the data is in GPU memory, ``"cpu"`` otherwise."""
        return device_of(self.data)

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

    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (copied from the GPU if needed); no graph."""
        return to_host(self.data)

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
        return Tensor._wrap(self.data)

    def to(self, target) -> Tensor:
        """Convert: ``t.to("float64")``, ``t.to(np.float32)``, ``t.to("cuda")``, ``t.to("cpu")``.

        Both conversions are differentiable (the gradient converts or moves back). A move is the
        one op that may take a tensor off the backend's device.
        """
        if isinstance(target, str) and target in ("cpu", "cuda"):
            from minisegnet.ops.device import ToDevice

            return ToDevice.apply(self, device=target)
        dtype = _target_dtype("to", target)
        if dtype == self.dtype:
            return self
        from minisegnet.ops.elementwise import Cast

        return Cast.apply(self, dtype=dtype)

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self) -> Tensor:
        return self.to("cuda")

    def float(self) -> Tensor:
        return self.to(np.float32)

    def double(self) -> Tensor:
        return self.to(np.float64)

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

    # ----------------------------------------------------------------- arithmetic
    def __add__(self, other):
        from minisegnet.ops.elementwise import Add

        return Add.apply(self, _operand(other, self))

    def __radd__(self, other):
        from minisegnet.ops.elementwise import Add

        return Add.apply(_operand(other, self), self)

    def __sub__(self, other):
        from minisegnet.ops.elementwise import Sub

        return Sub.apply(self, _operand(other, self))

    def __rsub__(self, other):
        from minisegnet.ops.elementwise import Sub

        return Sub.apply(_operand(other, self), self)

    def __mul__(self, other):
        from minisegnet.ops.elementwise import Mul

        return Mul.apply(self, _operand(other, self))

    def __rmul__(self, other):
        from minisegnet.ops.elementwise import Mul

        return Mul.apply(_operand(other, self), self)

    def __truediv__(self, other):
        from minisegnet.ops.elementwise import Div

        return Div.apply(self, _operand(other, self))

    def __rtruediv__(self, other):
        from minisegnet.ops.elementwise import Div

        return Div.apply(_operand(other, self), self)

    def __neg__(self):
        from minisegnet.ops.elementwise import Neg

        return Neg.apply(self)

    def __pow__(self, exponent):
        from minisegnet.ops.elementwise import Pow, PowScalar

        if isinstance(exponent, (int, float)):
            return PowScalar.apply(self, exponent=float(exponent))
        return Pow.apply(self, _operand(exponent, self))

    def __rpow__(self, base):
        from minisegnet.ops.elementwise import Pow

        return Pow.apply(_operand(base, self), self)

    def __matmul__(self, other):
        from minisegnet.ops.matmul import MatMul

        return MatMul.apply(self, _operand(other, self))

    def __rmatmul__(self, other):
        from minisegnet.ops.matmul import MatMul

        return MatMul.apply(_operand(other, self), self)

    # Comparisons give plain boolean tensors (no gradient).
    def _compare(self, other, op):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor._wrap(op(self.data, other))

    def __lt__(self, other):
        return self._compare(other, lambda a, b: a < b)

    def __le__(self, other):
        return self._compare(other, lambda a, b: a <= b)

    def __gt__(self, other):
        return self._compare(other, lambda a, b: a > b)

    def __ge__(self, other):
        return self._compare(other, lambda a, b: a >= b)

    # ----------------------------------------------------------------- unary functions
    def exp(self):
        from minisegnet.ops.elementwise import Exp

        return Exp.apply(self)

    def log(self):
        from minisegnet.ops.elementwise import Log

        return Log.apply(self)

    def sqrt(self):
        from minisegnet.ops.elementwise import Sqrt

        return Sqrt.apply(self)

    def relu(self):
        from minisegnet.ops.elementwise import ReLU

        return ReLU.apply(self)

    def sigmoid(self):
        from minisegnet.ops.elementwise import Sigmoid

        return Sigmoid.apply(self)

    def tanh(self):
        from minisegnet.ops.elementwise import Tanh

        return Tanh.apply(self)

    def abs(self):
        from minisegnet.ops.elementwise import Abs

        return Abs.apply(self)

    # ----------------------------------------------------------------- reductions
    def sum(self, axis=None, keepdims: bool = False):
        from minisegnet.ops.reduction import Sum

        return Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims: bool = False):
        from minisegnet.ops.reduction import Mean

        return Mean.apply(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims: bool = False):
        from minisegnet.ops.reduction import Max

        return Max.apply(self, axis=axis, keepdims=keepdims)

    def argmax(self, axis=None):
        """Index of the maximum (no gradient); returns a plain integer tensor."""
        return Tensor._wrap(self.data.argmax(axis=axis))

    # ----------------------------------------------------------------- shape
    def reshape(self, *shape):
        from minisegnet.ops.shape import Reshape

        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return Reshape.apply(self, shape=shape)

    def view(self, *shape):
        return self.reshape(*shape)

    def flatten(self, start_dim: int = 0):
        start = start_dim % self.ndim if self.ndim else 0
        return self.reshape(self.shape[:start] + (-1,))

    def transpose(self, *axes):
        """``t.transpose()`` reverses the axes; ``t.transpose(0, 2, 1)`` permutes them."""
        from minisegnet.ops.shape import Transpose

        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return Transpose.apply(self, axes=axes or None)

    def permute(self, *axes):
        return self.transpose(*axes)

    @property
    def T(self):
        return self.transpose()

    def __getitem__(self, index):
        from minisegnet.ops.shape import GetItem

        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        return GetItem.apply(self, index=index)


def _target_dtype(op: str, target) -> np.dtype:
    """The dtype a ``.to(target)`` names, or an error that lists what ``target`` may be."""
    try:
        return np.dtype(target)
    except TypeError:
        raise ValueError(
            f"{op}: expected a device ('cpu' or 'cuda') or a dtype (np.float32, 'float64'), "
            f"got {target!r}"
        ) from None


def _operand(value, like: Tensor) -> Tensor:
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
        return Tensor._wrap(like.xp.asarray(value, dtype=like.dtype))
    array = like.xp.asarray(value)
    if array.dtype.kind == "f" and array.dtype != like.dtype:
        raise TypeError(
            f"operands have different dtypes ({like.dtype} and {array.dtype}); "
            "convert one with .astype() or .to(dtype) first"
        )
    return Tensor._wrap(array.astype(like.dtype) if array.dtype.kind != "f" else array)


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """Make a tensor from array-like data (float data becomes float32 unless ``dtype`` says)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


def _xp():
    from minisegnet import backend

    return backend.current().xp


def zeros(*shape, dtype=np.float32, requires_grad: bool = False) -> Tensor:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return Tensor(_xp().zeros(shape, dtype=dtype), requires_grad=requires_grad)


def ones(*shape, dtype=np.float32, requires_grad: bool = False) -> Tensor:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return Tensor(_xp().ones(shape, dtype=dtype), requires_grad=requires_grad)


def randn(*shape, dtype=np.float32, requires_grad: bool = False, seed=None) -> Tensor:
    """Standard normal samples (from NumPy's generator with ``seed``), on the current backend."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    array = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return Tensor(_xp().asarray(array), requires_grad=requires_grad)


def cat(tensors, axis: int = 0) -> Tensor:
    """Concatenate tensors along ``axis`` (PyTorch's ``torch.cat``; ``dim`` is ``axis`` here)."""
    from minisegnet.ops.shape import Concatenate

    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: tensors must be a non-empty sequence")
    return Concatenate.apply(*tensors, axis=axis)


def stack(tensors, axis: int = 0) -> Tensor:
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: tensors must be a non-empty sequence")
    expanded = [t.reshape(t.shape[:axis] + (1,) + t.shape[axis:]) for t in tensors]
    return cat(expanded, axis=axis)

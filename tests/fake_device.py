"""A stand-in GPU for machines without one: the ``cuda`` backend's code paths, checked for where
their arrays live.

``simulated_gpu()`` replaces the ``cuda`` backend's array module (CuPy) with ``fake_cupy``, whose
arrays (:class:`FakeDeviceArray`) keep their data in a private NumPy array and behave as CuPy's
do where it matters for the device rule:

* converting one to NumPy implicitly (``np.asarray(a)``) raises, as CuPy does; ``.get()`` copies;
* mixing one with a NumPy array in an operation raises (CuPy: "Unsupported type ndarray");
* ``fake_cupy.asarray(host)`` is the one explicit way onto the "device".

and it replaces the GPU launcher (``cuda/gpu.py``) with one that refuses anything but stand-in
arrays, records every launch, and runs the kernel in the emulator on the private data. Everything
between (``backend``, ``arrays``, ``launch.check_args``, every op and the training job) is the
real code, so a test that trains, evaluates and predicts under it shows that no kernel on the
``cuda`` path is handed a host array and no host array is mixed into device data.
"""

from __future__ import annotations

import contextlib
import numbers
import types

import numpy as np

_IMPLICIT = (
    "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a "
    "NumPy array explicitly."
)


def _unwrap(value, strict: bool = True):
    """The NumPy data behind stand-in arrays (recursively through lists and tuples). A host
    NumPy array is an error when ``strict`` (CuPy refuses them as operands)."""
    if isinstance(value, FakeDeviceArray):
        return value._a
    if isinstance(value, np.ndarray):
        if strict:
            raise TypeError(f"Unsupported type {type(value)} (a host array mixed with device data)")
        return value
    if isinstance(value, (list, tuple)):
        return type(value)(_unwrap(v, strict) for v in value)
    return value


def _wrap(value):
    """NumPy results as stand-in arrays (scalars from reductions become 0-d arrays, as CuPy's)."""
    if isinstance(value, np.ndarray):
        return FakeDeviceArray(value)
    if isinstance(value, np.generic):
        return FakeDeviceArray(np.asarray(value))
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


def _operand_ok(value) -> bool:
    return isinstance(value, (FakeDeviceArray, numbers.Number, np.generic, np.ndarray))


class FakeDeviceArray:
    """An array "in device memory": see the module docstring."""

    __array_priority__ = 100

    def __init__(self, data: np.ndarray):
        self._a = data

    # what NumPy may not do with it implicitly
    def __array__(self, dtype=None, copy=None):
        raise TypeError(_IMPLICIT)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if not all(_operand_ok(x) for x in inputs):
            return NotImplemented
        out = kwargs.pop("out", None)
        kwargs = _unwrap_kwargs(kwargs)
        if out is not None:
            kwargs["out"] = tuple(_unwrap(o) for o in out)
        result = getattr(ufunc, method)(*_unwrap(inputs), **kwargs)
        if out is not None:
            return out[0] if len(out) == 1 else out
        return _wrap(result)

    def __array_function__(self, func, types_, args, kwargs):
        return _wrap(func(*_unwrap(args), **_unwrap_kwargs(kwargs)))

    # explicit transfer
    def get(self) -> np.ndarray:
        return self._a.copy()

    # attributes that are not arrays
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    T = property(lambda self: FakeDeviceArray(self._a.T))

    def __getattr__(self, name):
        if name.startswith("__") or name in ("ctypes", "data", "base"):
            raise AttributeError(name)
        attribute = getattr(self._a, name)
        if not callable(attribute):
            return _wrap(attribute)

        def method(*args, **kwargs):
            return _wrap(attribute(*_unwrap(args), **_unwrap_kwargs(kwargs)))

        return method

    def __getitem__(self, index):
        return _wrap(self._a[_unwrap(index, strict=False)])

    def __setitem__(self, index, value):
        self._a[_unwrap(index, strict=False)] = _unwrap(value)

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (FakeDeviceArray(np.asarray(row)) for row in self._a)

    def __bool__(self):
        return bool(self._a)

    def __float__(self):
        return float(self._a)

    def __int__(self):
        return int(self._a)

    def __repr__(self):
        return f"fake_device_array({self._a!r})"

    def __format__(self, spec):
        return format(self._a.item() if self._a.size == 1 else self._a, spec)

    __hash__ = None


def _unwrap_kwargs(kwargs):
    return {k: _unwrap(v) for k, v in kwargs.items()}


def _binary(ufunc):
    def forward(self, other):
        return ufunc(self, other) if _operand_ok(other) else NotImplemented

    def reflected(self, other):
        return ufunc(other, self) if _operand_ok(other) else NotImplemented

    def inplace(self, other):
        return ufunc(self, other, out=(self,)) if _operand_ok(other) else NotImplemented

    return forward, reflected, inplace


for _name, _ufunc in {
    "add": np.add, "sub": np.subtract, "mul": np.multiply, "truediv": np.true_divide,
    "floordiv": np.floor_divide, "mod": np.remainder, "pow": np.power, "matmul": np.matmul,
    "and": np.bitwise_and, "or": np.bitwise_or, "xor": np.bitwise_xor,
    "lshift": np.left_shift, "rshift": np.right_shift,
}.items():  # fmt: skip
    _f, _r, _i = _binary(_ufunc)
    setattr(FakeDeviceArray, f"__{_name}__", _f)
    setattr(FakeDeviceArray, f"__r{_name}__", _r)
    if _name != "matmul":
        setattr(FakeDeviceArray, f"__i{_name}__", _i)
for _name, _ufunc in {
    "lt": np.less, "le": np.less_equal, "gt": np.greater, "ge": np.greater_equal,
    "eq": np.equal, "ne": np.not_equal,
}.items():  # fmt: skip
    setattr(FakeDeviceArray, f"__{_name}__", _binary(_ufunc)[0])
for _name, _ufunc in {
    "neg": np.negative,
    "pos": np.positive,
    "abs": np.absolute,
    "invert": np.invert,
}.items():
    setattr(FakeDeviceArray, f"__{_name}__", lambda self, _u=_ufunc: _u(self))


class _DeviceFunction:
    """A NumPy function as the stand-in module's: device arrays in (never host arrays), device
    arrays out. Attribute access passes through (``fake_cupy.add.at``)."""

    def __init__(self, fn):
        self._fn = fn

    def __call__(self, *args, **kwargs):
        return _wrap(self._fn(*_unwrap(args), **_unwrap_kwargs(kwargs)))

    def __getattr__(self, name):
        return _DeviceFunction(getattr(self._fn, name))


def _asarray(value, dtype=None, order=None):
    if isinstance(value, FakeDeviceArray):
        if dtype is None or np.dtype(dtype) == value.dtype:
            return value
        return FakeDeviceArray(value._a.astype(dtype))
    return FakeDeviceArray(np.array(value, dtype=dtype, order=order or "C", copy=True))


def _array(value, dtype=None, copy=True, order=None):
    if isinstance(value, FakeDeviceArray):
        return FakeDeviceArray(np.array(value._a, dtype=dtype, copy=True, order=order or "K"))
    return FakeDeviceArray(np.array(value, dtype=dtype, order=order or "C", copy=True))


def _asnumpy(value):
    return value.get() if isinstance(value, FakeDeviceArray) else np.asarray(value)


class _FakeCupy(types.ModuleType):
    """``fake_cupy``: NumPy's functions on stand-in arrays, plus CuPy's explicit transfers."""

    ndarray = FakeDeviceArray
    asarray = staticmethod(_asarray)
    array = staticmethod(_array)
    asnumpy = staticmethod(_asnumpy)

    @staticmethod
    def get_array_module(*arrays):
        return fake_cupy if any(isinstance(a, FakeDeviceArray) for a in arrays) else np

    def __getattr__(self, name):
        attribute = getattr(np, name)
        if isinstance(attribute, (type, types.ModuleType)) or not callable(attribute):
            return attribute  # dtypes, constants (and submodules, unused by the library)
        return _DeviceFunction(attribute)


fake_cupy = _FakeCupy("fake_cupy")


class LaunchLog:
    """Every kernel launched while the stand-in GPU was in force: ``(kernel, devices)`` with the
    device ("cuda" or "cpu") of each pointer argument as the launcher received it."""

    def __init__(self):
        self.launches: list[tuple[str, tuple[str, ...]]] = []

    def __len__(self):
        return len(self.launches)

    def kernels(self) -> set[str]:
        return {name for name, _ in self.launches}


@contextlib.contextmanager
def simulated_gpu():
    """Make ``cuda`` usable with the stand-in array module and launcher (see the module
    docstring); yields the :class:`LaunchLog`. Restores everything on exit."""
    from minisegnet import backend
    from minisegnet.cuda import emulator, gpu

    reason = emulator.unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"the stand-in GPU runs kernels in cuda-emu, unavailable: {reason}")
    log = LaunchLog()

    def launch(src, inst, grid, block, args, shared_mem=0):
        devices = []
        for param, value in zip(inst.params, args):
            if param.pointer:
                if not isinstance(value, FakeDeviceArray):
                    raise AssertionError(
                        f"{inst.expression}: '{param.name}' reached the GPU launcher as "
                        f"{type(value).__name__}, not device memory"
                    )
                devices.append("cuda")
        log.launches.append((inst.expression, tuple(devices)))
        emulator.launch(src, inst, grid, block, tuple(_unwrap(args)), shared_mem)

    real_backend, real_launch = backend._BACKENDS["cuda"], gpu.launch
    backend._BACKENDS["cuda"] = backend.Backend(
        "cuda",
        "stand-in GPU (tests): fake_cupy arrays, kernels in the emulator",
        lambda: fake_cupy,
        lambda: None,
        lambda: (FakeDeviceArray,),
    )
    gpu.launch = launch
    try:
        yield log
    finally:
        backend._BACKENDS["cuda"] = real_backend
        gpu.launch = real_launch

"""Where arrays live: the one device rule, and the helpers that apply it.

The rule. **The active backend decides where arrays live.** The ``cuda`` backend keeps them in
GPU memory (CuPy arrays); ``numpy``, ``numba`` and ``cuda-emu`` keep them in host memory (NumPy
arrays; ``cuda-emu`` runs the CUDA C kernels on the CPU, on host arrays). From that:

* new data is made where the backend says: ``ms.tensor(x)`` under ``cuda`` copies ``x`` to the
  GPU (as ``torch.tensor(x, device="cuda")`` would), ``zeros/ones/randn`` allocate there;
* ``Tensor.to("cpu" | "cuda")`` and ``Module.to(...)`` move explicitly; ``.numpy()`` comes back;
* an op runs only on tensors that live where the backend computes: inputs on two devices, or on
  another device than the backend's, are a :class:`DeviceError` naming both and saying how to
  move them; never a silent copy, never a silent switch to another backend;
* what an op takes besides its tensors (class targets, pooling switches, class weights) may be
  given as host or device arrays (or lists): it is moved to the backend's device, once, because
  it carries no gradient and the user cannot mean it to stay elsewhere
  (:func:`like_backend`). A *Tensor* in that role (any :class:`ArrayHolder`) is held to the
  rule above;
* a kernel launch (``cuda/launch.py``) refuses host arrays under ``cuda`` and device arrays on
  every other backend, with the same advice.

Everything here works without CuPy installed: an array can only be a CuPy array once CuPy has
been imported, so the host backends never import it.

This module is the bottom floor: it imports only ``backend`` (``tests/test_architecture.py``).
:class:`ArrayHolder` is how it knows a tensor without importing ``tensor.py``.
"""

from __future__ import annotations

import numpy as np

from minisegnet import backend

__all__ = [
    "DeviceError",
    "DEVICES",
    "ArrayHolder",
    "is_device_array",
    "device_of",
    "array_module",
    "to_host",
    "to_device",
    "like_backend",
    "check_on_backend",
]

DEVICES = ("cpu", "cuda")


class DeviceError(ValueError):
    """An array is on another device than the operation (or the backend) needs."""


def is_device_array(array) -> bool:
    """True for an array in GPU memory (a CuPy array), False for NumPy arrays and scalars."""
    if type(array) is np.ndarray:  # the common case, answered without a lookup
        return False
    types = backend.get("cuda").array_types()
    return bool(types) and isinstance(array, types)


def device_of(array) -> str:
    """``"cuda"`` for a GPU array, ``"cpu"`` for anything in host memory."""
    return "cuda" if is_device_array(array) else "cpu"


def array_module(array):
    """``numpy`` or ``cupy``: the module whose functions work on ``array`` where it lives."""
    if is_device_array(array):
        return backend.get("cuda").xp
    return np


def to_host(array) -> np.ndarray:
    """The array in host memory: a GPU array is copied back, a host array returned as it is."""
    if is_device_array(array):
        return array.get()
    return np.asarray(array)


def _check_device_name(device: str, what: str) -> None:
    if device not in DEVICES:
        raise ValueError(f"{what}: expected one of {list(DEVICES)}, got {device!r}")


def to_device(array, device: str):
    """``array`` moved to ``device`` (``"cpu"`` or ``"cuda"``); unchanged when already there.

    Moving to ``"cuda"`` needs a usable GPU: otherwise :class:`backend.BackendUnavailable` says
    why (no CuPy, no device).
    """
    _check_device_name(device, "device")
    if device == "cpu":
        return to_host(array)
    if is_device_array(array):
        return array
    cuda = backend.get("cuda")
    reason = cuda.unavailable_reason()
    if reason is not None:
        raise backend.BackendUnavailable(f"to('cuda'): {reason}")
    return cuda.xp.asarray(array)


class ArrayHolder:
    """A value that holds one array in ``.data`` (a :class:`~minisegnet.tensor.Tensor`, max
    pooling's switches): its shape, dtype and device are those of the array."""

    data: object

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

    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (copied from the GPU if needed); no graph."""
        return to_host(self.data)


def like_backend(value, op: str, name: str, dtype=None):
    """A non-differentiable argument (target, switches, weights) as an array on the backend's
    device: lists and host or device arrays are moved there (once); a Tensor (any
    :class:`ArrayHolder`) must already be there (:class:`DeviceError` otherwise). ``dtype``
    converts when given."""
    device = backend.current().device
    if isinstance(value, ArrayHolder):
        where = device_of(value.data)
        if where != device:
            raise DeviceError(
                f"{op}: {name} is a tensor on {where}, but the backend "
                f"{backend.current().name!r} computes on {device}; move it with "
                f".to({device!r})"
            )
        value = value.data
    elif device_of(value) != device:
        value = to_device(value, device)
    xp = backend.current().xp
    return xp.asarray(value) if dtype is None else xp.asarray(value, dtype=dtype)


def check_on_backend(op: str, arrays, names=None) -> None:
    """Raise :class:`DeviceError` unless every array of ``arrays`` lives on the active backend's
    device; the message names the arrays (``names``, default ``input 0``, ``input 1``, ...) and
    where each one is."""
    current = backend.current()
    wanted = current.device
    devices = [device_of(a) for a in arrays]
    if all(d == wanted for d in devices):
        return
    names = names or [f"input {i}" for i in range(len(devices))]
    listing = ", ".join(f"{name} on {d}" for name, d in zip(names, devices))
    if len(set(devices)) > 1:
        raise DeviceError(
            f"{op}: inputs are on two devices ({listing}); move them to one with "
            f".to({wanted!r}) (the backend {current.name!r} computes on {wanted})"
        )
    hint = (
        "ms.tensor(...) under this backend puts new data there"
        if wanted == "cuda"
        else "or switch to the 'cuda' backend to compute on the GPU"
    )
    raise DeviceError(
        f"{op}: the backend {current.name!r} computes on {wanted}, but the inputs are on "
        f"{devices[0]} ({listing}); move them with .to({wanted!r}) ({hint})"
    )

"""Backends: which implementation of each op runs, and which array module holds the data.

A backend is two things: an array module (``numpy`` or ``cupy``) and a choice of kernels.

    numpy     the reference implementations: slow, obvious, the definition of each op
    numba     Numba CPU kernels (``@njit(parallel=True, cache=True)``); the CPU default
    cuda      CuPy arrays on a GPU; CUDA C kernels launched through CuPy
    cuda-emu  the very same CUDA C kernels compiled with g++ and run on the CPU (for tests
              and for stepping through a kernel in a debugger on a laptop)

Use it as a call or as a context manager::

    ms.backend.use("numpy")            # from now on
    with ms.backend.use("cuda-emu"):   # only inside the block
        ...
    ms.backend.current().name

Each op file chooses its implementation with :func:`pick`, passing one function per backend by
keyword, so a reader (and grep) sees every implementation of an op in one place.

Where data lives follows from the backend, by one rule (``minisegnet/arrays.py`` applies it):
``cuda`` keeps arrays on the GPU (CuPy), every other backend in host memory (NumPy). New arrays
are made where the active backend says; an op whose inputs are somewhere else is an error that
says how to move them, never a silent copy or a silent switch to another backend.
"""

from __future__ import annotations

import importlib
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Backend", "names", "get", "use", "current", "pick", "lazy", "BackendUnavailable"]


class BackendUnavailable(RuntimeError):
    """Raised when a backend exists but cannot be used on this machine (and says why)."""


@dataclass
class Backend:
    """One backend: its name, how to get its array module, and why it may be unavailable."""

    name: str
    description: str
    _xp_loader: Callable[[], object] = field(repr=False)
    _check: Callable[[], str | None] = field(repr=False, default=lambda: None)
    # The array types this backend's data has, for telling host from device arrays without
    # importing CuPy on a machine that never used it (empty: plain NumPy arrays).
    _array_types: Callable[[], tuple] = field(repr=False, default=lambda: ())

    def unavailable_reason(self) -> str | None:
        """None when usable here, otherwise a sentence saying why not."""
        return self._check()

    @property
    def available(self) -> bool:
        return self.unavailable_reason() is None

    @property
    def xp(self):
        """The array module tensors live in on this backend (``numpy`` or ``cupy``)."""
        return self._xp_loader()

    @property
    def is_gpu(self) -> bool:
        return self.name == "cuda"

    @property
    def device(self) -> str:
        """Where this backend keeps its arrays: ``"cuda"`` (GPU memory) or ``"cpu"``."""
        return "cuda" if self.is_gpu else "cpu"

    def array_types(self) -> tuple:
        """The array classes of this backend's device memory (``(cupy.ndarray,)`` on ``cuda``
        once CuPy is imported; ``()`` for the host backends)."""
        return self._array_types()


def _numba_reason() -> str | None:
    try:
        importlib.import_module("numba")
    except ImportError as error:  # pragma: no cover - numba is a hard dependency
        return f"the 'numba' package cannot be imported ({error}); pip install numba"
    return None


def _cupy_reason() -> str | None:
    try:
        cupy = importlib.import_module("cupy")
    except ImportError as error:
        return (
            f"CuPy is not installed ({error}); install the GPU extra: pip install 'minisegnet[gpu]'"
        )
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as error:  # CUDARuntimeError when there is no driver or device
        return f"CuPy found no usable CUDA device ({type(error).__name__}: {error})"
    if count == 0:
        return "CuPy found no CUDA device on this machine"
    return None


def _emu_reason() -> str | None:
    from minisegnet.cuda import emulator

    return emulator.unavailable_reason()


def _cupy():
    return importlib.import_module("cupy")


def _cupy_array_types() -> tuple:
    # An array can only be a CuPy array if CuPy has been imported: no import here, so the CPU
    # backends never pay for (or need) CuPy.
    cupy = sys.modules.get("cupy")
    return (cupy.ndarray,) if cupy is not None else ()


_BACKENDS: dict[str, Backend] = {
    "numpy": Backend("numpy", "NumPy reference implementations (the definitions)", lambda: np),
    "numba": Backend("numba", "Numba CPU kernels", lambda: np, _numba_reason),
    "cuda": Backend(
        "cuda", "CUDA C kernels on a GPU through CuPy", _cupy, _cupy_reason, _cupy_array_types
    ),
    "cuda-emu": Backend(
        "cuda-emu",
        "the CUDA C kernels compiled with g++ and run on the CPU",
        lambda: np,
        _emu_reason,
    ),
}

DEFAULT = "numba"

_state = threading.local()


def names() -> list[str]:
    """All backend names, usable or not."""
    return list(_BACKENDS)


def get(name: str) -> Backend:
    """The backend called ``name``; a clear error listing the valid names otherwise."""
    if not isinstance(name, str) or name not in _BACKENDS:
        raise ValueError(f"backend: expected one of {names()}, got {name!r}")
    return _BACKENDS[name]


def current() -> Backend:
    """The backend in force in this thread (``numba`` unless changed)."""
    return getattr(_state, "backend", None) or _BACKENDS[DEFAULT]


class use:
    """Switch backend: ``use("numpy")`` switches now; ``with use("numpy"):`` switches back after.

    Raises :class:`BackendUnavailable` with the reason when the backend cannot run here.
    """

    def __init__(self, name: str):
        backend = get(name)
        reason = backend.unavailable_reason()
        if reason is not None:
            raise BackendUnavailable(f"backend {name!r} cannot be used here: {reason}")
        self._previous = getattr(_state, "backend", None)
        _state.backend = backend

    def __enter__(self) -> Backend:
        return current()

    def __exit__(self, *exc_info) -> None:
        _state.backend = self._previous


def pick(op: str, **implementations: Callable) -> Callable:
    """Choose the implementation of ``op`` for the current backend.

    Keywords are backend names with ``-`` written as ``_`` (``cuda_emu``). ``cuda-emu`` falls back
    to the ``cuda`` implementation (same Python launch code, another launcher), and ``numba``
    falls back to ``numpy`` for ops whose NumPy form is already as fast as a kernel would be.
    """
    name = current().name
    key = name.replace("-", "_")
    if key in implementations:
        return implementations[key]
    if name == "cuda-emu" and "cuda" in implementations:
        return implementations["cuda"]
    if name == "numba" and "numpy" in implementations:
        return implementations["numpy"]
    raise NotImplementedError(
        f"{op}: no implementation for backend {name!r} (has: {sorted(implementations)})"
    )


def lazy(module: str, name: str) -> Callable:
    """``lazy("minisegnet.cuda.pooling", "max_pool2d_forward")``: a function that imports
    ``module`` only when first called, so the CPU backends never import CuPy or compile CUDA.
    """

    def call(*args, **kwargs):
        return getattr(importlib.import_module(module), name)(*args, **kwargs)

    call.__name__ = call.__qualname__ = f"{module}.{name}"
    return call

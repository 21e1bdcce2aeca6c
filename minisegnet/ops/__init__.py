"""One file per op family. Each file holds the definition (a NumPy reference), the fast kernels
(Numba for the CPU, CUDA C for the GPU) and the ``Function`` that dispatches between them."""

from __future__ import annotations

from collections.abc import Callable

from minisegnet import backend


def kernel_table(cuda_module: str, table: dict[str, tuple[Callable, Callable]]):
    """``impl(name)``: kernel ``name`` for the current backend (see ``backend.pick``).

    ``table[name]`` is (the NumPy reference, the Numba kernel), so a reader (and grep) sees
    every host implementation in one place; the CUDA wrapper has the same ``name`` in
    ``cuda_module``, imported on first use. Tests may patch an entry of ``table``."""

    def impl(name: str) -> Callable:
        numpy, numba = table[name]
        return backend.pick(name, numpy=numpy, numba=numba, cuda=backend.lazy(cuda_module, name))

    return impl

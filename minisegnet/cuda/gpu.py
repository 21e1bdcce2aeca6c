"""The ``cuda`` backend's launcher: CuPy + NVRTC on a real GPU.

Each ``.cu`` file becomes one ``cupy.RawModule``, compiled by NVRTC the first time one of its
kernels is launched in a process (CuPy also keeps the binary in its on-disk cache, keyed by the
source text, so later processes skip NVRTC). The source handed to NVRTC is the file with its
local ``#include "common.cuh"`` inlined (``source.inline_includes``), so a header change is a
source change for that cache too. Every template instantiation is requested up front by name
expression (``im2col<float>``, ``im2col<double>``, ...), which is how CuPy compiles templated
``__global__`` functions.
"""

from __future__ import annotations

from minisegnet.cuda import source as _source

__all__ = ["NVRTC_OPTIONS", "module", "launch"]

NVRTC_OPTIONS = ("-std=c++17",)

_modules: dict[str, object] = {}


def module(src: _source.SourceFile):
    """The ``cupy.RawModule`` of ``src`` (compiled once per process and source text)."""
    mod = _modules.get(src.digest)
    if mod is None:
        import cupy

        mod = cupy.RawModule(
            code=src.text,
            options=NVRTC_OPTIONS,
            name_expressions=sorted(src.instances),
        )
        _modules[src.digest] = mod
    return mod


_functions: dict[tuple[str, str], object] = {}


def launch(src, inst, grid, block, args, shared_mem: int = 0) -> None:
    """``kernel<<<grid, block, shared_mem>>>(args)`` on the current CuPy device and stream.
    The kernel handle is kept per (device, source text, instance): one dict lookup a launch."""
    import cupy

    key = (cupy.cuda.runtime.getDevice(), src.digest, inst.expression)
    kernel = _functions.get(key)
    if kernel is None:
        kernel = _functions[key] = module(src).get_function(inst.expression)
    kernel(grid, block, args, shared_mem=shared_mem)

"""The dense CRF's permutohedral-lattice filter as CUDA kernels (``kernels/crf.cu``), for the
``cuda`` and ``cuda-emu`` backends.

Kernels launched (T = float, double), each one thread per output element, no atomics:
    lattice_splat<T>   values (N, C) -> lattice (M1, C)     a gather over the CSR inverse
    lattice_blur<T>    lattice -> lattice, one axis          d+1 launches, forward or reversed
    lattice_slice<T>   lattice -> out (N, C)

    CudaLattice(features).filter(values, transpose=False, scale=None) -> (N, C)

equals ``ops.crf_lattice.Lattice(features).filter`` (tested under ``cuda-emu``). The lattice is
built on the host by the lattice engine (``ops/crf_lattice.py``: hashing the simplex vertices),
its index arrays are copied to the backend's device once, and each filter then runs entirely
there. ``ops/crf.py`` reaches this class through its ``FILTERS`` table, so this file imports
only the engine, never the op module.
"""

from __future__ import annotations

import numpy as np

from minisegnet.cuda.launch import check_array, ctype, grid_1d, int32, launch, xp
from minisegnet.ops.crf_lattice import Lattice, splat_gather

__all__ = ["CudaLattice"]

SOURCE = "crf.cu"


class CudaLattice:
    """A host-built lattice whose splat/blur/slice run as CUDA kernels on the backend's device."""

    def __init__(self, features):
        host = Lattice(features)
        m = xp()
        self.n, self.d, self.m1 = host.n, host.d, host.m + 1
        self.alpha = host.alpha
        start, point, wgt = splat_gather(host.offset, host.weight, host.m)
        self.start = m.asarray(start)
        self.point = m.asarray(point)
        self.wgt = m.asarray(wgt)
        self.offset = m.asarray(np.ascontiguousarray(host.offset, np.int32))
        self.weight = m.asarray(np.ascontiguousarray(host.weight, np.float32))
        self.neighbours = [m.asarray(np.ascontiguousarray(nb, np.int32)) for nb in host.neighbours]

    def filter(self, values, transpose: bool = False, scale=None):
        op = "CudaLattice.filter"
        check_array(op, "values", values, ndim=2)
        if values.shape[0] != self.n:
            raise ValueError(f"{op}: values must have shape ({self.n}, C), got {values.shape}")
        m = xp()
        t = ctype(values.dtype)
        c = values.shape[1]
        if scale is None:
            scale = m.ones(self.n, values.dtype)
        scale = m.ascontiguousarray(scale, values.dtype)
        a = m.empty((self.m1, c), values.dtype)
        b = m.empty_like(a)
        grid, block = grid_1d(self.m1 * c)
        launch(SOURCE, f"lattice_splat<{t}>", grid, block,
               (self.start, self.point, self.wgt, values, scale, a, *int32(self.m1, c)))  # fmt: skip
        order = range(self.d, -1, -1) if transpose else range(self.d + 1)
        for j in order:
            launch(SOURCE, f"lattice_blur<{t}>", grid, block,
                   (self.neighbours[j], a, b, *int32(self.m1, c)))  # fmt: skip
            a, b = b, a
        out = m.empty((self.n, c), values.dtype)
        grid, block = grid_1d(self.n * c)
        alpha = values.dtype.type(self.alpha)
        launch(SOURCE, f"lattice_slice<{t}>", grid, block,
               (self.offset, self.weight, a, alpha, scale, out,
                *int32(self.n, self.d + 1, c)))  # fmt: skip
        return out

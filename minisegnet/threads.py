"""How many threads the two CPU pools get: Numba's kernels and OpenBLAS's matrix products.

The rule: **each pool gets the cores**. The two take turns -- a Numba kernel, then a matrix
product, then a kernel -- and never run at once in this library's code, so both can have every
core. ``import minisegnet`` makes Numba's idle OpenMP workers sleep (OMP_WAIT_POLICY=PASSIVE,
``tune_threads``) rather than spin while OpenBLAS works; OpenBLAS's idle workers yield the CPU
while they wait for the next product. Measured on the 2-core machine (SegNet-Basic small, one
training step of 8 images, median of 8 runs of 3 steps, the settings alternated in one process,
ms, BLAS on 1 thread against 2, Numba on 2):

    quiet machine        40x40  29.7 -> 21.1    64x64  65.7 -> 39.5    128x128  219.8 -> 137.1
    one busy process     40x40  31.1 -> 32.2    64x64  71.2 -> 75.4
    beside it

and ``minisegnet train --epochs 1`` (the README's job, one epoch) took 34 s of compute with one
BLAS thread and 24 s with two. The convolutions are matrix products for the most part, so a
second BLAS thread is nearly a second core for them; on a machine whose other core is taken it
costs a few percent. ``--threads N`` gives both pools N threads. Variables the user set
(``NUMBA_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``) are respected when no
``--threads`` is given: ``NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1`` runs
two small trainings side by side on two cores (``accuracy.py --jobs 2``).

OpenMP loaded before minisegnet (``import torch`` first) with spinning idle threads: the policy
can no longer be chosen, and Numba's kernels run on one thread (``minisegnet/openmp.py``).

OpenBLAS reads its thread count when NumPy is imported; to change it afterwards this calls
OpenBLAS's own ``*_set_num_threads`` through ctypes, found among the libraries this process has
loaded (what threadpoolctl does, without the dependency). Where none is found (another BLAS),
the BLAS count is left alone and reported as unknown.
"""

from __future__ import annotations

import ctypes
import os

from minisegnet import openmp

__all__ = [
    "cpu_cores", "blas_threads", "set_blas_threads", "configure", "current", "tune_threads",
]  # fmt: skip

_PREFIXES = ("scipy_openblas", "openblas")
_SUFFIXES = ("64_", "")
_state: dict | None = None


def cpu_cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's total)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _openblas_functions(kind: str):
    """OpenBLAS's ``*_{kind}_num_threads`` functions in the libraries loaded now."""
    found = []
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return found
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in _PREFIXES:
            for suffix in _SUFFIXES:
                f = getattr(lib, f"{prefix}_{kind}_num_threads{suffix}", None)
                if f is not None:
                    found.append(f)
                    break
            else:
                continue
            break
    return found


def blas_threads() -> int | None:
    """OpenBLAS's thread count now (None when no OpenBLAS is loaded)."""
    import numpy  # noqa: F401  (loads OpenBLAS)

    getters = _openblas_functions("get")
    return int(getters[0]()) if getters else None


def set_blas_threads(n: int) -> bool:
    """Set OpenBLAS's thread count; False when no OpenBLAS was found."""
    import numpy  # noqa: F401

    setters = _openblas_functions("set")
    for f in setters:
        f.argtypes = [ctypes.c_int]
        f(int(n))
    return bool(setters)


def configure(threads: int | None = None) -> dict:
    """Apply the rule above; ``threads``: both pools' count (``--threads``), None for the
    default. Returns ``{"cores", "numba", "blas"}`` (blas None when unknown)."""
    global _state
    import numba

    cores = cpu_cores()
    if threads is not None and not (isinstance(threads, int) and threads >= 1):
        raise ValueError(f"--threads must be a positive integer, got {threads!r}")
    user_numba = "NUMBA_NUM_THREADS" in os.environ
    user_blas = "OPENBLAS_NUM_THREADS" in os.environ or "OMP_NUM_THREADS" in os.environ
    limit = numba.config.NUMBA_NUM_THREADS  # Numba cannot grow past its launch size
    if threads is not None:
        numba.set_num_threads(1 if openmp.spinning() else min(threads, limit))
        set_blas_threads(min(threads, cores))
    else:
        if openmp.spinning():
            numba.set_num_threads(1)
        elif not user_numba:
            numba.set_num_threads(min(cores, limit))
        if not user_blas:
            set_blas_threads(cores)
    _state = {"cores": cores, "numba": numba.get_num_threads(), "blas": blas_threads()}
    return dict(_state)


def current() -> dict:
    """The last :func:`configure` result (configuring with the defaults if none ran yet)."""
    return dict(_state) if _state is not None else configure()


def tune_threads() -> list[str]:
    """Make sure the two pools of a CPU run do not fight over the cores, before the first
    parallel kernel: the thread counts of :func:`configure` (its defaults unless it ran already,
    e.g. for ``--threads``), and idle OpenMP threads that sleep instead of spinning.

    Idle OpenMP workers spin between parallel regions by default and so steal the cores that
    OpenBLAS is computing on (and the reverse). ``import minisegnet`` sets
    ``OMP_WAIT_POLICY=PASSIVE`` unless the user chose a policy; this sets it again for a
    program that removed it since. OpenMP reads the variable when Numba starts its pool (the
    first parallel kernel call), so this must run before that to take effect. Returns what it
    changed (``NAME=value`` strings; empty when there was nothing to do); a policy the user set
    is left alone."""
    changed = []
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        changed.append("OMP_WAIT_POLICY=PASSIVE")
    current()
    return changed

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

OpenMP loaded before minisegnet. ``import minisegnet`` can only choose the waiting policy if it
comes first: GNU OpenMP (libgomp, shared by Numba's kernels and PyTorch) reads
``OMP_WAIT_POLICY`` once, when it is loaded. After ``import torch`` (which loads it) with no
policy set, Numba's idle workers spin against OpenBLAS's threads, and a SegNet-Basic small
training step took 788-835 ms instead of 30 ms (measured on the 2-core machine). The import
notices this (:func:`note_openmp_at_import`) and runs Numba's kernels on one thread, which
creates no worker to spin: 28 ms, as fast as two passive threads on that machine (the
products keep their BLAS threads). It warns once, naming the two ways to get both pools back:
import minisegnet first, or set ``OMP_WAIT_POLICY=PASSIVE`` before starting Python.

OpenBLAS reads its thread count when NumPy is imported; to change it afterwards this calls
OpenBLAS's own ``*_set_num_threads`` through ctypes, found among the libraries this process has
loaded (what threadpoolctl does, without the dependency). Where none is found (another BLAS),
the BLAS count is left alone and reported as unknown.
"""

from __future__ import annotations

import ctypes
import os

__all__ = [
    "cpu_cores", "blas_threads", "set_blas_threads", "configure", "current", "tune_threads",
    "note_openmp_at_import", "openmp_spinning", "SPINNING_OPENMP_WARNING",
]  # fmt: skip

_PREFIXES = ("scipy_openblas", "openblas")
_SUFFIXES = ("64_", "")
_state: dict | None = None
_spinning_openmp = False  # set by note_openmp_at_import

SPINNING_OPENMP_WARNING = (
    "minisegnet: OpenMP (libgomp) was loaded before minisegnet, e.g. by `import torch`, with no "
    "OMP_WAIT_POLICY set, so its idle threads spin; Numba's kernels run on 1 thread so that they "
    "do not spin against OpenBLAS's (with 2 spinning threads a training step was 28x slower). "
    "For both thread pools, import minisegnet before torch, or set OMP_WAIT_POLICY=PASSIVE in "
    "the environment before starting Python."
)


def _libgomp_loaded() -> bool:
    """Whether GNU OpenMP is mapped into this process (Linux; False where /proc is absent)."""
    try:
        with open("/proc/self/maps") as maps:
            return any("libgomp" in line for line in maps)
    except OSError:
        return False


def note_openmp_at_import() -> bool:
    """Called by ``import minisegnet`` before it sets ``OMP_WAIT_POLICY``: whether libgomp is
    already loaded with spinning idle threads (no policy in the environment, and
    ``GOMP_SPINCOUNT`` not 0), in which case the policy can no longer be changed. Then, unless
    the user chose Numba's thread count (``NUMBA_NUM_THREADS``) or Numba is already loaded, the
    count becomes 1 for the whole process; :func:`configure` keeps it at 1 for the calling
    thread in any case; and one ``RuntimeWarning`` says so. Returns the finding."""
    global _spinning_openmp
    spinning = (
        "OMP_WAIT_POLICY" not in os.environ
        and os.environ.get("GOMP_SPINCOUNT", "").strip() != "0"
        and _libgomp_loaded()
    )
    _spinning_openmp = spinning
    if spinning:
        import sys
        import warnings

        if "NUMBA_NUM_THREADS" not in os.environ and "numba" not in sys.modules:
            os.environ["NUMBA_NUM_THREADS"] = "1"  # read when Numba is imported: every thread
        warnings.warn(SPINNING_OPENMP_WARNING, RuntimeWarning, stacklevel=2)
    return spinning


def openmp_spinning() -> bool:
    """What :func:`note_openmp_at_import` found: OpenMP's idle threads spin in this process."""
    return _spinning_openmp


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
        numba.set_num_threads(1 if _spinning_openmp else min(threads, limit))
        set_blas_threads(min(threads, cores))
    else:
        if _spinning_openmp:
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

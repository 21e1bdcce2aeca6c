"""OpenMP's waiting policy: chosen at ``import minisegnet``, and what happens when it is too late.

Numba's parallel kernels run on GNU OpenMP (libgomp), and OpenBLAS's matrix products on its own
threads; the two take turns on the same cores (``minisegnet/threads.py``). Idle OpenMP workers
spin by default and so steal the cores OpenBLAS computes on, so ``import minisegnet`` asks for
passive waiting (``OMP_WAIT_POLICY=PASSIVE``, :func:`choose_passive_waiting`) unless the user
chose a policy.

libgomp reads the policy once, when it is loaded. Loaded earlier by another library --
``import torch`` does, and PyTorch shares the same libgomp -- with no policy set, its idle
threads spin for the rest of the process, and Numba's two workers spinning against OpenBLAS's
threads made a SegNet-Basic small training step take 788-835 ms instead of 30 ms (2-core
machine, 2026-12-06). Then the import runs Numba's kernels on one thread, which creates no
worker to spin: 28 ms, as fast as two passive threads on that machine (the matrix products keep
their BLAS threads). It warns once, naming the two ways to get both pools back: import
minisegnet first, or set ``OMP_WAIT_POLICY=PASSIVE`` before starting Python.
"""

from __future__ import annotations

import os
import sys
import warnings

__all__ = ["choose_passive_waiting", "spinning", "SPINNING_WARNING"]

SPINNING_WARNING = (
    "minisegnet: OpenMP (libgomp) was loaded before minisegnet, e.g. by `import torch`, with no "
    "OMP_WAIT_POLICY set, so its idle threads spin; Numba's kernels run on 1 thread so that they "
    "do not spin against OpenBLAS's (with 2 spinning threads a training step was 28x slower). "
    "For both thread pools, import minisegnet before torch, or set OMP_WAIT_POLICY=PASSIVE in "
    "the environment before starting Python."
)

_spinning = False


def _libgomp_loaded() -> bool:
    """Whether GNU OpenMP is mapped into this process (Linux; False where /proc is absent)."""
    try:
        with open("/proc/self/maps") as maps:
            return any("libgomp" in line for line in maps)
    except OSError:
        return False


def choose_passive_waiting() -> bool:
    """Run once by ``import minisegnet``. If libgomp is already loaded with spinning idle threads
    (no ``OMP_WAIT_POLICY`` in the environment, ``GOMP_SPINCOUNT`` not 0), the policy can no
    longer be changed: unless the user chose Numba's thread count (``NUMBA_NUM_THREADS``) or
    Numba is already loaded, the count becomes 1 for the whole process (through the
    environment, so child processes started afterwards inherit it; ``threads.configure`` keeps
    the calling thread at 1 in any case), and one
    ``RuntimeWarning`` says so. Otherwise sets ``OMP_WAIT_POLICY=PASSIVE`` unless the user set a
    policy. Returns whether OpenMP was found spinning."""
    global _spinning
    _spinning = (
        "OMP_WAIT_POLICY" not in os.environ
        and os.environ.get("GOMP_SPINCOUNT", "").strip() != "0"
        and _libgomp_loaded()
    )
    if _spinning:
        if "NUMBA_NUM_THREADS" not in os.environ and "numba" not in sys.modules:
            os.environ["NUMBA_NUM_THREADS"] = "1"  # read when Numba is imported: every thread
        warnings.warn(SPINNING_WARNING, RuntimeWarning, stacklevel=3)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    return _spinning


def spinning() -> bool:
    """What :func:`choose_passive_waiting` found: OpenMP's idle threads spin in this process."""
    return _spinning

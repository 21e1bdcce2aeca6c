"""Matrix products shared among Python threads, each thread running single-threaded BLAS.

OpenBLAS parallelises every product on its own: its threads meet at a barrier at the end of
each call. On a machine shared with other work, a barrier waits for whichever of its threads the
scheduler has put aside, so a convolution made of many small products (Winograd's 36 per chunk)
pays that wait again and again. Splitting the *work* instead -- each of ``workers`` Python
threads computes its own share of the products with a one-thread BLAS, and the caller joins
them once -- leaves one wait per chunk. NumPy's matmul releases the GIL, so the threads run in
parallel. Measured on the 2-core machine under load 10-12 (busy, noisy): Winograd's forward and
both gradients of 3x3 64->64 on 8x64x128x128 went from 12.7 s to 1.4 s (min of 4). The
row-shift path's fewer, larger products (7x7 64->64 on 4x64x96x128) gained nothing from it
(3.28 s shared vs 3.16 s BLAS-threaded, same load), so only Winograd uses it.

OpenBLAS's thread count is one number for the whole process: ``openblas_set_num_threads_local``,
despite its name, sets it for every thread and returns the previous value (a worker that set it
to 1 once left every later product of the process on one thread: sgemm 1024^3 fell from 365 to
191 GFLOP/s on the 2-core machine after the first Winograd convolution). So ``run`` sets 1 for
the time the workers run and restores the previous count when they have all finished.

Without NumPy's OpenBLAS (another BLAS, or an OpenBLAS without the per-thread setting) or with
one thread, ``pool`` returns no executor and callers run the products in the calling thread.
"""

from __future__ import annotations

import itertools
import os

ENABLED = True
"""Use the worker threads where they are available (benchmarks and tests switch it off)."""

_pool = None


def _forget_pool():
    """In a forked child the pool's threads do not exist: make the next call build a new one."""
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool)


def _openblas():
    """NumPy's OpenBLAS (ctypes), or None if it is not found or lacks per-thread settings."""
    import ctypes
    import glob

    import numpy as np

    libs = os.path.join(os.path.dirname(np.__file__), os.pardir, "numpy.libs")
    for path in sorted(glob.glob(os.path.join(libs, "*openblas*.so*"))):
        lib = ctypes.CDLL(path)
        if hasattr(lib, "openblas_set_num_threads_local"):
            return lib
    return None


def pool():
    """(executor, workers): ``workers`` threads, as many as Numba's (``run`` gives them a
    one-thread BLAS); (None, 1) when switched off, on one thread, or without a suitable
    OpenBLAS."""
    global _pool
    if not ENABLED:
        return None, 1
    if _pool is None:
        from concurrent.futures import ThreadPoolExecutor

        import numba

        lib = _openblas()
        workers = min(numba.get_num_threads(), 16) if lib is not None else 1
        _pool = (ThreadPoolExecutor(workers), workers, lib) if workers > 1 else (None, 1, None)
    return _pool[:2]


def run(task):
    """Call ``task(i, workers)`` for i in range(workers) on the pool (in this thread when there
    is none: ``task(0, 1)``) and wait for all; ``task`` must split its work by i. On the pool,
    each worker runs BLAS and Numba's parallel kernels on one thread (Numba's thread count is
    the calling thread's own), so that the workers' kernels do not split again."""
    executor, workers = pool()
    if executor is None:
        task(0, 1)
        return
    lib = _pool[2]

    def one_thread_each(i):
        import numba

        numba.set_num_threads(1)  # this worker thread's setting only
        task(i, workers)

    previous = lib.openblas_set_num_threads_local(1)  # process-wide: restored below
    try:
        for job in [executor.submit(one_thread_each, i) for i in range(workers)]:
            job.result()
    finally:
        lib.openblas_set_num_threads_local(previous)


def run_each(count, begin, do, end=None):
    """Items 0 .. count - 1 shared among the workers as they come free: each worker calls
    ``state = begin()``, then ``do(state, j)`` for every item j it takes (the next one nobody
    has taken), then ``end(state)``. Fixed shares would leave a fast worker idle while a slow
    one finishes (the two cores of this machine ran the same products from the same to 1.7x
    apart)."""
    taken = itertools.count()  # next() is one C call: atomic under the GIL

    def task(i, workers):
        state = begin()
        while (j := next(taken)) < count:
            do(state, j)
        if end is not None:
            end(state)

    run(task)

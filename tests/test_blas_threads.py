"""ops/blas_threads.py: the work split among the pool's threads covers every part exactly once,
and switched off it runs in the calling thread."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from minisegnet.ops import blas_threads


def test_every_share_runs_once_and_products_match():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(16, 30, 20)), rng.normal(size=(16, 20, 10))
    out = np.zeros((16, 30, 10))
    seen = []

    def share(i, workers):
        for k in range(i, 16, workers):
            seen.append(k)
            np.matmul(a[k], b[k], out=out[k])

    blas_threads.run(share)
    assert sorted(seen) == list(range(16))
    np.testing.assert_allclose(out, a @ b, rtol=1e-12)


def test_switched_off_runs_in_the_calling_thread(monkeypatch):
    monkeypatch.setattr(blas_threads, "ENABLED", False)
    assert blas_threads.pool() == (None, 1)
    where = []
    blas_threads.run(lambda i, workers: where.append((i, workers, threading.get_ident())))
    assert where == [(0, 1, threading.get_ident())]


def test_a_forked_child_builds_its_own_pool():
    blas_threads.pool()
    blas_threads._forget_pool()  # what os.register_at_fork runs in the child
    assert blas_threads._pool is None
    executor, workers = blas_threads.pool()
    assert workers >= 1 and (executor is None) == (workers == 1)


def test_workers_get_one_blas_thread_and_the_process_gets_its_count_back():
    """OpenBLAS's thread count is process-wide: ``run`` must set 1 only while its workers run
    (a worker that set it once left every later product of the process on one thread)."""
    executor, workers = blas_threads.pool()
    lib = blas_threads._openblas()
    if executor is None or lib is None:
        pytest.skip("no worker pool here (one thread, or no NumPy OpenBLAS)")
    count = next(
        (getattr(lib, n) for n in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads")
         if hasattr(lib, n)),
        None,
    )  # fmt: skip
    if count is None:
        pytest.skip("this OpenBLAS does not report its thread count")
    blas_threads._forget_pool()  # fresh workers: whatever they set on starting counts too
    previous = lib.openblas_set_num_threads_local(2)
    try:
        inside = []
        blas_threads.run(lambda i, workers: inside.append(count()))
        assert inside == [1] * workers
        assert count() == 2
    finally:
        lib.openblas_set_num_threads_local(previous)


@pytest.mark.parametrize("enabled", [True, False])
def test_run_each_takes_every_item_once_and_keeps_numba_to_one_thread(monkeypatch, enabled):
    """Each worker begins once, takes items until none is left, and ends once; in the workers
    Numba's parallel kernels get one thread (the setting is the thread's own: the caller keeps
    its count)."""
    import numba

    monkeypatch.setattr(blas_threads, "ENABLED", enabled)
    workers = blas_threads.pool()[1]
    caller = numba.get_num_threads()
    lock = threading.Lock()
    taken, states, ended = [], [], []

    def begin():
        state = {"items": [], "numba_threads": numba.get_num_threads()}
        with lock:
            states.append(state)
        return state

    def do(state, j):
        state["items"].append(j)
        with lock:
            taken.append(j)

    blas_threads.run_each(37, begin, do, lambda state: ended.append(state))
    assert sorted(taken) == list(range(37))
    assert len(states) == len(ended) == workers
    assert sorted(j for s in states for j in s["items"]) == list(range(37))
    expected = 1 if workers > 1 else caller
    assert all(s["numba_threads"] == expected for s in states)
    assert numba.get_num_threads() == caller

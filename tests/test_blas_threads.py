"""ops/blas_threads.py: the work split among the pool's threads covers every part exactly once,
and switched off it runs in the calling thread."""

from __future__ import annotations

import threading

import numpy as np

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

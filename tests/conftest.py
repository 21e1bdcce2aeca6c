"""Shared pytest setup: hypothesis profiles, the --runslow option, the backend fixtures
(``kernel_backend``, ``any_backend``, ``cpu_backend``: every op test on every backend present)."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# 50 examples per property in the default run; `--hypothesis-profile=thorough` for 500.
settings.register_profile(
    "default", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


@pytest.fixture(autouse=True)
def _restore_backend():
    """Every test starts on the default backend and cannot leak a backend switch."""
    import minisegnet as ms

    with ms.backend.use(ms.backend.DEFAULT):
        yield


def backend_or_skip(name: str):
    """Switch to backend ``name`` for a test, or skip it with the backend's own reason."""
    import minisegnet as ms

    reason = ms.backend.get(name).unavailable_reason()
    if reason is not None:
        pytest.skip(f"backend {name!r} unavailable: {reason}")
    return ms.backend.use(name)


def require_backend(name: str) -> None:
    """Skip unless backend ``name`` runs here (for a test written for one backend)."""
    with backend_or_skip(name):
        pass


# ----------------------------------------------------------------------------- backend fixtures
# The backends an op's tests run on (minisegnet/backend.py), chosen here once for every file
# instead of a list per file. A backend that is absent on this machine skips, with its reason
# (cuda-emu needs a C++ compiler); a present one always runs.
#
# ``cuda`` is not in these lists: these tests hand NumPy arrays to the op and compare ``.grad``
# and kernel outputs as NumPy arrays, which the device rule (minisegnet/arrays.py) refuses on
# the GPU. The very same CUDA C kernels run here under ``cuda-emu``, and test_cuda_gpu.py checks
# every ``cuda`` wrapper on CuPy arrays against the emulator (skipping, with CuPy's reason, on a
# machine without a GPU).
REFERENCE_BACKEND = "numpy"  # the definition every other backend is compared with
KERNEL_BACKENDS = ("numba", "cuda-emu")  # every backend with kernels of its own
ALL_BACKENDS = (REFERENCE_BACKEND, *KERNEL_BACKENDS)
# Backends that need no compiler: for tests that check Python-level behaviour (running
# statistics, PyTorch's module semantics, dropout's statistics) where a cuda-emu run would
# only add a g++ build and compare the same kernels that the kernel tests already compare.
CPU_BACKENDS = (REFERENCE_BACKEND, "numba")


# The fixtures below are function-scoped on purpose (each test enters and leaves its backend),
# so a hypothesis test using one shares the backend across its examples: say that is fine.
FIXTURE_OK = settings(
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def _inside(name: str):
    with backend_or_skip(name):
        yield name


@pytest.fixture(params=KERNEL_BACKENDS)
def kernel_backend(request):
    """Each backend with kernels of its own in turn, the test running inside it: its name."""
    yield from _inside(request.param)


@pytest.fixture(params=ALL_BACKENDS)
def any_backend(request):
    """The reference, then each kernel backend, the test running inside it: its name."""
    yield from _inside(request.param)


@pytest.fixture(params=CPU_BACKENDS)
def cpu_backend(request):
    """The reference and numba (no compiler needed), the test running inside it: its name."""
    yield from _inside(request.param)


@pytest.fixture(autouse=True)
def _restore_thread_counts():
    """A test that sets the thread counts (``--threads 1``) must not leave every later test on
    one thread: Numba's count is per calling thread and OpenBLAS's per process, and both
    outlive the test (test_blas_threads skipped its pool test after test_benchmarks' run)."""
    import numba

    from minisegnet import threads

    numba_before, blas_before = numba.get_num_threads(), threads.blas_threads()
    yield
    if numba.get_num_threads() != numba_before:
        numba.set_num_threads(numba_before)
    if blas_before is not None and threads.blas_threads() != blas_before:
        threads.set_blas_threads(blas_before)

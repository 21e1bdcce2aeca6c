"""Shared pytest setup: hypothesis profiles, the --runslow option, backend fixtures."""

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

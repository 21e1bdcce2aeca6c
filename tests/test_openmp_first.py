"""openmp.choose_passive_waiting: OpenMP loaded before minisegnet (as ``import torch`` does) with
spinning idle threads is noticed at import, Numba's kernels then run on one thread, and one
warning says why and what to do; with a passive policy, or with OpenMP not yet loaded, nothing
changes. Each case runs in a fresh Python, since the finding is made once per process."""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Load GNU OpenMP first (what `import torch` does), or not, then import minisegnet and report.
PROGRAM = r"""
import ctypes, json, os, sys, warnings
if sys.argv[1] == "gomp-first":
    ctypes.CDLL(sys.argv[2], mode=ctypes.RTLD_GLOBAL)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import minisegnet
    from minisegnet import openmp, threads
    state = threads.configure()
print(json.dumps({
    "spinning": openmp.spinning(),
    "numba": state["numba"],
    "env_numba": os.environ.get("NUMBA_NUM_THREADS"),
    "warnings": [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)],
}))
"""


def _libgomp() -> str | None:
    name = ctypes.util.find_library("gomp")
    if name is None:
        return None
    try:
        ctypes.CDLL(name)
    except OSError:
        return None
    return name


def _run(order: str, **env_changes) -> dict:
    libgomp = _libgomp()
    if libgomp is None:
        pytest.skip("GNU OpenMP (libgomp) is not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.pop("NUMBA_NUM_THREADS", None)
    env.update(env_changes)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    out = subprocess.run(
        [sys.executable, "-c", PROGRAM, order, libgomp],
        env=env, capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_openmp_loaded_first_with_spinning_threads_gives_numba_one_thread_and_a_warning():
    found = _run("gomp-first")
    assert found["spinning"] is True
    assert found["numba"] == 1 and found["env_numba"] == "1"
    assert len(found["warnings"]) == 1
    message = found["warnings"][0]
    assert "OMP_WAIT_POLICY=PASSIVE" in message and "import minisegnet before torch" in message


def test_a_passive_policy_set_by_the_user_changes_nothing():
    found = _run("gomp-first", OMP_WAIT_POLICY="PASSIVE")
    assert found["spinning"] is False and found["warnings"] == []
    assert found["env_numba"] is None


def test_openmp_loaded_after_minisegnet_changes_nothing():
    found = _run("minisegnet-first")
    assert found["spinning"] is False and found["warnings"] == []
    assert found["env_numba"] is None


def test_a_thread_count_the_user_chose_is_kept_in_the_environment_but_numba_runs_on_one():
    found = _run("gomp-first", NUMBA_NUM_THREADS="2")
    assert found["spinning"] is True and len(found["warnings"]) == 1
    assert found["env_numba"] == "2"  # the user's variable is left alone
    assert found["numba"] == 1  # configure() still keeps the calling thread's kernels on one

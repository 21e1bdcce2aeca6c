"""The functional API under random calls (``tests/validation_cases.py``): every call of every op
either computes what the NumPy reference computes (output and gradients) or is refused with a
ValueError/TypeError whose message names the op. Shapes are small (empty batches included),
geometries and dtypes random, a few arguments deliberately wrong.

Each backend runs in its own subprocess, so a kernel that crashes the interpreter (a segfault
from an out-of-bounds access) fails this test with the signal's name instead of ending the test
run. About 1300 cases per run (1000 Numba, 300 cuda-emu), 20-30 s on two busy cores;
``HYPOTHESIS_PROFILE=thorough`` runs ten times as many. With ``--runslow`` the same calls run
once more with the Numba kernels compiled with bounds checks and the cuda-emu kernels built
with AddressSanitizer, so an out-of-bounds access that happens to read harmless memory fails
too. Reproduce or explore one backend with
``python -m tests.validation_cases --backend numba --examples 2000 --reasons``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import require_backend
from tests.validation_cases import BUILDERS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {"numba": 1000, "cuda-emu": 300}
SCALE = 10 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 1
# The op names a case can carry (some builders pick one of several ops).
OPS = (set(BUILDERS) - {"dropout", "softmax", "elementwise"}) | {
    "dropout", "dropout2d", "softmax", "log_softmax", "relu", "sigmoid", "tanh",
}  # fmt: skip


def _run(backend: str, examples: int, **env) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **env)
    command = [sys.executable, "-m", "tests.validation_cases", "--backend", backend,
               "--examples", str(examples)]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)


def _check(proc: subprocess.CompletedProcess, backend: str, examples: int) -> None:
    """The run ended normally, checked at least ``examples`` calls, and every op computed some
    of them (the generated calls are not all refusals)."""
    tail = (proc.stdout + proc.stderr)[-6000:]
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        pytest.fail(f"the {backend} run crashed with {name} (a kernel out of bounds?):\n{tail}")
    assert proc.returncode == 0, f"the {backend} run broke the contract:\n{tail}"
    tally = Counter()
    for line in proc.stdout.splitlines():
        if line.startswith("tally "):
            _, op, kind, count = line.split()
            tally[op, kind] += int(count)
    assert sum(tally.values()) >= examples, proc.stdout
    assert {op for op, kind in tally if kind == "computed"} == OPS, sorted(tally.items())
    assert any(kind == "refused" for _, kind in tally)


@pytest.mark.parametrize("backend", sorted(EXAMPLES))
def test_every_call_computes_the_reference_or_names_the_op(backend):
    require_backend(backend)
    examples = EXAMPLES[backend] * SCALE
    _check(_run(backend, examples), backend, examples)


@pytest.mark.slow
def test_numba_kernels_stay_in_bounds_with_bounds_checking(tmp_path):
    """The same calls with every Numba kernel compiled with bounds checks (a fresh cache, so
    nothing compiled without them is reused): an access out of bounds raises instead of
    reading garbage. About 3 minutes, most of it compiling."""
    _check(_run("numba", 1300, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path)), "numba", 1300)


@pytest.mark.slow
def test_cuda_emu_kernels_stay_in_bounds_under_address_sanitizer():
    """The same calls on the cuda-emu kernels built with AddressSanitizer (see
    test_cuda_emu_asan.py): any out-of-bounds read or write aborts the run. About 2 minutes."""
    require_backend("cuda-emu")
    from tests.test_cuda_emu_asan import _libasan

    libasan = _libasan()
    if libasan is None:
        pytest.skip("g++ has no libasan.so here (apt-get install libasan8 / gcc with ASan)")
    asan = dict(LD_PRELOAD=libasan, MINISEGNET_EMU_BUILD="asan",
                ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1")  # fmt: skip
    _check(_run("cuda-emu", 1300, **asan), "cuda-emu", 1300)

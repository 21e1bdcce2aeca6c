"""The functional API under random calls (``tests/validation_cases.py``): every call of every op
either computes what the NumPy reference computes (output and gradients) or is refused with a
ValueError/TypeError whose message names the op. Shapes are small (empty batches included),
geometries and dtypes random, a few arguments deliberately wrong.

Each backend runs in its own subprocess, so a kernel that crashes the interpreter (a segfault
from an out-of-bounds access) fails this test with the signal's name instead of ending the test
run. 1300 cases per run (1000 Numba, 300 cuda-emu), about 20 s on two busy cores;
``HYPOTHESIS_PROFILE=thorough`` runs ten times as many. Reproduce or explore one backend with
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

import minisegnet as ms
from tests.validation_cases import BUILDERS

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {"numba": 1000, "cuda-emu": 300}
SCALE = 10 if os.environ.get("HYPOTHESIS_PROFILE") == "thorough" else 1
# The op names a case can carry (some builders pick one of several ops).
OPS = (set(BUILDERS) - {"dropout", "softmax", "elementwise"}) | {
    "dropout", "dropout2d", "softmax", "log_softmax", "relu", "sigmoid", "tanh",
}  # fmt: skip


def _run(backend: str, examples: int) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "tests.validation_cases", "--backend", backend,
               "--examples", str(examples)]  # fmt: skip
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.parametrize("backend", sorted(EXAMPLES))
def test_every_call_computes_the_reference_or_names_the_op(backend):
    reason = ms.backend.get(backend).unavailable_reason()
    if reason is not None:
        pytest.skip(f"backend {backend!r} unavailable: {reason}")
    examples = EXAMPLES[backend] * SCALE
    proc = _run(backend, examples)
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
    # The generated calls are not all refusals: every op computed some results.
    assert {op for op, kind in tally if kind == "computed"} == OPS, sorted(tally.items())
    assert any(kind == "refused" for _, kind in tally)

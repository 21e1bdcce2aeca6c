"""The cuda-emu tests again, with the kernels built with AddressSanitizer, in a subprocess (Python
is not built with ASan, so libasan must be preloaded before the interpreter starts). Also shows
that ASan does catch what it should: an out-of-bounds write into a NumPy array, and a read of
dynamic shared memory past the size given at launch."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.test_cuda_common import needs_emu

pytestmark = needs_emu

ROOT = Path(__file__).resolve().parents[1]
# The small cases: every cuda-emu test module except the ones that spawn processes or load
# torch (whose own libraries do not like a preloaded ASan runtime), few hypothesis examples.
MODULES = [
    "tests/test_cuda_emu_conv.py",
    "tests/test_cuda_emu_implicit_gemm.py",
    "tests/test_cuda_emu_pooling.py",
    "tests/test_cuda_emu_interpolate.py",
    "tests/test_cuda_emu_normalization.py",
    "tests/test_cuda_emu_loss.py",
    "tests/test_cuda_emu_elementwise.py",
    "tests/test_cuda_emu_launch.py",
]


def _libasan():
    try:
        path = subprocess.run(
            ["g++", "-print-file-name=libasan.so"], capture_output=True, text=True, timeout=60
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return None
    return path if os.path.isabs(path) and os.path.exists(path) else None


@pytest.fixture(scope="module")
def asan_env():
    libasan = _libasan()
    if libasan is None:
        pytest.skip("g++ has no libasan.so here (apt-get install libasan8 / gcc with ASan)")
    env = dict(os.environ)
    env.update(
        LD_PRELOAD=libasan,
        ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1",
        MINISEGNET_EMU_BUILD="asan",
        MINISEGNET_CUDA_TEST_EXAMPLES="5",
        PYTHONPATH=str(ROOT),
    )
    return env


def test_cuda_emu_suite_passes_under_asan(asan_env):
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-x",
        "-p",
        "no:cacheprovider",
        "-k",
        "not torch and not cache_is_shared and not overhead",
        *MODULES,
    ]
    result = subprocess.run(
        command, env=asan_env, cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    output = result.stdout[-3000:] + result.stderr[-6000:]
    assert "AddressSanitizer" not in result.stderr, output
    assert result.returncode == 0, output
    assert " passed" in result.stdout


BAD = textwrap.dedent(
    r"""
    __global__ void write_past_the_end(float* y, int n) { y[n + threadIdx.x] = 1.0f; }

    __device__ void sync() { __syncthreads(); }
    __global__ void read_past_shared(float* y)
    {
        extern __shared__ unsigned char raw[];
        float* s = reinterpret_cast<float*>(raw);
        s[threadIdx.x] = 1.0f;
        sync();
        y[threadIdx.x] = s[threadIdx.x + 1];  // the last thread reads one float too far
    }
    """
)


@pytest.mark.parametrize(
    "kernel,launch_args,report",
    [
        (
            "write_past_the_end",
            "1, 4, (np.zeros(8, np.float32), np.int32(6))",
            "heap-buffer-overflow",
        ),
        ("read_past_shared", "1, 4, (np.zeros(4, np.float32),), shared_mem=16", "use-after-poison"),
    ],
)
def test_asan_catches_out_of_bounds_accesses(asan_env, tmp_path, kernel, launch_args, report):
    (tmp_path / "bad.cu").write_text(BAD)
    script = textwrap.dedent(
        f"""
        import numpy as np
        from minisegnet.cuda.launch import launch
        launch({str(tmp_path / "bad.cu")!r}, {kernel!r}, {launch_args})
        print("no error")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=asan_env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0 and "no error" not in result.stdout, result.stdout
    assert report in result.stderr, result.stderr[-3000:]
    assert "bad.cu" in result.stderr  # the report points into the kernel source

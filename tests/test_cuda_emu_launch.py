"""The launcher and the emulator themselves: argument checking, launch limits, fibers and
__syncthreads, dynamic shared memory, grid/block indexing, the compile cache, build modes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from tests.test_cuda_common import needs_emu

pytestmark = needs_emu

SELFTEST = textwrap.dedent(
    r"""
    #include "common.cuh"

    // Reverse each block's slice through static shared memory: right only if every thread has
    // written buf before any thread reads it (one __syncthreads).
    template <typename T>
    __global__ void reverse_block(const T* __restrict__ x, T* __restrict__ y, int n)
    {
        __shared__ T buf[1024];
        int t = threadIdx.x;
        long long i = (long long)blockIdx.x * blockDim.x + t;
        buf[t] = i < n ? x[i] : (T)0;
        __syncthreads();
        long long j = (long long)blockIdx.x * blockDim.x + (blockDim.x - 1 - t);
        if (j < n) y[j] = buf[t];
    }

    // The barrier lives in a helper: the emulator must see it through the call.
    __device__ void barrier() { __syncthreads(); }

    // Inclusive prefix sum of each block (Hillis-Steele) in dynamic shared memory: 2*log2(n)
    // barriers, each needed.
    __global__ void block_scan(const int* __restrict__ x, int* __restrict__ y)
    {
        extern __shared__ unsigned char raw[];
        int* s = reinterpret_cast<int*>(raw);
        int t = threadIdx.x;
        s[t] = x[blockIdx.x * blockDim.x + t];
        barrier();
        for (unsigned int offset = 1; offset < blockDim.x; offset *= 2) {
            int v = t >= (int)offset ? s[t - offset] : 0;
            barrier();
            s[t] += v;
            barrier();
        }
        y[blockIdx.x * blockDim.x + t] = s[t];
    }

    // Every thread of a 3-D grid of 3-D blocks writes its coordinates.
    __global__ void coordinates(int* __restrict__ out)
    {
        long long block = ((long long)blockIdx.z * gridDim.y + blockIdx.y) * gridDim.x
                          + blockIdx.x;
        long long thread = ((long long)threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x
                           + threadIdx.x;
        long long i = block * blockDim.x * blockDim.y * blockDim.z + thread;
        out[4 * i + 0] = blockIdx.x * 100 + threadIdx.x;
        out[4 * i + 1] = blockIdx.y * 100 + threadIdx.y;
        out[4 * i + 2] = blockIdx.z * 100 + threadIdx.z;
        out[4 * i + 3] = gridDim.x * blockDim.x + gridDim.y * blockDim.y + gridDim.z * blockDim.z;
    }

    #define SYNC() __syncthreads()
    // A barrier hidden in a macro: the source scan does not find it.
    __global__ void hidden_sync(int* __restrict__ y) { y[threadIdx.x] = 1; SYNC(); }

    __global__ void scaled(float alpha, const float* __restrict__ x, float* __restrict__ y,
                           long long n, unsigned long long seed)
    {
        long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
        if (i < n) y[i] = alpha * x[i] + (float)(seed % 7ULL);
    }
    """
)


@pytest.fixture(scope="module")
def selftest(tmp_path_factory):
    path = tmp_path_factory.mktemp("cu") / "selftest.cu"
    path.write_text(SELFTEST)
    os.symlink(
        os.path.join(os.path.dirname(__import__("minisegnet").__file__), "cuda/kernels/common.cuh"),
        path.with_name("common.cuh"),
    )
    return str(path)


def launch(*args, **kwargs):
    from minisegnet.cuda.launch import launch as _launch

    return _launch(*args, **kwargs)


# ------------------------------------------------------------------------- fibers, __syncthreads
@pytest.mark.parametrize("block", [1, 7, 32, 256, 1024])
def test_syncthreads_static_shared_memory(selftest, block):
    from minisegnet.cuda import source

    assert source.load(selftest).kernels[0].uses_syncthreads
    n = 2 * block + 3
    x = np.arange(n, dtype=np.float64)
    y = np.full(n, -1.0)
    launch(selftest, "reverse_block<double>", -(-n // block), block, (x, y, np.int32(n)))
    expected = np.full(n, -1.0)
    for b in range(-(-n // block)):
        lo = b * block
        for t in range(block):
            j = lo + block - 1 - t
            if j < n:
                expected[j] = x[lo + t] if lo + t < n else 0.0
    np.testing.assert_array_equal(y, expected)


@pytest.mark.parametrize("block", [2, 64, 512])
def test_syncthreads_through_a_device_function_and_dynamic_shared_memory(selftest, block):
    from minisegnet.cuda import source

    src = source.load(selftest)
    assert {k.name: k.uses_syncthreads for k in src.kernels}["block_scan"]
    assert src.dynamic_shared == ("raw",)
    x = np.random.default_rng(0).integers(-5, 6, size=3 * block).astype(np.int32)
    y = np.zeros_like(x)
    launch(selftest, "block_scan", 3, block, (x, y), shared_mem=4 * block)
    np.testing.assert_array_equal(y, np.cumsum(x.reshape(3, block), axis=1).ravel())


def test_portable_ucontext_fibers(selftest, monkeypatch):
    """The fallback fiber switch (glibc swapcontext), used on CPUs other than x86-64."""
    from minisegnet.cuda import emulator, source

    monkeypatch.setenv("MINISEGNET_EMU_UCONTEXT", "1")
    monkeypatch.setattr(emulator, "_libraries", {})
    x = np.arange(64, dtype=np.int32)
    y = np.zeros_like(x)
    launch(selftest, "block_scan", 2, 32, (x, y), shared_mem=4 * 32)
    np.testing.assert_array_equal(y, np.cumsum(x.reshape(2, 32), axis=1).ravel())
    lib = emulator.library(source.load(selftest))
    monkeypatch.delenv("MINISEGNET_EMU_UCONTEXT")
    assert emulator.library(source.load(selftest)).path != lib.path  # separate cache entries


def test_a_hidden_syncthreads_is_an_error_not_a_wrong_answer(selftest):
    from minisegnet.cuda.emulator import EmulatorError

    y = np.zeros(4, np.int32)
    with pytest.raises(EmulatorError, match="MINISEGNET_EMU_FIBERS=1"):
        launch(selftest, "hidden_sync", 1, 4, (y,))


def test_forced_fibers_give_the_same_results(selftest, monkeypatch):
    from minisegnet.cuda.conv import im2col

    x = np.random.default_rng(0).standard_normal((2, 3, 6, 7))
    plain = im2col(x, (3, 3), (1, 2), (1, 1), (1, 1))
    monkeypatch.setenv("MINISEGNET_EMU_FIBERS", "1")
    np.testing.assert_array_equal(im2col(x, (3, 3), (1, 2), (1, 1), (1, 1)), plain)
    y = np.zeros(4, np.int32)
    launch(selftest, "hidden_sync", 1, 4, (y,))  # with fibers the hidden barrier works
    np.testing.assert_array_equal(y, 1)


def test_3d_grid_and_block_indices(selftest):
    grid, block = (3, 2, 2), (4, 3, 2)
    count = np.prod(grid) * np.prod(block)
    out = np.zeros(4 * count, np.int32)
    launch(selftest, "coordinates", grid, block, (out,))
    out = out.reshape(grid[2], grid[1], grid[0], block[2], block[1], block[0], 4)
    bz, by, bx, tz, ty, tx = np.indices(out.shape[:-1])
    np.testing.assert_array_equal(out[..., 0], bx * 100 + tx)
    np.testing.assert_array_equal(out[..., 1], by * 100 + ty)
    np.testing.assert_array_equal(out[..., 2], bz * 100 + tz)
    assert (out[..., 3] == 3 * 4 + 2 * 3 + 2 * 2).all()


def test_scalar_parameters_of_every_width(selftest):
    x = np.arange(5, dtype=np.float32)
    y = np.zeros(5, np.float32)
    args = (np.float32(2.5), x, y, np.int64(5), np.uint64(2**64 - 1))  # 2**64-1 % 7 == 1
    launch(selftest, "scaled", 1, 8, args)
    np.testing.assert_array_equal(y, 2.5 * x + 1)


# ------------------------------------------------------------------------- argument checking
def _im2col_args(x=None, cols=None, ints=None):
    x = np.zeros((1, 1, 4, 4), np.float32) if x is None else x
    cols = np.zeros((1, 9, 16), np.float32) if cols is None else cols
    ints = (1, 1, 4, 4, 3, 3, 1, 1, 1, 1, 1, 1, 4, 4) if ints is None else ints
    return (x, cols, *[np.int32(v) if isinstance(v, int) else v for v in ints])


def test_wrong_dtype_is_a_type_error_naming_the_argument():
    with pytest.raises(TypeError, match=r"argument 0 'x' \(const float\* __restrict__\).*float32"):
        launch("conv.cu", "im2col<float>", 1, 32, _im2col_args(x=np.zeros((1, 1, 4, 4))))
    with pytest.raises(TypeError, match="'cols'.*float64"):
        launch(
            "conv.cu",
            "im2col<double>",
            1,
            32,
            _im2col_args(x=np.zeros((1, 1, 4, 4)), cols=np.zeros((1, 9, 16), np.float32)),
        )


def test_python_int_for_an_int_parameter_is_refused():
    args = list(_im2col_args())
    args[2] = 1  # B as a Python int
    with pytest.raises(TypeError, match=r"'B' \(int\) must be a np.int32 scalar.*got int 1"):
        launch("conv.cu", "im2col<float>", 1, 32, tuple(args))
    args[2] = np.int64(1)
    with pytest.raises(TypeError, match="np.int32.*int64 scalar"):
        launch("conv.cu", "im2col<float>", 1, 32, tuple(args))


def test_non_contiguous_and_read_only_arrays_are_refused():
    x = np.zeros((1, 1, 4, 8), np.float32)[..., ::2]
    with pytest.raises(ValueError, match="'x'.*C-contiguous"):
        launch("conv.cu", "im2col<float>", 1, 32, _im2col_args(x=x))
    cols = np.zeros((1, 9, 16), np.float32)
    cols.flags.writeable = False
    with pytest.raises(ValueError, match="'cols'.*read-only"):
        launch("conv.cu", "im2col<float>", 1, 32, _im2col_args(cols=cols))
    with pytest.raises(TypeError, match="'x'.*must be an array, got list"):
        launch("conv.cu", "im2col<float>", 1, 32, ([0.0] * 16,) + _im2col_args()[1:])


def test_wrong_argument_count_and_unknown_kernels():
    with pytest.raises(TypeError, match="expected 16 arguments"):
        launch("conv.cu", "im2col<float>", 1, 32, _im2col_args()[:-1])
    with pytest.raises(ValueError, match="not declared in conv.cu.*im2col<double>"):
        launch("conv.cu", "im2col<half>", 1, 32, _im2col_args())
    with pytest.raises(FileNotFoundError, match="nope.cu"):
        launch("nope.cu", "im2col<float>", 1, 32, _im2col_args())
    # spacing in the name expression does not matter
    launch(
        "pooling.cu",
        "max_pool2d_forward< float ,unsigned char >",
        1,
        1,
        (
            np.zeros((1, 1, 1, 1), np.float32),
            np.zeros(1, np.float32),
            np.zeros(1, np.uint8),
            *[np.int32(v) for v in (1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0)],
        ),
    )


def test_launch_limits_are_cudas():
    args = _im2col_args()
    with pytest.raises(ValueError, match="at most 1024 threads"):
        launch("conv.cu", "im2col<float>", 1, (32, 33), args)
    with pytest.raises(ValueError, match=r"grid.x must be in \[1"):
        launch("conv.cu", "im2col<float>", 0, 32, args)
    with pytest.raises(ValueError, match=r"grid.y must be in \[1, 65535\]"):
        launch("conv.cu", "im2col<float>", (1, 70000), 32, args)
    with pytest.raises(ValueError, match="shared_mem"):
        launch("conv.cu", "im2col<float>", 1, 32, args, shared_mem=49153)


def test_wrappers_refuse_bad_arrays():
    from minisegnet.cuda import conv, elementwise, gemm

    with pytest.raises(TypeError, match="im2col: x must have dtype float32 or float64, got int32"):
        conv.im2col(np.zeros((1, 1, 4, 4), np.int32), (3, 3), (1, 1), (1, 1), (1, 1))
    with pytest.raises(ValueError, match="im2col: x must have 4 dimensions"):
        conv.im2col(np.zeros((4, 4), np.float32), (3, 3), (1, 1), (1, 1), (1, 1))
    with pytest.raises(ValueError, match="relu_forward: x must be C-contiguous"):
        elementwise.relu_forward(np.zeros((4, 4), np.float32).T)
    with pytest.raises(ValueError, match="gemm_tiled"):
        gemm.gemm_tiled(np.zeros((2, 3), np.float32), np.zeros((4, 2), np.float32))


# ------------------------------------------------------------------------- compile cache, builds
def test_edited_source_is_recompiled(tmp_path):
    path = tmp_path / "edit.cu"
    body = "__global__ void fill(int* y) {{ y[threadIdx.x] = {}; }}\n"
    path.write_text(body.format(1))
    y = np.zeros(3, np.int32)
    launch(str(path), "fill", 1, 3, (y,))
    assert (y == 1).all()
    path.write_text(body.format(2))
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    launch(str(path), "fill", 1, 3, (y,))
    assert (y == 2).all()


def test_cache_is_shared_between_processes(tmp_path):
    """Two processes start on an empty cache at once: one compiles, both load, and a third
    process finds the library and compiles nothing."""
    code = textwrap.dedent(
        f"""
        import numpy as np, time
        from minisegnet.cuda.launch import launch
        y = np.zeros(3, np.int32)
        t = time.perf_counter()
        launch({str(tmp_path / "shared.cu")!r}, "fill", 1, 3, (y,))
        print(round(time.perf_counter() - t, 3), y.tolist())
        """
    )
    (tmp_path / "shared.cu").write_text("__global__ void fill(int* y) { y[threadIdx.x] = 7; }\n")
    env = dict(os.environ, MINISEGNET_CACHE=str(tmp_path / "cache"), MINISEGNET_EMU_BUILD="release")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    run = [sys.executable, "-c", code]
    first = [
        subprocess.Popen(run, env=env, cwd=root, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in first]
    assert all(p.returncode == 0 for p in first), outputs
    assert all("[7, 7, 7]" in out for out in outputs)
    libraries = list((tmp_path / "cache" / "cuda-emu").glob("shared-release-*.so"))
    assert len(libraries) == 1
    mtime = libraries[0].stat().st_mtime_ns
    third = subprocess.run(run, env=env, cwd=root, capture_output=True, text=True, timeout=120)
    assert third.returncode == 0 and "[7, 7, 7]" in third.stdout, third.stderr
    assert libraries[0].stat().st_mtime_ns == mtime  # loaded, not rebuilt
    assert float(third.stdout.split()[0]) < 0.2  # no g++ run (a compile takes ~0.5 s)


def test_debug_build_runs_and_keeps_the_generated_source(tmp_path, monkeypatch):
    from minisegnet.cuda import emulator, source

    monkeypatch.setenv("MINISEGNET_CACHE", str(tmp_path))
    path = tmp_path / "dbg.cu"
    path.write_text("__global__ void fill(int* y) { y[threadIdx.x] = 5; }\n")
    emulator.set_build("debug")
    try:
        y = np.zeros(2, np.int32)
        launch(str(path), "fill", 1, 2, (y,))
        assert (y == 5).all()
        lib = emulator.library(source.load(str(path)))
    finally:
        emulator.set_build(None)
    assert "-debug-" in lib.path.name
    generated = lib.path.with_suffix(".cpp").read_text()
    assert f'#line 1 "{path}"' in generated and "msn_emu__fill" in generated
    sections = subprocess.run(["readelf", "-S", str(lib.path)], capture_output=True, text=True)
    if sections.returncode == 0:
        assert ".debug_info" in sections.stdout
    with pytest.raises(ValueError, match="MINISEGNET_EMU_BUILD"):
        monkeypatch.setenv("MINISEGNET_EMU_BUILD", "fast")
        emulator.build_mode()


def test_asan_build_without_the_runtime_is_a_clear_error(tmp_path, monkeypatch):
    from minisegnet.cuda import emulator, source

    if emulator._asan_runtime_loaded():
        pytest.skip("this process runs with libasan preloaded")
    path = tmp_path / "a.cu"
    path.write_text("__global__ void fill(int* y) { y[threadIdx.x] = 5; }\n")
    with pytest.raises(emulator.EmulatorError, match="LD_PRELOAD"):
        emulator.library(source.load(str(path)), mode="asan")


def test_warp_intrinsics_fail_to_compile_with_a_message(tmp_path, monkeypatch):
    from minisegnet.cuda import emulator

    monkeypatch.setenv("MINISEGNET_CACHE", str(tmp_path))
    path = tmp_path / "warp.cu"
    path.write_text(
        "__global__ void w(float* y) { y[0] = __shfl_down_sync(0xffffffffu, y[0], 1); }\n"
    )
    with pytest.raises(emulator.EmulatorError, match="__shfl_down_sync.*is not emulated"):
        launch(str(path), "w", 1, 1, (np.zeros(1, np.float32),))


def test_availability_needs_a_working_compiler(monkeypatch):
    from minisegnet import backend
    from minisegnet.cuda import emulator

    assert backend.get("cuda-emu").unavailable_reason() is None
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    emulator.unavailable_reason.cache_clear()
    try:
        assert "no C++ compiler" in backend.get("cuda-emu").unavailable_reason()
        with pytest.raises(backend.BackendUnavailable, match="cuda-emu"):
            backend.use("cuda-emu")
    finally:
        monkeypatch.delenv("CXX")
        emulator.unavailable_reason.cache_clear()
    assert emulator.unavailable_reason() is None


def test_launch_overhead_is_small():
    """Documented cost: a tiny launch is tens of microseconds of Python + ctypes."""
    from minisegnet.cuda.elementwise import relu_forward

    x = np.ones(16, np.float32)
    relu_forward(x)
    start = time.perf_counter()
    for _ in range(200):
        relu_forward(x)
    assert (time.perf_counter() - start) / 200 < 2e-3


# ------------------------------------------------------------------------- host work
def test_launch_count_counts_launches_not_refusals():
    from minisegnet.cuda import elementwise
    from minisegnet.cuda.launch import launch_count

    x = np.ones(5, np.float32)
    before = launch_count()
    elementwise.relu_forward(x)
    elementwise.relu_forward(x)
    assert launch_count() - before == 2
    with pytest.raises(ValueError, match="threads"):
        launch("elementwise.cu", "relu_forward<float>", 1, (64, 32), (x, x, np.int64(5)))
    with pytest.raises(TypeError, match="np.int64"):
        launch("elementwise.cu", "relu_forward<float>", 1, 32, (x, x, 5))
    assert launch_count() - before == 2


def test_a_cached_launch_shape_is_still_checked_each_time():
    """The (grid, block) check is cached; a bad shape is refused on every call, a list too."""
    x = np.ones(5, np.float32)
    for _ in range(2):
        with pytest.raises(ValueError, match="grid.y"):
            launch("elementwise.cu", "relu_forward<float>", (1, 70000), 32, (x, x, np.int64(5)))
    y = np.zeros(5, np.float32)
    launch("elementwise.cu", "relu_forward<float>", [1, 1], [32], (x, y, np.int64(5)))
    assert (y == 1).all()

"""The ``cuda`` backend on a real GPU: every wrapper on CuPy arrays agrees with the very same
wrapper on NumPy arrays (the emulator), and the tiled GEMM is benchmarked against cuBLAS.
Skipped, with CuPy's reason, on machines without a CUDA device."""

from __future__ import annotations

import numpy as np
import pytest

from minisegnet import backend
from tests.helpers import assert_matches
from tests.test_cuda_common import EMU_REASON, rand

GPU_REASON = backend.get("cuda").unavailable_reason()
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(GPU_REASON is not None, reason=f"backend 'cuda' unavailable: {GPU_REASON}"),
    pytest.mark.skipif(EMU_REASON is not None, reason=f"cuda-emu unavailable: {EMU_REASON}"),
]


def _cases():
    from minisegnet.cuda import conv, elementwise, interpolate, loss, normalization, pooling

    x = lambda dt: rand((2, 3, 9, 11), dt)  # noqa: E731
    target = np.random.default_rng(0).integers(0, 3, (2, 9, 11))
    yield "im2col", conv.im2col, lambda dt: (x(dt), (3, 3), (2, 1), (1, 1), (1, 2))
    yield (
        "col2im",
        conv.col2im,
        # 9x11 input, 3x3 kernel, stride (2, 1), padding 1, dilation (1, 2): 5x9 = 45 positions
        lambda dt: (rand((2, 27, 45), dt), (9, 11), (3, 3), (2, 1), (1, 1), (1, 2)),
    )
    yield (
        "max_pool2d_forward",
        pooling.max_pool2d_forward,
        lambda dt: (x(dt), (3, 3), (2, 2), (1, 1), (5, 6)),
    )
    yield (
        "avg_pool2d_forward",
        pooling.avg_pool2d_forward,
        lambda dt: (x(dt), (3, 3), (2, 2), (1, 1), (5, 6), False),
    )
    yield (
        "adaptive_avg_pool2d_backward",
        pooling.adaptive_avg_pool2d_backward,
        lambda dt: (rand((2, 3, 3, 2), dt), (9, 11)),
    )
    yield (
        "bilinear_backward",
        interpolate.bilinear_backward,
        lambda dt: (rand((2, 3, 20, 25), dt), (9, 11), False, None),
    )
    yield "nearest_forward", interpolate.nearest_forward, lambda dt: (x(dt), (20, 25), None)
    yield "batch_norm_stats", normalization.batch_norm_stats, lambda dt: (x(dt),)
    yield "lrn_forward", normalization.lrn_forward, lambda dt: (x(dt), 3, 1e-2, 0.75, 1.0)
    yield "cross_entropy_forward", loss.cross_entropy_forward, lambda dt: (x(dt), target, None, 255)
    yield "relu_forward", elementwise.relu_forward, lambda dt: (x(dt),)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_wrapper_agrees_with_the_emulator(dtype):
    import cupy

    for name, fn, make_args in _cases():
        args = make_args(dtype)
        with backend.use("cuda-emu"):
            on_cpu = fn(*args)
        with backend.use("cuda"):  # the backend decides where a kernel runs
            on_gpu = fn(*[cupy.asarray(a) if isinstance(a, np.ndarray) else a for a in args])
        on_cpu = on_cpu if isinstance(on_cpu, tuple) else (on_cpu,)
        on_gpu = on_gpu if isinstance(on_gpu, tuple) else (on_gpu,)
        for c, g in zip(on_cpu, on_gpu):
            assert isinstance(g, cupy.ndarray), name
            assert_matches(cupy.asnumpy(g), c, dtype, name)


def test_dropout_mask_is_identical_on_the_gpu():
    import cupy

    from minisegnet.cuda.normalization import dropout_mask

    cpu = dropout_mask((2, 3, 4, 5), 0.3, 123, False)
    with backend.use("cuda"):
        gpu = dropout_mask((2, 3, 4, 5), 0.3, 123, False)
    assert isinstance(gpu, cupy.ndarray)
    np.testing.assert_array_equal(cupy.asnumpy(gpu), cpu)


def test_a_training_step_keeps_every_array_on_the_gpu(tmp_path):
    import cupy

    from minisegnet import train

    config = train.TrainConfig(
        model="segnet_basic", backend="cuda", epochs=1, size=32, batch_size=2,
        train_images=2, val_images=2, preview_images=1,
    )  # fmt: skip
    trainer = train.Trainer(config, tmp_path / "run", progress=False, log=lambda *a: None)
    record = trainer.fit()
    assert np.isfinite(record["val"]["miou"])
    assert all(isinstance(p.data, cupy.ndarray) for p in trainer.model.parameters())


def test_tiled_gemm_against_cublas():
    import cupy

    from minisegnet.cuda.gemm import benchmark, gemm_tiled

    with backend.use("cuda"):  # kernels launch on the GPU only under the cuda backend
        a = cupy.random.standard_normal((257, 129), dtype=cupy.float32)
        b = cupy.random.standard_normal((129, 95), dtype=cupy.float32)
        np.testing.assert_allclose(
            cupy.asnumpy(gemm_tiled(a, b)), cupy.asnumpy(a @ b), rtol=1e-4, atol=1e-3
        )
        result = benchmark(1024, 1024, 1024, np.float32, repeat=10, xp=cupy)
        print(
            f"\ntiled SGEMM {result['gemm_tiled_gflops']:.0f} GFLOP/s, "
            f"cuBLAS {result['matmul_gflops']:.0f} GFLOP/s"
        )
        assert result["gemm_tiled_gflops"] > 0

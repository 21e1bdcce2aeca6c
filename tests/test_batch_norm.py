"""Batch norm: gradients of the reference, kernels against the reference, running statistics
against PyTorch's semantics, the module, and the argument errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minisegnet as ms
import minisegnet.functional as F
import minisegnet.nn as nn
from minisegnet.gradcheck import gradcheck
from minisegnet.ops import batch_norm as bn
from tests.conftest import FIXTURE_OK
from tests.helpers import assert_matches, distinct

CUDA_MODULE = "minisegnet.cuda.normalization"
importlib.import_module(CUDA_MODULE)  # the kernels under test: missing is a failure, not a skip


@st.composite
def bn_shapes(draw, min_count=2):
    """(N, C), (N, C, L) or (N, C, H, W) with at least ``min_count`` values per channel."""
    rank = draw(st.sampled_from([2, 3, 4]))
    n = draw(st.integers(1, 3))
    c = draw(st.integers(1, 4))
    rest = tuple(draw(st.integers(1, 4)) for _ in range(rank - 2))
    count = n * int(np.prod(rest))
    if count < min_count:
        n += min_count - count  # enough values to have a variance
    return (n, c) + rest


def t64(shape, seed, low=-2.0, high=2.0, grad=True):
    return ms.tensor(
        distinct(shape, seed, low=low, high=high), dtype=np.float64, requires_grad=grad
    )


# --------------------------------------------------------------------------- gradients
@given(shape=bn_shapes(), seed=st.integers(0, 2**16), affine=st.booleans())
def test_reference_gradcheck_training(shape, seed, affine):
    c = shape[1]
    x = t64(shape, seed)
    w = t64((c,), seed + 1, 0.5, 2.0) if affine else None
    b = t64((c,), seed + 2) if affine else None
    inputs = [x] + ([w, b] if affine else [])
    with ms.backend.use("numpy"):
        assert gradcheck(
            lambda x, *wb: F.batch_norm(x, None, None, *wb, training=True), inputs, mode="full"
        )


@given(shape=bn_shapes(min_count=1), seed=st.integers(0, 2**16))
def test_reference_gradcheck_eval(shape, seed):
    c = shape[1]
    rng = np.random.default_rng(seed)
    running_mean, running_var = rng.normal(0, 1, c), rng.uniform(0.2, 3.0, c)
    x, w, b = t64(shape, seed), t64((c,), seed + 1, 0.5, 2.0), t64((c,), seed + 2)
    with ms.backend.use("numpy"):
        assert gradcheck(
            lambda x, w, b: F.batch_norm(x, running_mean, running_var, w, b, training=False),
            [x, w, b],
            mode="full",
        )


def test_reference_gradcheck_directional_on_a_larger_input():
    x = t64((4, 3, 9, 7), 5)
    w, b = t64((3,), 6, 0.5, 2.0), t64((3,), 7)
    with ms.backend.use("numpy"):
        assert gradcheck(
            lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
            [x, w, b],
            mode="directional",
        )


def test_gradcheck_fails_for_a_wrong_backward(monkeypatch):
    """The checks above can fail: drop the batch-statistics terms from dx."""

    original = bn.batch_norm_backward_ref

    def eval_like_backward(dy, x, mean, invstd, weight):
        dx, dweight, dbias = original(dy, x, mean, invstd, weight)
        return dy * (weight * invstd)[None, :, None, None], dweight, dbias

    monkeypatch.setitem(
        bn._KERNELS, "batch_norm_backward", (eval_like_backward, bn.batch_norm_backward_numba)
    )
    x = t64((3, 2, 2, 2), 0)
    with ms.backend.use("numpy"), pytest.raises(AssertionError):
        gradcheck(lambda x: F.batch_norm(x, None, None, training=True), [x], mode="full")


# --------------------------------------------------------------------------- kernels
@FIXTURE_OK
@given(
    shape=bn_shapes(),
    seed=st.integers(0, 2**16),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_kernels_match_reference(kernel_backend, shape, seed, dtype):
    x4 = bn.as_4d(distinct(shape, seed, dtype=dtype, low=-3, high=5))
    c = x4.shape[1]
    rng = np.random.default_rng(seed)
    weight = rng.uniform(0.5, 2, c).astype(dtype)
    bias = rng.normal(0, 1, c).astype(dtype)
    dy = rng.normal(0, 1, x4.shape).astype(dtype)

    mean, var = bn._impl("batch_norm_stats")(x4)
    mean_ref, var_ref = bn.batch_norm_stats_ref(x4)
    assert mean.dtype == var.dtype == dtype
    assert_matches(mean, mean_ref, dtype, "mean")
    assert_matches(var, var_ref, dtype, "var")

    invstd = (1 / np.sqrt(var_ref + dtype(1e-5))).astype(dtype)
    y = bn._impl("batch_norm_forward")(x4, mean_ref, invstd, weight, bias)
    assert y.dtype == dtype
    assert_matches(y, bn.batch_norm_forward_ref(x4, mean_ref, invstd, weight, bias), dtype, "y")

    grads = bn._impl("batch_norm_backward")(dy, x4, mean_ref, invstd, weight)
    expected = bn.batch_norm_backward_ref(dy, x4, mean_ref, invstd, weight)
    for name, got, want in zip(("dx", "dweight", "dbias"), grads, expected):
        assert got.dtype == dtype, name
        assert_matches(got, want, dtype, name)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", [(8, 5), (4, 3, 7), (2, 3, 5, 6)])
def test_functional_numba_matches_numpy(shape, training):
    rng = np.random.default_rng(0)
    x = rng.normal(2, 3, shape).astype(np.float32)
    dy = rng.normal(0, 1, shape).astype(np.float32)
    c = shape[1]
    results = {}
    for name in ("numpy", "numba"):
        with ms.backend.use(name):
            xt = ms.tensor(x, requires_grad=True)
            w = ms.tensor(np.linspace(0.5, 2, c), requires_grad=True)
            b = ms.tensor(np.linspace(-1, 1, c), requires_grad=True)
            rm, rv = (
                np.linspace(-1, 1, c).astype(np.float32),
                np.linspace(1, 2, c).astype(np.float32),
            )
            y = F.batch_norm(xt, rm, rv, w, b, training=training, momentum=0.3)
            y.backward(dy)
            results[name] = (y.numpy(), xt.grad, w.grad, b.grad, rm, rv)
    for what, got, want in zip(("y", "dx", "dw", "db", "rm", "rv"), *results.values()):
        assert_matches(got, want, np.float32, what)


def test_statistics_are_accurate_when_the_mean_is_large():
    """float32 data around 1e4 with std 1e-2: a one-pass float32 sum of squares would lose
    every digit of the variance."""
    rng = np.random.default_rng(0)
    x = (1e4 + 1e-2 * rng.standard_normal((4, 2, 64, 64))).astype(np.float32)
    true_var = x.astype(np.float64).var(axis=(0, 2, 3))
    for stats in (bn.batch_norm_stats_ref, bn.batch_norm_stats_numba):
        mean, var = stats(x)
        np.testing.assert_allclose(var, true_var, rtol=1e-4)
        np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=(0, 2, 3)), rtol=1e-7)


def test_worked_example_from_the_docstring():
    x = ms.tensor(np.array([1.0, 2.0, 3.0, 4.0]).reshape(4, 1), dtype=np.float64)
    rm, rv = np.zeros(1), np.ones(1)
    y = F.batch_norm(x, rm, rv, training=True, momentum=1.0, eps=1e-300)
    np.testing.assert_allclose(y.numpy().ravel(), [-1.3416408, -0.4472136, 0.4472136, 1.3416408])
    np.testing.assert_allclose(rm, [2.5])
    np.testing.assert_allclose(rv, [1.25 * 4 / 3])


# --------------------------------------------------------------------------- running stats
@pytest.mark.parametrize("momentum", [0.1, 0.5])
def test_running_stats_follow_the_update_rule(cpu_backend, momentum):
    rng = np.random.default_rng(1)
    layer = nn.BatchNorm2d(3, momentum=momentum)
    mean, var = np.zeros(3), np.ones(3)
    with ms.backend.use(cpu_backend):
        for step in range(3):
            x = rng.normal(step, 1 + step, (2, 3, 4, 5)).astype(np.float32)
            layer(ms.tensor(x))
            batch = x.astype(np.float64)
            mean = (1 - momentum) * mean + momentum * batch.mean(axis=(0, 2, 3))
            var = (1 - momentum) * var + momentum * batch.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(layer.running_mean, mean, rtol=1e-5)
    np.testing.assert_allclose(layer.running_var, var, rtol=1e-5)  # unbiased (ddof=1)
    assert int(layer.num_batches_tracked) == 3


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("affine", [True, False])
def test_module_matches_torch(cpu_backend, momentum, affine):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    ours = nn.BatchNorm2d(4, momentum=momentum, affine=affine)
    theirs = torch.nn.BatchNorm2d(4, momentum=momentum, affine=affine)
    if affine:
        w, b = rng.uniform(0.5, 2, 4).astype(np.float32), rng.normal(0, 1, 4).astype(np.float32)
        ours.weight.data[...], ours.bias.data[...] = w, b
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(w))
            theirs.bias.copy_(torch.tensor(b))
    with ms.backend.use(cpu_backend):
        for mode in ("train", "train", "train", "eval"):
            ours.train(mode == "train")
            theirs.train(mode == "train")
            x = rng.normal(3, 2, (3, 4, 5, 6)).astype(np.float32)
            dy = rng.normal(0, 1, x.shape).astype(np.float32)
            xm, xt = ms.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
            ym, yt = ours(xm), theirs(xt)
            ym.backward(dy)
            yt.backward(torch.tensor(dy))
            np.testing.assert_allclose(ym.numpy(), yt.detach().numpy(), rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(xm.grad, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
            if affine:
                for p, q in ((ours.weight, theirs.weight), (ours.bias, theirs.bias)):
                    np.testing.assert_allclose(p.grad, q.grad.numpy(), rtol=1e-4, atol=1e-4)
                    p.grad, q.grad = None, None
            np.testing.assert_allclose(ours.running_mean, theirs.running_mean.numpy(), rtol=1e-5)
            np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-5)
            assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked)


def test_batchnorm1d_matches_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    for shape in ((6, 3), (4, 3, 5)):
        ours, theirs = nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
        x = rng.normal(1, 2, shape).astype(np.float32)
        np.testing.assert_allclose(
            ours(ms.tensor(x)).numpy(), theirs(torch.tensor(x)).detach().numpy(), atol=1e-5
        )
        np.testing.assert_allclose(ours.running_var, theirs.running_var.numpy(), rtol=1e-5)


def test_eval_uses_running_statistics_and_leaves_them_alone():
    layer = nn.BatchNorm2d(2).eval()
    layer.running_mean[...] = [1.0, -1.0]
    layer.running_var[...] = [4.0, 0.25]
    x = np.arange(16, dtype=np.float32).reshape(2, 2, 2, 2)
    y = layer(ms.tensor(x)).numpy()
    expected = (x - np.array([1, -1])[None, :, None, None]) / np.sqrt(
        np.array([4, 0.25])[None, :, None, None] + 1e-5
    )
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    np.testing.assert_array_equal(layer.running_mean, [1.0, -1.0])
    assert int(layer.num_batches_tracked) == 0


def test_without_running_stats_always_uses_the_batch():
    layer = nn.BatchNorm2d(2, track_running_stats=False).eval()
    assert layer.running_mean is None and "running_mean" not in layer.state_dict()
    x = np.random.default_rng(0).normal(5, 2, (3, 2, 4, 4)).astype(np.float32)
    y = layer(ms.tensor(x)).numpy()
    np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=(0, 2, 3)), 1, rtol=1e-3)


def test_buffers_survive_state_dict_and_to():
    layer = nn.BatchNorm2d(3)
    layer(ms.tensor(np.random.default_rng(0).normal(0, 1, (2, 3, 2, 2))))
    state = layer.state_dict()
    assert set(state) == {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}
    other = nn.BatchNorm2d(3)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.running_var, layer.running_var)
    assert int(other.num_batches_tracked) == 1
    other.to(np.float64)
    other(ms.tensor(np.ones((2, 3, 2, 2)), dtype=np.float64))  # updates the float64 buffers
    assert other.running_mean.dtype == np.float64 and int(other.num_batches_tracked) == 2
    assert other.extra_repr().startswith("3, eps=1e-05, momentum=0.1")


def test_running_stats_given_as_tensors_are_updated_in_place():
    rm, rv = ms.tensor(np.zeros(2)), ms.tensor(np.ones(2))
    x = ms.tensor(np.array([[0.0, 2.0], [2.0, 4.0]]))
    F.batch_norm(x, rm, rv, training=True, momentum=1.0)
    np.testing.assert_allclose(rm.numpy(), [1.0, 3.0], rtol=1e-6)
    np.testing.assert_allclose(rv.numpy(), [2.0, 2.0], rtol=1e-6)


# --------------------------------------------------------------------------- errors
def test_errors_name_the_argument():
    x = ms.tensor(np.zeros((2, 3, 4, 4)))
    three, four = np.zeros(3, np.float32), np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"running_mean must have shape \(3,\).*got \(4,\)"):
        F.batch_norm(x, four, three)
    with pytest.raises(ValueError, match=r"running_var must have shape \(3,\)"):
        F.batch_norm(x, three, four)
    with pytest.raises(ValueError, match=r"weight must have shape \(3,\).*got \(4,\)"):
        F.batch_norm(x, three, three, weight=ms.tensor(four))
    with pytest.raises(ValueError, match=r"bias must have shape \(3,\)"):
        F.batch_norm(x, three, three, bias=ms.tensor(four))
    with pytest.raises(ValueError, match=r"input must be \(N, C\).*got shape \(3,\)"):
        F.batch_norm(ms.tensor(np.zeros(3)), three, three)
    with pytest.raises(ValueError, match=r"input must be.*\(1, 2, 3, 4, 5\)"):
        F.batch_norm(ms.tensor(np.zeros((1, 2, 3, 4, 5))), None, None, training=True)
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        F.batch_norm(ms.tensor(np.zeros((1, 3))), None, None, training=True)
    with pytest.raises(ValueError, match="training=False needs running_mean"):
        F.batch_norm(x, None, None, training=False)
    with pytest.raises(TypeError, match="weight has dtype float64 but input has float32"):
        F.batch_norm(x, three, three, weight=ms.tensor(np.ones(3), dtype=np.float64))
    with pytest.raises(TypeError, match="running_mean must be an array or Tensor"):
        F.batch_norm(x, [0, 0, 0], three)
    with pytest.raises(ValueError, match="momentum must be in"):
        F.batch_norm(x, three, three, training=True, momentum=2.0)
    with pytest.raises(TypeError, match="input must be a minisegnet Tensor"):
        F.batch_norm(np.zeros((2, 3)), three, three)


def test_module_errors():
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected a 4-d \(N, C, H, W\) input"):
        nn.BatchNorm2d(3)(ms.tensor(np.zeros((2, 3))))
    with pytest.raises(ValueError, match=r"BatchNorm2d: expected 3 channels.*\(2, 5, 4, 4\)"):
        nn.BatchNorm2d(3)(ms.tensor(np.zeros((2, 5, 4, 4))))
    with pytest.raises(ValueError, match=r"BatchNorm1d: expected a 2-d \(N, C\) or 3-d"):
        nn.BatchNorm1d(3)(ms.tensor(np.zeros((2, 3, 4, 4))))
    with pytest.raises(ValueError, match="num_features must be >= 1, got 0"):
        nn.BatchNorm2d(0)
    with pytest.raises(TypeError, match="num_features must be an integer"):
        nn.BatchNorm2d(3.0)
    with pytest.raises(ValueError, match="momentum must be in"):
        nn.BatchNorm2d(3, momentum=-0.1)

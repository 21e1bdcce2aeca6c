"""Local response norm: PyTorch's formula (checked against torch and a direct loop), gradients of
the reference, kernels against the reference, the module, errors."""

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
from minisegnet.ops import lrn
from tests.conftest import FIXTURE_OK
from tests.helpers import assert_matches, distinct

CUDA_MODULE = "minisegnet.cuda.normalization"
importlib.import_module(CUDA_MODULE)  # the kernels under test: missing is a failure, not a skip

shapes = st.tuples(st.integers(1, 2), st.integers(1, 7), st.integers(1, 3), st.integers(1, 3))
sizes = st.integers(1, 8)
params = st.tuples(st.floats(1e-4, 2.0), st.floats(0.1, 1.5), st.floats(0.5, 2.0))


def direct(x, size, alpha, beta, k):
    """One value at a time, straight from the formula."""
    n_, c_ = x.shape[:2]
    y = np.empty_like(x)
    for n in range(n_):
        for c in range(c_):
            lo, hi = max(0, c - size // 2), min(c_ - 1, c + (size - 1) // 2)
            total = (x[n, lo : hi + 1] ** 2).sum(axis=0)
            y[n, c] = x[n, c] * (k + alpha / size * total) ** -beta
    return y


def test_worked_example_from_the_docstring():
    x = ms.tensor(np.array([1.0, 2.0]).reshape(1, 2, 1, 1), dtype=np.float64)
    y = F.local_response_norm(x, 2, alpha=1.0, beta=1.0, k=1.0)
    np.testing.assert_allclose(y.numpy().ravel(), [1 / 1.5, 2 / 3.5])


@given(shape=shapes, size=sizes, params=params, seed=st.integers(0, 1000))
def test_reference_matches_direct_formula(shape, size, params, seed):
    x = distinct(shape, seed)
    alpha, beta, k = params
    y, scale = lrn.lrn_forward_ref(x, size, alpha, beta, k)
    np.testing.assert_allclose(y, direct(x, size, alpha, beta, k), rtol=1e-12)
    np.testing.assert_allclose(y, x * scale**-beta, rtol=1e-12)


@given(shape=shapes, size=sizes, params=params, seed=st.integers(0, 1000))
def test_reference_gradcheck(shape, size, params, seed):
    alpha, beta, k = params
    x = ms.tensor(distinct(shape, seed), dtype=np.float64, requires_grad=True)
    with ms.backend.use("numpy"):
        assert gradcheck(lambda x: F.local_response_norm(x, size, alpha, beta, k), [x], mode="full")


def test_gradcheck_catches_a_window_off_by_one(monkeypatch):
    """Even sizes have mirrored windows in the backward; gathering with the forward's window
    instead must fail the check."""
    original = lrn.lrn_backward_ref

    def wrong(dy, x, y, scale, size, alpha, beta):
        flipped = x[:, ::-1]
        dx = original(dy[:, ::-1], flipped, y[:, ::-1], scale[:, ::-1], size, alpha, beta)
        return np.ascontiguousarray(dx[:, ::-1])

    monkeypatch.setitem(lrn._KERNELS, "lrn_backward", (wrong, lrn.lrn_backward_numba))
    x = ms.tensor(distinct((1, 5, 2, 2), 0), dtype=np.float64, requires_grad=True)
    with ms.backend.use("numpy"), pytest.raises(AssertionError):
        gradcheck(lambda x: F.local_response_norm(x, 4, 0.5, 0.75, 1.0), [x], mode="full")


@FIXTURE_OK
@given(
    shape=shapes,
    size=sizes,
    params=params,
    seed=st.integers(0, 1000),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_kernels_match_reference(kernel_backend, shape, size, params, seed, dtype):
    alpha, beta, k = params
    x = distinct(shape, seed, dtype=dtype)
    dy = np.random.default_rng(seed).normal(0, 1, shape).astype(dtype)
    forward = ms.backend.pick(
        "lrn", numba=lrn.lrn_forward_numba,
        cuda=ms.backend.lazy(CUDA_MODULE, "lrn_forward"),
    )  # fmt: skip
    backward = ms.backend.pick(
        "lrn", numba=lrn.lrn_backward_numba,
        cuda=ms.backend.lazy(CUDA_MODULE, "lrn_backward"),
    )  # fmt: skip
    y, scale = forward(x, size, alpha, beta, k)
    y_ref, scale_ref = lrn.lrn_forward_ref(x, size, alpha, beta, k)
    assert y.dtype == scale.dtype == dtype
    assert_matches(scale, scale_ref, dtype, "scale")
    assert_matches(y, y_ref, dtype, "y")
    dx = backward(dy, x, y_ref, scale_ref, size, alpha, beta)
    assert dx.dtype == dtype
    assert_matches(dx, lrn.lrn_backward_ref(dy, x, y_ref, scale_ref, size, alpha, beta), dtype)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 6, 11])
def test_matches_torch(cpu_backend, size):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(size)
    x = rng.normal(0, 3, (2, 7, 5, 4)).astype(np.float32)
    dy = rng.normal(0, 1, x.shape).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt = torch.nn.functional.local_response_norm(xt, size, alpha=0.3, beta=0.75, k=2.0)
    yt.backward(torch.tensor(dy))
    with ms.backend.use(cpu_backend):
        xm = ms.tensor(x, requires_grad=True)
        ym = nn.LocalResponseNorm(size, alpha=0.3, beta=0.75, k=2.0)(xm)
        ym.backward(dy)
    np.testing.assert_allclose(ym.numpy(), yt.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(xm.grad, xt.grad.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 6, 5), (1, 4, 2, 3, 2)])
def test_other_ranks_match_torch(shape):
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).normal(0, 2, shape).astype(np.float32)
    expected = torch.nn.functional.local_response_norm(torch.tensor(x), 3, 0.1, 0.75, 1.0)
    y = F.local_response_norm(ms.tensor(x), 3, 0.1, 0.75, 1.0)
    assert y.shape == shape
    np.testing.assert_allclose(y.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)


def test_other_ranks_gradcheck():
    x = ms.tensor(distinct((2, 5, 3), 1), dtype=np.float64, requires_grad=True)
    assert gradcheck(lambda x: F.local_response_norm(x, 3, 0.5, 0.75, 1.0), [x], mode="full")


def test_segnet_basic_input_layer():
    layer = nn.LocalResponseNorm(5)
    assert (layer.size, layer.alpha, layer.beta, layer.k) == (5, 1e-4, 0.75, 1.0)
    assert layer.extra_repr() == "5, alpha=0.0001, beta=0.75, k=1.0"
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 36, 48)).astype(np.float32)
    np.testing.assert_allclose(
        layer(ms.tensor(x)).numpy(), direct(x.astype(np.float64), 5, 1e-4, 0.75, 1.0), rtol=1e-5
    )


def test_errors_name_the_argument():
    x = ms.tensor(np.ones((1, 3, 4, 4)))
    with pytest.raises(ValueError, match="size must be >= 1, got size=0"):
        F.local_response_norm(x, 0)
    with pytest.raises(TypeError, match="size must be an integer"):
        F.local_response_norm(x, 2.5)
    with pytest.raises(ValueError, match=r"at least 3 dimensions.*\(3, 4\)"):
        F.local_response_norm(ms.tensor(np.ones((3, 4))), 3)
    with pytest.raises(TypeError, match="input must be float32 or float64"):
        F.local_response_norm(ms.tensor(np.ones((1, 3, 2), np.int64)), 3)
    with pytest.raises(TypeError, match="alpha must be a number"):
        F.local_response_norm(x, 3, alpha="big")
    with pytest.raises(ValueError, match="LocalResponseNorm: size must be >= 1"):
        nn.LocalResponseNorm(-1)

"""softmax / log_softmax: values, stability, gradients, agreement with torch, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minisegnet as ms
import minisegnet.functional as F
from minisegnet.gradcheck import gradcheck
from tests.helpers import distinct

shapes = st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple)


@st.composite
def shape_and_dim(draw):
    shape = draw(shapes)
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    return shape, dim


@given(case=shape_and_dim(), seed=st.integers(0, 1000))
def test_values_match_the_definition(case, seed):
    shape, dim = case
    x = distinct(shape, seed, low=-5, high=5)
    e = np.exp(x)
    expected = e / e.sum(axis=dim, keepdims=True)
    y = F.softmax(ms.tensor(x, dtype=np.float64), dim).numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-12)
    np.testing.assert_allclose(y.sum(axis=dim), 1.0, rtol=1e-12)
    log_y = F.log_softmax(ms.tensor(x, dtype=np.float64), dim).numpy()
    np.testing.assert_allclose(log_y, np.log(expected), rtol=1e-10, atol=1e-12)


@given(case=shape_and_dim(), seed=st.integers(0, 1000), log=st.booleans())
def test_gradcheck(case, seed, log):
    shape, dim = case
    x = ms.tensor(distinct(shape, seed), dtype=np.float64, requires_grad=True)
    fn = F.log_softmax if log else F.softmax
    assert gradcheck(lambda x: fn(x, dim), [x], mode="full")


def test_gradcheck_catches_a_missing_term(monkeypatch):
    from minisegnet.ops import softmax as sm

    monkeypatch.setattr(sm, "softmax_backward_ref", lambda dy, y, axis: dy * y)
    x = ms.tensor(distinct((2, 3), 0), dtype=np.float64, requires_grad=True)
    with pytest.raises(AssertionError):
        gradcheck(lambda x: F.softmax(x, 1), [x], mode="full")


def test_large_inputs_are_stable():
    x = ms.tensor([[1000.0, 0.0, -1000.0], [-1e30, -1e30, -1e30]], requires_grad=True)
    y = F.softmax(x, 1)
    np.testing.assert_allclose(y.numpy(), [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-7)
    log_y = F.log_softmax(x, -1)
    assert np.all(np.isfinite(log_y.numpy()))
    np.testing.assert_allclose(log_y.numpy()[0], [0, -1000, -2000], atol=1e-4)
    log_y.sum().backward()
    assert np.all(np.isfinite(x.grad))


def test_dtype_argument_converts_first():
    x = ms.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    y = F.softmax(x, 1, dtype=np.float64)
    assert y.dtype == np.float64
    y.sum().backward()
    assert x.grad.dtype == np.float32


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_matches_torch(dim):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    x = rng.normal(0, 3, (3, 5, 4, 2)).astype(np.float32)
    dy = rng.normal(0, 1, x.shape).astype(np.float32)
    for ours, theirs in ((F.softmax, torch.softmax), (F.log_softmax, torch.log_softmax)):
        xm, xt = ms.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        ym, yt = ours(xm, dim), theirs(xt, dim)
        ym.backward(dy)
        yt.backward(torch.tensor(dy))
        np.testing.assert_allclose(ym.numpy(), yt.detach().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(xm.grad, xt.grad.numpy(), rtol=1e-4, atol=1e-6)


def test_errors_name_the_argument():
    x = ms.tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"softmax: dim must be in \[-2, 1\].*got dim=2"):
        F.softmax(x, 2)
    with pytest.raises(ValueError, match=r"log_softmax: dim must be in \[-2, 1\].*got dim=-3"):
        F.log_softmax(x, -3)
    with pytest.raises(ValueError, match="dim must be given"):
        F.softmax(x)
    with pytest.raises(TypeError, match="dim must be an integer"):
        F.softmax(x, 1.0)
    with pytest.raises(ValueError, match="at least 1 dimension"):
        F.softmax(ms.tensor(np.array(1.0)), 0)
    with pytest.raises(TypeError, match="input must be a minisegnet Tensor"):
        F.log_softmax(np.ones(3), 0)

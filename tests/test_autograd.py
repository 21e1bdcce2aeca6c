"""The engine: graph shapes, accumulation, no_grad, detach, freeing, error messages."""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest

import minisegnet as ms
from minisegnet.autograd import Function


def test_tensor_basics():
    t = ms.tensor([[1, 2], [3, 4]], dtype=np.float32)
    assert t.shape == (2, 2) and t.ndim == 2 and t.dtype == np.float32
    assert ms.tensor([1.5]).dtype == np.float32  # float32 by default
    assert ms.tensor(np.ones(2)).dtype == np.float32  # NumPy's float64 too, unless asked
    assert ms.tensor(np.ones(2), dtype=np.float64).dtype == np.float64
    assert ms.tensor([3.0]).item() == 3.0
    assert isinstance(t.numpy(), np.ndarray)
    assert ms.tensor([1, 2]).dtype.kind == "i"
    with pytest.raises(TypeError, match="only float32/float64"):
        ms.tensor([1, 2], requires_grad=True)
    with pytest.raises(ValueError, match="one-element"):
        t.item()


def test_diamond_graph():
    # x feeds two branches that meet again: dL/dx = d(a*b)/dx with a = 2x, b = x^2 -> 6 x^2
    x = ms.tensor([1.0, 2.0, 3.0], requires_grad=True)
    a = x * 2
    b = x * x
    (a * b).sum().backward()
    np.testing.assert_allclose(x.grad, 6 * x.data**2)


def test_tensor_used_twice_accumulates():
    x = ms.tensor([3.0], requires_grad=True)
    y = x + x + x * x
    y.backward()
    np.testing.assert_allclose(x.grad, [2 + 6])


def test_leaf_grad_accumulates_across_backward_calls_until_zeroed():
    x = ms.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * 3).sum().backward()
    np.testing.assert_allclose(x.grad, [6, 6])
    x.zero_grad()
    assert x.grad is None


def test_no_grad_records_nothing():
    x = ms.tensor([1.0], requires_grad=True)
    with ms.no_grad():
        y = x * 2
        assert not ms.is_grad_enabled()
        with ms.enable_grad():
            z = x * 2
    assert ms.is_grad_enabled()
    assert y.creator is None and not y.requires_grad
    assert z.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_detach_cuts_the_graph():
    x = ms.tensor([2.0], requires_grad=True)
    y = (x * x).detach() * x
    y.backward()
    np.testing.assert_allclose(x.grad, [4.0])  # only the outer x contributes


def test_saved_arrays_are_released_after_backward():
    x = ms.tensor(np.ones(1000), requires_grad=True)
    y = x.exp()
    creator = y.creator
    saved_ref = weakref.ref(creator.saved.y) if hasattr(creator.saved.y, "__weakref__") else None
    loss = y.sum()
    loss.backward()
    assert creator.inputs == ()
    with pytest.raises(RuntimeError, match="freed"):
        _ = creator.saved.y
    if saved_ref is not None:
        del y
        gc.collect()
        assert saved_ref() is None


def test_backward_twice_is_a_clear_error_and_retain_graph_allows_it():
    x = ms.tensor([2.0], requires_grad=True)
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, [8.0])
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        y.backward()


def test_nonscalar_backward_needs_grad():
    x = ms.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    with pytest.raises(RuntimeError, match="grad must be given for a non-scalar"):
        y.backward()
    y.backward(np.array([1.0, 10.0], np.float32))
    np.testing.assert_allclose(x.grad, [2, 20])
    with pytest.raises(ValueError, match="grad must have the output's shape"):
        (x * 2).backward(np.ones(3))


def test_deep_chain_does_not_hit_recursion_limit():
    x = ms.tensor([1.0], requires_grad=True)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.backward()
    np.testing.assert_allclose(x.grad, [1.0001**5000], rtol=1e-3)


def test_retain_grad_on_intermediate():
    x = ms.tensor([1.0, 2.0], requires_grad=True)
    h = (x * 3).retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad, 2 * h.data)


def test_function_with_two_outputs_and_unused_output():
    class SplitHalves(Function):
        def forward(self, x):
            n = x.shape[0] // 2
            return x[:n] * 2, x[n:] * 3

        def backward(self, da, db):
            return np.concatenate([da * 2, db * 3])

    x = ms.tensor([1.0, 2.0, 3.0, 4.0], requires_grad=True)
    a, b = SplitHalves.apply(x)
    a.sum().backward()  # b unused: its gradient is taken as zero
    np.testing.assert_allclose(x.grad, [2, 2, 0, 0])


def test_wrong_number_of_gradients_is_reported():
    class Bad(Function):
        def forward(self, a, b):
            return a + b

        def backward(self, dy):
            return dy

    a = ms.tensor([1.0], requires_grad=True)
    b = ms.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="returned 1 gradients for 2 tensor inputs"):
        Bad.apply(a, b).backward()

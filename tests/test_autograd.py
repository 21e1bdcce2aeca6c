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


def test_a_leaf_feeding_many_branches_is_summed_without_touching_any_ops_gradient():
    """Four branches of one leaf (as PSPNet's pooling bins): the sum is right, the gradients the
    ops returned are left as they were (the engine adds in place only into sums it made), and a
    ``.grad`` from an earlier pass that the user still holds is not modified."""
    x = ms.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    returned = []

    class Keep(Function):  # identity whose backward records the arrays it hands back
        def forward(self, a):
            return a.copy()

        def backward(self, dy):
            returned.append((dy, dy.copy()))
            return dy

    loss = sum((Keep.apply(x) * float(k + 1)).sum() for k in range(4))
    loss.backward()
    np.testing.assert_allclose(x.grad, np.full((2, 3), 1.0 + 2 + 3 + 4))
    assert len(returned) == 4
    for array, copy in returned:
        np.testing.assert_array_equal(array, copy)
    first = x.grad
    kept = first.copy()
    sum((Keep.apply(x) * 1.0).sum() for _ in range(3)).backward()
    np.testing.assert_allclose(x.grad, kept + 3)
    np.testing.assert_array_equal(first, kept)  # the earlier .grad, held here, is unchanged


def test_fresh_gradients_take_the_sum_in_place_and_nothing_else_changes():
    """Functions that declare ``fresh_gradients`` let the engine sum into the arrays they
    return: the sums are right in every order of arrival, an op's non-fresh gradient (a view the
    op also keeps) is left as it was, and a retained ``.grad`` keeps its own value."""
    kept_views = []

    class Fresh(Function):  # y = k * a, backward allocates
        fresh_gradients = True

        def forward(self, a, k):
            self.save(k=k)
            return a * k

        def backward(self, dy):
            return dy * self.saved.k

    class Shared(Function):  # identity whose backward hands out an array it also keeps
        def forward(self, a):
            return a.copy()

        def backward(self, dy):
            kept_views.append((dy, dy.copy()))
            return dy

    x = ms.tensor([1.0, 2.0, 3.0], requires_grad=True)
    h = x * 1.0  # a non-leaf that receives every branch's gradient
    h.retain_grad()
    parts = [Shared.apply(h), Fresh.apply(h, 2.0), Fresh.apply(h, 3.0), Shared.apply(h)]
    sum(p.sum() for p in parts).backward()
    np.testing.assert_allclose(h.grad, np.full(3, 1.0 + 2 + 3 + 1))
    np.testing.assert_allclose(x.grad, np.full(3, 7.0))
    for array, copy in kept_views:
        np.testing.assert_array_equal(array, copy)

    h2 = x * 1.0  # retained, and only fresh gradients arrive: the first is .grad itself
    h2.retain_grad()
    (Fresh.apply(h2, 2.0).sum() + Fresh.apply(h2, 5.0).sum()).backward()
    np.testing.assert_allclose(h2.grad, np.full(3, 7.0))

    y = ms.tensor([1.0, -1.0], requires_grad=True)  # a leaf, fresh ones first
    (Fresh.apply(y, 2.0).sum() + Fresh.apply(y, 5.0).sum() + Shared.apply(y).sum()).backward()
    np.testing.assert_allclose(y.grad, [8.0, 8.0])


def test_x_plus_x_plus_x_gives_three():
    """Add hands the same dy to both inputs: summing it into a leaf must not double it in
    place."""
    x = ms.tensor([1.0, -2.0], requires_grad=True)
    (x + x + x).sum().backward()
    np.testing.assert_allclose(x.grad, [3.0, 3.0])


def test_backward_of_several_tensors_is_one_pass_with_their_gradients():
    """autograd.backward([a, b], [ga, gb]) gives the gradients of sum(a*ga) + sum(b*gb), goes
    through a shared function once, and takes a leaf among the roots."""
    calls = []

    class Shared(Function):
        def forward(self, a):
            return a * 2.0

        def backward(self, dy):
            calls.append(dy.copy())
            return dy * 2.0

    x = ms.tensor([1.0, 2.0, 3.0], requires_grad=True)
    h = Shared.apply(x)
    a, b = h * 3.0, h * h
    ga, gb = np.array([1.0, 0.0, 2.0]), np.array([0.5, 1.0, 0.0])
    ms.autograd.backward([a, b, x], [ga, gb, np.ones(3)])
    h_value = 2.0 * x.data
    np.testing.assert_allclose(x.grad, 2.0 * (3.0 * ga + 2.0 * h_value * gb) + 1.0)
    assert len(calls) == 1  # the shared part ran once, with the summed gradient
    np.testing.assert_allclose(calls[0], 3.0 * ga + 2.0 * h_value * gb)

    x.zero_grad()  # a root that another root was computed from: its own gradient and b's
    h = x * 2.0
    b = h * 3.0
    h.retain_grad()
    ms.autograd.backward([b, h], [ga, gb])
    np.testing.assert_allclose(h.grad, 3.0 * ga + gb)
    np.testing.assert_allclose(x.grad, 2.0 * (3.0 * ga + gb))

    s1, s2 = (x * 2.0).sum(), (x * x).sum()  # scalars: grad may be omitted
    x.zero_grad()
    ms.autograd.backward((s1, s2))
    np.testing.assert_allclose(x.grad, 2.0 + 2.0 * x.data)


def test_backward_of_several_tensors_reports_bad_arguments():
    x = ms.tensor([1.0, 2.0], requires_grad=True)
    y, z = x * 2.0, (x * 3.0).sum()
    with pytest.raises(ValueError, match="empty list of tensors"):
        ms.autograd.backward([])
    with pytest.raises(TypeError, match="expected a list of tensors, got ndarray"):
        ms.autograd.backward([y, np.ones(2)])
    with pytest.raises(ValueError, match="a list of 2 gradients, one per tensor, got 1 of them"):
        ms.autograd.backward([y, z], [np.ones(2)])
    with pytest.raises(ValueError, match="a list of 2 gradients, one per tensor, got ndarray"):
        ms.autograd.backward([y, z], np.ones(2))
    with pytest.raises(RuntimeError, match=r"non-scalar output \(tensor 0, shape \(2,\)\)"):
        ms.autograd.backward([y, z])
    with pytest.raises(ValueError, match=r"shape \(2,\), got \(3,\) \(tensor 0\)"):
        ms.autograd.backward([y, z], [np.ones(3), None])
    with pytest.raises(RuntimeError, match="tensor 1 does not require grad"):
        ms.autograd.backward([y, ms.tensor([1.0])], [np.ones(2), None])
    assert x.grad is None  # nothing ran


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

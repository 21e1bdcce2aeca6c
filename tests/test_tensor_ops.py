"""Gradient checks of every Tensor operation, including broadcasting."""

from __future__ import annotations

import numpy as np
import pytest

import minisegnet as ms
import minisegnet.functional as F
from minisegnet.gradcheck import gradcheck
from tests.helpers import distinct


def t64(shape, seed=0, low=-2.0, high=2.0):
    return ms.tensor(
        distinct(shape, seed, low=low, high=high), dtype=np.float64, requires_grad=True
    )


def positive(shape, seed=0):
    return t64(shape, seed, low=0.5, high=2.0)


BINARY = {
    "add": lambda a, b: a + b,
    "sub": lambda a, b: a - b,
    "mul": lambda a, b: a * b,
    "div": lambda a, b: a / b,
    "pow": lambda a, b: a**b,
}

BROADCAST_SHAPES = [
    ((3, 4), (3, 4)),
    ((3, 4), (4,)),
    ((3, 1), (1, 4)),
    ((2, 3, 4), (3, 1)),
    ((1,), (2, 3)),
    ((), (2, 2)),
]


@pytest.mark.parametrize("op", sorted(BINARY))
@pytest.mark.parametrize("shapes", BROADCAST_SHAPES, ids=str)
def test_binary_ops_gradcheck_with_broadcasting(op, shapes):
    a = positive(shapes[0], seed=1)  # positive: pow needs a > 0, div needs b away from 0
    b = positive(shapes[1], seed=2)
    out = BINARY[op](a, b)
    assert out.shape == np.broadcast_shapes(shapes[0], shapes[1])
    assert gradcheck(BINARY[op], [a, b])


def test_scalar_operands_keep_dtype_and_gradients():
    x = t64((3,))
    assert gradcheck(lambda x: 2 * x - 1 + x / 3 - 5 / (x * x + 1) + (-x) ** 2, [x])
    y = ms.tensor([1.0, 2.0])
    assert (y * 2.5).dtype == np.float32
    assert (3.0 - y).dtype == np.float32


UNARY = {
    "exp": (lambda x: x.exp(), (-2, 2)),
    "log": (lambda x: x.log(), (0.5, 3)),
    "sqrt": (lambda x: x.sqrt(), (0.5, 3)),
    "relu": (lambda x: x.relu(), (-2, 2)),
    "sigmoid": (lambda x: x.sigmoid(), (-4, 4)),
    "tanh": (lambda x: x.tanh(), (-2, 2)),
    "neg": (lambda x: -x, (-2, 2)),
    "pow_scalar": (lambda x: x**3, (-2, 2)),
    "pow_fraction": (lambda x: x**0.5, (0.5, 2)),
    "abs": (lambda x: x.abs(), (-2, 2)),
    "F.relu": (lambda x: F.relu(x), (-2, 2)),
}


@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_ops_gradcheck(name):
    fn, (low, high) = UNARY[name]
    x = t64((3, 5), seed=3, low=low, high=high)
    assert gradcheck(fn, [x])


def test_relu_values_and_gradient_at_negative_and_positive():
    x = ms.tensor([-1.5, 0.5, 2.0], requires_grad=True)
    y = x.relu()
    np.testing.assert_array_equal(y.numpy(), [0, 0.5, 2.0])
    y.sum().backward()
    np.testing.assert_array_equal(x.grad, [0, 1, 1])


def test_sigmoid_is_stable_for_large_inputs():
    x = ms.tensor([-1000.0, 0.0, 1000.0])
    with np.errstate(over="raise"):
        np.testing.assert_allclose(x.sigmoid().numpy(), [0, 0.5, 1])


@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 2)])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("reduce", ["sum", "mean", "max"])
def test_reductions_gradcheck(reduce, axis, keepdims):
    x = t64((2, 3, 4), seed=4)
    fn = lambda x: getattr(x, reduce)(axis=axis, keepdims=keepdims)  # noqa: E731
    expected = getattr(np, "amax" if reduce == "max" else reduce)(
        x.data, axis=axis, keepdims=keepdims
    )
    np.testing.assert_allclose(fn(x).numpy(), expected)
    assert gradcheck(fn, [x])


def test_max_splits_gradient_between_ties():
    x = ms.tensor([1.0, 3.0, 3.0, 2.0], requires_grad=True)
    x.max().backward()
    np.testing.assert_allclose(x.grad, [0, 0.5, 0.5, 0])


def test_reduction_axis_out_of_range_names_axis():
    with pytest.raises(ValueError, match="axis"):
        ms.tensor(np.ones((2, 3))).sum(axis=2)


def test_matmul_gradcheck_all_rank_combinations():
    cases = [
        ((3, 4), (4, 5)),
        ((4,), (4, 2)),
        ((3, 4), (4,)),
        ((2, 3, 4), (4, 2)),
        ((2, 3, 4), (1, 4, 5)),
    ]
    for sa, sb in cases:
        a, b = t64(sa, 5), t64(sb, 6)
        np.testing.assert_allclose((a @ b).numpy(), a.data @ b.data)
        assert gradcheck(lambda a, b: a @ b, [a, b])


def test_matmul_inner_size_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"inner sizes differ.*\(3, 4\).*\(5, 2\)"):
        ms.tensor(np.ones((3, 4))) @ ms.tensor(np.ones((5, 2)))


def test_reshape_transpose_permute_gradcheck():
    x = t64((2, 3, 4), 7)
    assert gradcheck(
        lambda x: x.reshape(4, 6) * ms.tensor(np.arange(24.0).reshape(4, 6), dtype=np.float64), [x]
    )
    assert gradcheck(
        lambda x: x.transpose(2, 0, 1).reshape(-1) * ms.tensor(np.arange(24.0), dtype=np.float64),
        [x],
    )
    assert gradcheck(lambda x: x.permute(1, 0, 2) ** 2, [x])
    assert x.T.shape == (4, 3, 2)


def test_reshape_error_names_shapes():
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 2\)"):
        ms.tensor(np.ones((2, 3))).reshape(4, 2)


def test_transpose_rejects_non_permutation():
    with pytest.raises(ValueError, match="permutation"):
        ms.tensor(np.ones((2, 3))).transpose(0, 0)


@pytest.mark.parametrize(
    "index",
    [
        (slice(None), slice(1, 3)),  # a crop, as FCN does
        (0,),
        (Ellipsis, slice(None, None, 2)),
        (slice(None), None, 1),
        np.array([0, 2, 0]),  # advanced indexing with a repeat: gradients add
        (np.array([1, 1]), np.array([0, 3])),
        np.array([[True, False, True, False]] * 3),
    ],
    ids=lambda i: repr(i)[:30],
)
def test_getitem_gradcheck(index):
    x = t64((3, 4), 8)
    expected = x.data[index]
    np.testing.assert_array_equal(x[index].numpy(), expected)
    assert gradcheck(lambda x: x[index] * 1.0, [x])


def test_repeated_advanced_index_accumulates():
    x = ms.tensor([1.0, 2.0, 3.0], requires_grad=True)
    x[np.array([0, 0, 2])].sum().backward()
    np.testing.assert_array_equal(x.grad, [2, 0, 1])


def test_crop_like_fcn():
    score = t64((1, 2, 10, 12), 9)
    crop = lambda s: s[:, :, 3 : 3 + 5, 4 : 4 + 6]  # noqa: E731
    assert crop(score).shape == (1, 2, 5, 6)
    assert gradcheck(crop, [score])


def test_concatenate_gradcheck_and_errors():
    a, b, c = t64((2, 3), 10), t64((2, 1), 11), t64((2, 2), 12)
    out = ms.cat([a, b, c], axis=1)
    assert out.shape == (2, 6)
    assert gradcheck(lambda a, b, c: ms.cat([a, b, c], axis=1) ** 2, [a, b, c])
    assert gradcheck(lambda a, b: ms.stack([a, b * 2], axis=0), [a, t64((2, 3), 13)])
    with pytest.raises(ValueError, match=r"tensors\[1\] has shape \(3, 1\)"):
        ms.cat([a, ms.tensor(np.ones((3, 1)), dtype=np.float64)], axis=1)
    with pytest.raises(ValueError, match="non-empty"):
        ms.cat([])


def test_pad_gradcheck_and_layout():
    x = t64((1, 2, 3, 4), 14)
    y = F.pad(x, (1, 2, 3, 0), value=0.0)
    assert y.shape == (1, 2, 6, 7)
    np.testing.assert_array_equal(y.numpy()[0, 0, 3:, 1:5], x.data[0, 0])
    assert gradcheck(lambda x: F.pad(x, (1, 2, 3, 0)), [x])
    with pytest.raises(ValueError, match="pad"):
        F.pad(x, (1, 2, 3))
    with pytest.raises(ValueError, match="mode"):
        F.pad(x, (1, 1), mode="reflect")


def test_float_dtypes_do_not_mix_silently():
    a = ms.tensor([1.0], dtype=np.float64)
    b = ms.tensor([1.0])
    with pytest.raises(TypeError, match="float64 and float32|float32 and float64"):
        a + b
    assert (a + b.to(np.float64)).dtype == np.float64


def test_cast_is_differentiable():
    x = ms.tensor([1.0, 2.0], requires_grad=True)
    y = x.to("float64") * 3
    y.sum().backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_array_equal(x.grad, [3, 3])


def test_from_array_wraps_without_copy_conversion_or_move():
    array = np.arange(3, dtype=np.float64)  # ms.tensor would make this float32
    t = ms.Tensor.from_array(array)
    assert t.data is array and t.dtype == np.float64
    assert t.creator is None and t.grad is None and not t.requires_grad
    assert ms.Tensor.from_array(array, requires_grad=True).requires_grad


def test_operator_methods_are_tensor_methods_by_name():
    from minisegnet.tensor_methods import METHODS

    for name in METHODS:
        assert name in vars(ms.Tensor), name
    assert ms.Tensor.sum.__qualname__ == "Tensor.sum"
    assert ms.Tensor.__add__.__name__ == "__add__"
    x = ms.tensor(np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(x.T.numpy(), x.numpy().T)
    np.testing.assert_array_equal((2 - x).numpy(), 2 - x.numpy())
    np.testing.assert_array_equal((x**2).numpy(), x.numpy() ** 2)

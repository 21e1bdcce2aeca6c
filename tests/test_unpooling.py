"""Max unpooling (minisegnet/ops/unpooling.py): switches from max_pool2d put every value back
where it came from; odd sizes through output_size; every backend against the reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minisegnet as ms
import minisegnet.functional as F
from minisegnet import nn
from minisegnet.gradcheck import gradcheck
from minisegnet.ops import geometry, unpooling
from tests.conftest import FIXTURE_OK
from tests.helpers import assert_matches, distinct, tensor_of
from tests.test_pooling import pool_cases


def pool(x, case, backend_name="numpy"):
    """y, PoolIndices of max pooling ``x`` (an array) with the case's geometry."""
    with ms.backend.use(backend_name):
        return F.max_pool2d(
            tensor_of(x), case["kernel"], case["stride"], case["padding"], case["ceil_mode"],
            return_indices=True,
        )  # fmt: skip


def unpool_geometry(case):
    return case["kernel"], case["stride"], case["padding"]


def run_unpool(backend_name, values, idx, case, out_size, dy):
    """Unpool ``values`` (array) at ``idx`` on one backend, backpropagate ``dy``: (y, dx)."""
    with ms.backend.use(backend_name):
        t = tensor_of(values, requires_grad=True)
        y = F.max_unpool2d(t, idx, *unpool_geometry(case), output_size=out_size)
        y.backward(dy)
        return y.numpy(), t.grad


@given(case=pool_cases(max_size=7))
def test_reference_gradient(case):
    x = distinct(case["shape"], case["seed"])
    pooled, idx = pool(x, case)
    values = tensor_of(distinct(pooled.shape, case["seed"] + 1), requires_grad=True)
    with ms.backend.use("numpy"):
        gradcheck(
            lambda v: F.max_unpool2d(v, idx, *unpool_geometry(case), output_size=x.shape[2:]),
            [values],
        )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@FIXTURE_OK
@given(case=pool_cases())
def test_backend_matches_reference(kernel_backend, dtype, case):
    x = distinct(case["shape"], case["seed"], dtype)
    pooled, idx = pool(x, case, kernel_backend)
    values = distinct(pooled.shape, case["seed"] + 1, dtype)
    dy = distinct(x.shape, case["seed"] + 2, dtype)
    y_ref, dx_ref = run_unpool("numpy", values, idx, case, x.shape[2:], dy)
    y, dx = run_unpool(kernel_backend, values, idx, case, x.shape[2:], dy)
    assert y.dtype == dtype and dx.dtype == dtype
    assert_matches(y, y_ref, dtype, what="y")  # placement (sums only where windows overlap)
    np.testing.assert_array_equal(dx, dx_ref)  # a read at the switch: exact


@given(case=pool_cases())
def test_unpool_of_pool_holds_the_maxima_at_the_switches(case):
    x = distinct(case["shape"], case["seed"])
    pooled, idx = pool(x, case)
    y = F.max_unpool2d(pooled, idx, *unpool_geometry(case), output_size=x.shape[2:]).numpy()
    # how many windows chose each pixel (more than one only when windows overlap)
    ones = tensor_of(np.ones(pooled.shape))
    chosen = F.max_unpool2d(ones, idx, *unpool_geometry(case), output_size=x.shape[2:]).numpy()
    # the maxima where chosen (times the number of windows choosing them), zeros elsewhere
    np.testing.assert_allclose(y, x * chosen, rtol=1e-12, atol=0)
    assert chosen.sum() == pooled.size
    if all(k <= s for k, s in zip(case["kernel"], case["stride"])):  # windows do not overlap
        assert chosen.max() <= 1 and np.count_nonzero(y) == pooled.size


def test_segnet_odd_size_round_trip_45_23_45(any_backend):
    x = distinct((2, 3, 45, 60), seed=5, dtype=np.float32)
    with ms.backend.use(any_backend):
        t = tensor_of(x, requires_grad=True)
        pooled, idx = F.max_pool2d(t, 2, 2, ceil_mode=True, return_indices=True)
        assert pooled.shape == (2, 3, 23, 30) and idx.in_size == (45, 60)
        y = F.max_unpool2d(pooled, idx, 2, 2, output_size=t.shape)  # the full shape, like torch
        assert y.shape == x.shape
        assert F.max_unpool2d(pooled, idx, 2, output_size=(45, 60)).shape == x.shape
        y.backward(np.ones(x.shape, np.float32))
    y = y.numpy()
    blocks = np.pad(x, ((0, 0), (0, 0), (0, 1), (0, 0)), constant_values=-np.inf)
    maxima = blocks.reshape(2, 3, 23, 2, 30, 2).max(axis=(3, 5))
    np.testing.assert_array_equal(pooled.numpy(), maxima)
    assert np.count_nonzero(y) == pooled.size and np.isin(maxima, y).all()
    assert np.count_nonzero(t.grad) == pooled.size  # the gradient reaches exactly the maxima
    # without output_size PyTorch's default (Hp - 1)*s - 2p + k = 46 rows
    assert F.max_unpool2d(pooled, idx, 2).shape == (2, 3, 46, 60)


def test_backward_reads_dy_at_the_switch():
    x = np.array([[[[1.0, 5.0, 2.0, 0.0], [3.0, 4.0, 2.5, 1.0]]]])
    pooled, idx = F.max_pool2d(tensor_of(x), 2, return_indices=True)
    np.testing.assert_array_equal(idx.numpy(), [[[[1, 2]]]])
    values = tensor_of(np.array([[[[10.0, 20.0]]]]), requires_grad=True)
    y = F.max_unpool2d(values, idx, 2)
    np.testing.assert_array_equal(y.numpy(), [[[[0, 10, 0, 0], [0, 0, 20, 0]]]])
    y.backward(np.arange(8.0).reshape(1, 1, 2, 4))
    np.testing.assert_array_equal(values.grad, [[[[1.0, 6.0]]]])


@given(case=pool_cases().filter(lambda c: all(k <= s for k, s in zip(c["kernel"], c["stride"]))))
def test_matches_torch(case):
    torch = pytest.importorskip("torch")
    x = distinct(case["shape"], case["seed"])
    kernel, stride, padding = unpool_geometry(case)
    tx = torch.tensor(x)
    ty, ti = torch.nn.functional.max_pool2d(
        tx, kernel, stride, padding, ceil_mode=case["ceil_mode"], return_indices=True
    )
    values = distinct(tuple(ty.shape), case["seed"] + 1)
    expected = torch.nn.functional.max_unpool2d(
        torch.tensor(values), ti, kernel, stride, padding, output_size=x.shape[2:]
    ).numpy()
    _, idx = pool(x, case)
    ours = F.max_unpool2d(tensor_of(values), idx, kernel, stride, padding, output_size=x.shape[2:])
    np.testing.assert_array_equal(ours.numpy(), expected)
    # PyTorch's flat int64 indices are accepted too (converted to window positions)
    flat = F.max_unpool2d(tensor_of(values), ti.numpy(), kernel, stride, padding, x.shape[2:])
    np.testing.assert_array_equal(flat.numpy(), expected)


@given(st.integers(1, 40), st.integers(1, 3), st.integers(1, 3), st.integers(0, 1), st.booleans())
def test_output_size_check_matches_pooling(size, k, s, p, ceil_mode):
    # every size that pools to Hp is accepted; others are refused with the reason
    p = min(p, k // 2)
    if size + 2 * p < k:
        return
    kernel, stride, padding = (k, k), (s, s), (p, p)
    pooled = geometry.pool_output_size("t", (size, size), kernel, stride, padding, ceil_mode)
    got = unpooling.unpool_output_size("t", pooled, kernel, stride, padding, (size, size))
    assert got == (size, size)
    for other in range(1, size + 3 * s + 3):
        floor = _pooled_or_none(other, kernel, stride, padding, False)
        ceil = _pooled_or_none(other, kernel, stride, padding, True)
        if pooled not in (floor, ceil):
            with pytest.raises(ValueError, match="could not have been pooled"):
                unpooling.unpool_output_size("t", pooled, kernel, stride, padding, (other, other))


def _pooled_or_none(size, kernel, stride, padding, ceil_mode):
    try:
        return geometry.pool_output_size("t", (size, size), kernel, stride, padding, ceil_mode)
    except ValueError:
        return None


def test_bad_inputs_raise_clear_errors():
    x = tensor_of(distinct((2, 3, 8, 8), 0, np.float32))
    pooled, idx = F.max_pool2d(x, 2, return_indices=True)
    with pytest.raises(ValueError, match=r"4-D \(N, C, H, W\)"):
        F.max_unpool2d(tensor_of(pooled.numpy()[0]), idx, 2)
    other = F.max_pool2d(tensor_of(distinct((2, 3, 10, 8), 1, np.float32)), 2, return_indices=True)
    with pytest.raises(ValueError, match="indices must have the input's shape"):
        F.max_unpool2d(pooled, other[1], 2)  # indices from a different shape
    with pytest.raises(ValueError, match="recorded by a pool with kernel"):
        F.max_unpool2d(pooled, idx, 2, stride=3, output_size=(12, 12))  # other geometry
    with pytest.raises(ValueError, match="could not have been pooled"):
        F.max_unpool2d(pooled, idx, 2, output_size=(11, 8))  # 11 pools to 5 or 6, not 4
    with pytest.raises(ValueError, match=r"the input's \(N, C\)"):
        F.max_unpool2d(pooled, idx, 2, output_size=(1, 3, 8, 8))
    with pytest.raises(TypeError, match="output_size must be"):
        F.max_unpool2d(pooled, idx, 2, output_size=(8,))
    with pytest.raises(TypeError, match="PoolIndices"):
        F.max_unpool2d(pooled, pooled, 2)  # float values are no switches
    _, idx46 = F.max_pool2d(tensor_of(distinct((1, 1, 46, 4), 2)), 2, return_indices=True)
    pooled46 = tensor_of(distinct((1, 1, 23, 2), 3))
    with pytest.raises(ValueError, match="too small for these indices"):
        # 45 rows do pool to 23 (ceil mode), but these switches may point at row 45
        F.max_unpool2d(pooled46, idx46, 2, output_size=(45, 4))


def test_module():
    pool_layer, unpool_layer = (
        nn.MaxPool2d(2, return_indices=True, ceil_mode=True),
        nn.MaxUnpool2d(2),
    )
    assert "kernel_size=2" in repr(unpool_layer)
    x = tensor_of(distinct((1, 2, 7, 5), 0, np.float32))
    y, idx = pool_layer(x)
    assert unpool_layer(y, idx, output_size=x.shape).shape == x.shape
    assert unpool_layer(y, idx).shape == (1, 2, 8, 6)

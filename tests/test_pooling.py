"""Max pooling with switches (minisegnet/ops/pooling.py): gradients of the reference, every
backend against the reference, PyTorch's numbers, the switch format, and the errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minisegnet as ms
import minisegnet.functional as F
from minisegnet import nn
from minisegnet.gradcheck import gradcheck
from minisegnet.ops import pooling
from tests.conftest import FIXTURE_OK
from tests.helpers import assert_matches, distinct, tensor_of

CUDA_MODULE = "minisegnet.cuda.pooling"
importlib.import_module(CUDA_MODULE)  # the kernels under test: missing is a failure, not a skip


@st.composite
def pool_cases(draw, max_size: int = 10, max_kernel: int = 4):
    """A valid geometry: kernel, stride, padding <= kernel/2, sizes that fit a window."""
    kh, kw = draw(st.integers(1, max_kernel)), draw(st.integers(1, max_kernel))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    stride = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    if max_kernel >= 2 and draw(st.integers(0, 3)) == 0:  # SegNet's 2x2/2 pool (own kernels)
        (kh, kw), stride, (ph, pw) = (2, 2), (2, 2), (0, 0)
    h = draw(st.integers(max(1, kh - 2 * ph), max_size))  # odd and even sizes
    w = draw(st.integers(max(1, kw - 2 * pw), max_size))
    return {
        "kernel": (kh, kw),
        "stride": stride,
        "padding": (ph, pw),
        "ceil_mode": draw(st.booleans()),
        "shape": (draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w),
        "seed": draw(st.integers(0, 2**16)),
    }


def shape_of(case):
    return case["shape"]


def pool_args(case):
    return case["kernel"], case["stride"], case["padding"], case["ceil_mode"]


def run_max_pool(backend_name, x, dy, case):
    """Forward with indices and backward on one backend: (y, idx, dx) as NumPy arrays."""
    kernel, stride, padding, ceil_mode = pool_args(case)
    with ms.backend.use(backend_name):
        t = tensor_of(x, requires_grad=True)
        y, idx = F.max_pool2d(t, kernel, stride, padding, ceil_mode, return_indices=True)
        y.backward(dy)
        return y.numpy(), idx.numpy(), t.grad


# ----------------------------------------------------------------------------- gradients
@given(pool_cases(max_size=7))
def test_reference_gradient(case):
    kernel, stride, padding, ceil_mode = pool_args(case)
    x = tensor_of(distinct(shape_of(case), case["seed"]), requires_grad=True)
    with ms.backend.use("numpy"):
        gradcheck(lambda t: F.max_pool2d(t, kernel, stride, padding, ceil_mode), [x])


def test_gradient_overlapping_windows_sums_both_windows():
    # 3x3 stride 2: the centre pixel 9 is the maximum of all four windows
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 2] = 9.0
    x[0, 0] += np.arange(25).reshape(5, 5) * 1e-3  # no other ties
    t = tensor_of(x, requires_grad=True)
    y, idx = F.max_pool2d(t, 3, 2, return_indices=True)
    assert y.shape == (1, 1, 2, 2) and np.all(y.numpy() >= 9.0)
    y.backward(np.array([[[[1.0, 2.0], [3.0, 4.0]]]]))
    assert t.grad[0, 0, 2, 2] == 10.0 and np.count_nonzero(t.grad) == 1


# ----------------------------------------------------------------------------- backends
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@FIXTURE_OK
@given(case=pool_cases())
def test_backend_matches_reference(kernel_backend, dtype, case):
    x = distinct(shape_of(case), case["seed"], dtype)
    y_ref, idx_ref, dx_ref = run_max_pool("numpy", x, _dy_for(x, case), case)
    y, idx, dx = run_max_pool(kernel_backend, x, _dy_for(x, case), case)
    np.testing.assert_array_equal(idx, idx_ref)  # switches exactly
    np.testing.assert_array_equal(y, y_ref)  # a maximum is a copy, exact
    assert y.dtype == dtype and idx.dtype == np.uint8
    assert_matches(dx, dx_ref, dtype, what="dx")


def _dy_for(x, case):
    kernel, stride, padding, ceil_mode = pool_args(case)
    out = pooling.pool_output_size("test", x.shape[2:], kernel, stride, padding, ceil_mode)
    return distinct(x.shape[:2] + out, case["seed"] + 1, x.dtype)


@FIXTURE_OK
@given(case=pool_cases())
def test_backend_breaks_ties_like_the_reference(kernel_backend, case):
    # many equal values (0, 1, 2): every backend must pick the first maximum, like the reference
    x = np.random.default_rng(case["seed"]).integers(0, 3, shape_of(case)).astype(np.float32)
    dy = _dy_for(x, case)
    y_ref, idx_ref, dx_ref = run_max_pool("numpy", x, dy, case)
    y, idx, dx = run_max_pool(kernel_backend, x, dy, case)
    np.testing.assert_array_equal(idx, idx_ref)
    np.testing.assert_array_equal(y, y_ref)
    assert_matches(dx, dx_ref, np.float32, what="dx")


def test_segnet_pool_2x2_odd_sizes(any_backend):
    # the unrolled 2x2/stride-2 path, with odd sizes in ceil mode (a column and a row stick out)
    x = distinct((2, 3, 9, 7), seed=3, dtype=np.float32)
    case = {"kernel": (2, 2), "stride": (2, 2), "padding": (0, 0), "ceil_mode": True}
    dy = distinct((2, 3, 5, 4), seed=4, dtype=np.float32)
    y, idx, dx = run_max_pool(any_backend, x, dy, case)
    assert y.shape == (2, 3, 5, 4)
    assert y[0, 0, 4, 3] == x[0, 0, 8, 6]  # the corner window holds one pixel
    assert idx[0, 0, 4, 3] == 0
    blocks = x[:, :, :8, :6].reshape(2, 3, 4, 2, 3, 2).max(axis=(3, 5))
    np.testing.assert_array_equal(y[:, :, :4, :3], blocks)
    assert np.count_nonzero(dx) == y.size and np.isclose(dx.sum(), dy.sum(), rtol=1e-5)


# ----------------------------------------------------------------------------- conventions
def test_ties_go_to_the_first_maximum_in_row_major_order():
    x = np.array([[[[1.0, 5.0, 2.0, 2.0], [5.0, 4.0, 2.0, 2.0]]]], np.float32)
    for name in ("numpy", "numba"):
        with ms.backend.use(name):
            y, idx = F.max_pool2d(tensor_of(x), 2, return_indices=True)
        np.testing.assert_array_equal(y.numpy(), [[[[5.0, 2.0]]]])
        np.testing.assert_array_equal(idx.numpy(), [[[[1, 0]]]])  # not 2; not 1, 2 or 3


def test_nan_propagates_and_padding_is_never_chosen(cpu_backend):
    x = np.array([[[[1.0, np.nan], [3.0, np.nan]]]])
    neg = -np.full((1, 1, 3, 3), 5.0)  # all negative: zero padding would win if it counted
    with ms.backend.use(cpu_backend):
        y, idx = F.max_pool2d(tensor_of(x), 2, return_indices=True)
        assert np.isnan(y.item()) and idx.numpy().item() == 1  # the first NaN
        y2, idx2 = F.max_pool2d(tensor_of(neg), 3, 1, 1, return_indices=True)
    assert np.all(y2.numpy() == -5.0)
    assert idx2.numpy()[0, 0, 0, 0] == 4  # the first pixel inside x, window position (1, 1)


def test_switches_are_one_byte_per_pooled_value():
    x = tensor_of(distinct((2, 4, 16, 16), 0, np.float32))
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    assert isinstance(idx, F.PoolIndices)
    assert idx.dtype == np.uint8 and idx.nbytes == y.size  # PyTorch: 8 * y.size
    assert idx.in_size == (16, 16) and idx.kernel == (2, 2) and idx.stride == (2, 2)
    _, big = F.max_pool2d(tensor_of(distinct((1, 1, 17, 17), 0)), 17, return_indices=True)
    assert big.dtype == np.int32  # 289 positions do not fit a byte
    _, edge = F.max_pool2d(tensor_of(distinct((1, 1, 16, 16), 0)), 16, return_indices=True)
    assert edge.dtype == np.uint8


@given(case=pool_cases())
def test_flat_indices_round_trip(case):
    kernel, stride, padding, ceil_mode = pool_args(case)
    x = tensor_of(distinct(shape_of(case), case["seed"]))
    _, idx = F.max_pool2d(x, kernel, stride, padding, ceil_mode, return_indices=True)
    flat = F.to_flat_indices(idx)
    assert flat.dtype == np.int64
    # every flat index names the maximum of its window
    h, w = idx.in_size
    plane_values = x.numpy().reshape(x.shape[0], x.shape[1], h * w)
    y = F.max_pool2d(x, kernel, stride, padding, ceil_mode).numpy()
    picked = np.take_along_axis(plane_values, flat.numpy().reshape(*flat.shape[:2], -1), axis=2)
    np.testing.assert_array_equal(picked.reshape(y.shape), y)
    back = F.from_flat_indices(flat, kernel, stride, padding, input_size=(h, w))
    np.testing.assert_array_equal(back.numpy(), idx.numpy())
    assert back.in_size == idx.in_size and back.geometry() == idx.geometry()


def test_from_flat_indices_rejects_an_index_outside_its_window():
    flat = np.zeros((1, 1, 2, 2), np.int64)  # every window claims pixel 0
    with pytest.raises(ValueError, match="does not lie inside its"):
        F.from_flat_indices(flat, 2, input_size=(4, 4))
    with pytest.raises(TypeError, match="integer"):
        F.from_flat_indices(flat.astype(np.float32), 2, input_size=(4, 4))
    with pytest.raises(ValueError, match="input_size"):
        F.from_flat_indices(flat, 2)


@pytest.mark.parametrize(
    "size, kernel, stride, padding, ceil_mode, expected",
    [
        (45, 2, 2, 0, True, 23),  # SegNet/CamVid: 45 rows -> 23 (Caffe's ceil)
        (45, 2, 2, 0, False, 22),
        (3, 2, 2, 1, True, 2),  # a third window would start in the bottom padding: dropped
        (4, 2, 2, 1, True, 3),
        (7, 3, 2, 1, False, 4),
        (2, 3, 1, 1, False, 2),
    ],
)
def test_output_size_rule(size, kernel, stride, padding, ceil_mode, expected):
    pair = (kernel, kernel), (stride, stride), (padding, padding)
    got = pooling.pool_output_size("t", (size, size), *pair, ceil_mode)
    assert got == (expected, expected)


# ----------------------------------------------------------------------------- PyTorch
@given(case=pool_cases())
def test_matches_torch(case):
    torch = pytest.importorskip("torch")
    kernel, stride, padding, ceil_mode = pool_args(case)
    x = distinct(shape_of(case), case["seed"])
    dy = _dy_for(x, case)
    y, idx, dx = run_max_pool("numba", x, dy, case)
    tx = torch.tensor(x, requires_grad=True)
    ty, ti = torch.nn.functional.max_pool2d(
        tx, kernel, stride, padding, ceil_mode=ceil_mode, return_indices=True
    )
    ty.backward(torch.tensor(dy))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    flat = F.to_flat_indices(F.PoolIndices(idx, kernel, stride, padding, x.shape[2:]))
    np.testing.assert_array_equal(flat.numpy(), ti.numpy())
    assert_matches(dx, tx.grad.numpy(), np.float64)


# ----------------------------------------------------------------------------- errors
def test_bad_inputs_raise_clear_errors():
    x = tensor_of(distinct((1, 2, 6, 6), 0, np.float32))
    with pytest.raises(ValueError, match=r"4-D \(N, C, H, W\)"):
        F.max_pool2d(tensor_of(distinct((2, 6, 6), 0)), 2)
    with pytest.raises(ValueError, match="at most half the kernel"):
        F.max_pool2d(x, 2, padding=2)
    with pytest.raises(ValueError, match="larger than the padded input"):
        F.max_pool2d(x, 9, padding=1)
    with pytest.raises(ValueError, match="stride must be >= 1"):
        F.max_pool2d(x, 2, stride=0)
    with pytest.raises(TypeError, match="kernel_size must be an int or a pair"):
        F.max_pool2d(x, 2.5)
    with pytest.raises(TypeError, match="float32 or float64"):
        F.max_pool2d(tensor_of(np.ones((1, 1, 4, 4), np.int64)), 2)
    with pytest.raises(TypeError, match="minisegnet Tensor"):
        F.max_pool2d(np.ones((1, 1, 4, 4)), 2)
    with pytest.raises(ValueError, match="at most half the kernel"):
        nn.MaxPool2d(3, padding=2)  # at construction


def test_module():
    pool = nn.MaxPool2d(2, ceil_mode=True, return_indices=True)
    assert "ceil_mode=True" in repr(pool) and "return_indices=True" in repr(pool)
    y, idx = pool(tensor_of(distinct((1, 1, 5, 5), 0, np.float32)))
    assert y.shape == (1, 1, 3, 3) and idx.in_size == (5, 5)
    assert nn.MaxPool2d(3, 2, 1)(tensor_of(distinct((1, 1, 7, 7), 0))).shape == (1, 1, 4, 4)

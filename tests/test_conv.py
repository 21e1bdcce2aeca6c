"""Convolution and transposed convolution (minisegnet/ops/conv.py, ops/conv_transpose.py,
nn/conv.py): gradients of the reference, every backend against the reference, the adjoint
relation between the two ops, PyTorch's numbers, the 1x1 fast path, chunking, and the errors."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minisegnet as ms
import minisegnet.functional as F
from minisegnet import nn
from minisegnet.gradcheck import gradcheck
from minisegnet.ops import conv as conv_op
from minisegnet.ops import conv_chunks, conv_engine
from tests.conftest import CPU_BACKENDS, require_backend
from tests.helpers import assert_matches, distinct, tensor_of

CUDA_MODULE = "minisegnet.cuda.conv"
importlib.import_module(CUDA_MODULE)  # the kernels under test: missing is a failure, not a skip


# ----------------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    """One convolution geometry. For a transposed convolution ``channels``/``out_channels`` are
    its own input/output channels and ``output_padding`` is used."""

    batch: int
    channels: int
    out_channels: int
    size: tuple
    kernel: tuple
    stride: tuple
    padding: tuple
    dilation: tuple
    groups: int
    bias: bool
    output_padding: tuple = (0, 0)
    seed: int = 0

    def conv_arrays(self, dtype=np.float64):
        return self._arrays((self.out_channels, self.channels // self.groups), dtype)

    def transpose_arrays(self, dtype=np.float64):
        return self._arrays((self.channels, self.out_channels // self.groups), dtype)

    def _arrays(self, weight_channels, dtype):
        """x, w (its first two sizes ``weight_channels``) and b, all distinct values."""
        x = distinct((self.batch, self.channels, *self.size), self.seed, dtype)
        w = distinct((*weight_channels, *self.kernel), self.seed + 1, dtype, low=-1, high=1)
        b = distinct((self.out_channels,), self.seed + 2, dtype) if self.bias else None
        return x, w, b

    def conv(self, x, w, b):
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)

    def transpose(self, x, w, b):
        return F.conv_transpose2d(
            x, w, b, self.stride, self.padding, self.output_padding, self.groups, self.dilation
        )


def _geometry(draw, max_group_channels, max_extra):
    groups = draw(st.sampled_from([1, 1, 2, 3]))
    channels = groups * draw(st.integers(1, max_group_channels))
    out_channels = groups * draw(st.integers(1, max_group_channels))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    return groups, channels, out_channels, kernel, stride, padding, dilation


@st.composite
def conv_cases(draw, max_batch=2, max_group_channels=2, max_extra=3):
    """Valid conv2d geometries: sizes from the smallest that fits the dilated kernel (odd and
    even), 1x1 kernels (the fast path), strides, paddings, dilations and groups."""
    groups, channels, out_channels, kernel, stride, padding, dilation = _geometry(
        draw, max_group_channels, max_extra
    )
    size = []
    for i in (0, 1):
        smallest = max(1, dilation[i] * (kernel[i] - 1) + 1 - 2 * padding[i])
        size.append(draw(st.integers(smallest, smallest + max_extra)))
    if kernel == (1, 1) and draw(st.booleans()):  # make the 1x1 fast path likely
        stride, padding = (1, 1), (0, 0)
    return Case(
        draw(st.integers(1, max_batch)), channels, out_channels, tuple(size), kernel, stride,
        padding, dilation, groups, draw(st.booleans()), seed=draw(st.integers(0, 2**16)),
    )  # fmt: skip


@st.composite
def transpose_cases(draw, max_batch=2, max_group_channels=2, max_extra=3):
    """Valid conv_transpose2d geometries, output_padding < max(stride, dilation) included."""
    groups, channels, out_channels, kernel, stride, padding, dilation = _geometry(
        draw, max_group_channels, max_extra
    )
    output_padding = tuple(draw(st.integers(0, max(stride[i], dilation[i]) - 1)) for i in (0, 1))
    size = []
    for i in (0, 1):  # output size (H-1)*s - 2p + d*(k-1) + op + 1 must be >= 1
        need = 2 * padding[i] - dilation[i] * (kernel[i] - 1) - output_padding[i]
        smallest = max(1, 1 + -(-need // stride[i]))
        size.append(draw(st.integers(smallest, smallest + max_extra)))
    return Case(
        draw(st.integers(1, max_batch)), channels, out_channels, tuple(size), kernel, stride,
        padding, dilation, groups, draw(st.booleans()), output_padding,
        seed=draw(st.integers(0, 2**16)),
    )  # fmt: skip


def run(backend_name, op, case, x, w, b, dy_seed=7):
    """Forward and backward of ``op`` ("conv" or "transpose") on one backend: y, dx, dw, db."""
    with ms.backend.use(backend_name):
        tx, tw = tensor_of(x, True), tensor_of(w, True)
        tb = None if b is None else tensor_of(b, True)
        y = getattr(case, op)(tx, tw, tb)
        dy = distinct(y.shape, dy_seed, x.dtype)
        y.backward(dy)
        return y.numpy(), tx.grad, tw.grad, None if tb is None else tb.grad


def assert_runs_match(actual, expected, dtype, what=""):
    for name, a, e in zip(("y", "dx", "dw", "db"), actual, expected):
        if e is None:
            assert a is None, f"{what}{name}: expected no gradient"
            continue
        assert np.asarray(a).dtype == dtype, f"{what}{name}: dtype {np.asarray(a).dtype}"
        assert_matches(a, e, dtype, what + name)


# ----------------------------------------------------------------------------- gradients
STRATEGIES = {"conv": conv_cases, "transpose": transpose_cases}  # op -> its strategy of cases


@pytest.mark.parametrize("op", sorted(STRATEGIES))
@given(data=st.data())
def test_reference_gradient(op, data):
    case = data.draw(STRATEGIES[op](), "case")
    x, w, b = getattr(case, f"{op}_arrays")()
    inputs = [tensor_of(a, True) for a in (x, w, b) if a is not None]
    function = getattr(case, op)
    with ms.backend.use("numpy"):
        gradcheck(lambda *t: function(t[0], t[1], t[2] if case.bias else None), inputs)


LARGER = [  # directional checks on shapes too big for the full Jacobian
    Case(2, 6, 8, (13, 12), (3, 3), (1, 1), (1, 1), (1, 1), 1, True),
    Case(2, 6, 4, (15, 11), (3, 2), (2, 1), (2, 0), (2, 3), 2, True),
    Case(3, 8, 8, (9, 9), (1, 1), (1, 1), (0, 0), (1, 1), 4, False),
]


@pytest.mark.parametrize("op", ["conv", "transpose"])
@pytest.mark.parametrize("case", LARGER, ids=range(len(LARGER)))
def test_gradient_directional(case, op, cpu_backend):
    x, w, b = case.conv_arrays() if op == "conv" else case.transpose_arrays()
    inputs = [tensor_of(a, True) for a in (x, w, b) if a is not None]
    fn = getattr(case, op)
    with ms.backend.use(cpu_backend):
        gradcheck(
            lambda *t: fn(t[0], t[1], t[2] if case.bias else None), inputs, mode="directional"
        )


# ----------------------------------------------------------------------------- backends
CHUNK_BUDGETS = [1, 300, conv_chunks.CHUNK_BYTES]  # one row per chunk, a few rows/images, default


@pytest.mark.parametrize("op", sorted(STRATEGIES))
@given(data=st.data(), dtype=st.sampled_from([np.float32, np.float64]),
       budget=st.sampled_from(CHUNK_BUDGETS),
       row_shift=st.sampled_from([None, "per_row", "stacked", "auto"]))  # fmt: skip
def test_numba_matches_reference(op, data, dtype, budget, row_shift):
    """Every numba path against the reference: bands (row_shift None), and row shifts where
    they apply, as per-row products, stacked products, or the engine's choice between them."""
    case = data.draw(STRATEGIES[op](max_batch=3, max_extra=5), "case")
    x, w, b = getattr(case, f"{op}_arrays")(dtype)
    expected = run("numpy", op, case, x, w, b)
    shift = conv_engine.row_shift(
        row_shift is not None, min_kh=2, products=row_shift, min_channels=1, any_size=True
    )
    with conv_chunks.chunk_bytes(budget), shift:
        actual = run("numba", op, case, x, w, b)
    assert_runs_match(actual, expected, dtype)


@pytest.mark.parametrize("op", sorted(STRATEGIES))
@given(data=st.data(), dtype=st.sampled_from([np.float32, np.float64]))
def test_cuda_emu_matches_reference(op, data, dtype):
    require_backend("cuda-emu")
    case = data.draw(STRATEGIES[op](), "case")
    x, w, b = getattr(case, f"{op}_arrays")(dtype)
    expected = run("numpy", op, case, x, w, b)
    actual = run("cuda-emu", op, case, x, w, b)
    assert_runs_match(actual, expected, dtype)


@given(conv_cases(max_extra=5), st.sampled_from([np.float32, np.float64]))
def test_im2col_col2im_numba_match_reference_and_are_adjoint(case, dtype):
    x, _, _ = case.conv_arrays(dtype)
    geometry = (case.kernel, case.stride, case.padding, case.dilation)
    cols = conv_op.im2col_ref(x, *geometry)
    assert_matches(conv_op.im2col_numba(x, *geometry), cols, dtype, "im2col")
    c = distinct(cols.shape, case.seed + 3, dtype)
    back = conv_op.col2im_ref(c, case.size, *geometry)
    assert_matches(conv_op.col2im_numba(c, case.size, *geometry), back, dtype, "col2im")
    # col2im is the adjoint of im2col: <im2col(x), c> = <x, col2im(c)>
    lhs = float((cols.astype(np.float64) * c).sum())
    rhs = float((x.astype(np.float64) * back).sum())
    assert abs(lhs - rhs) <= (1e-10 if dtype == np.float64 else 1e-4) * max(1.0, abs(lhs))


def test_im2col_worked_example():
    """The example of the module docstring, by hand."""
    x = np.arange(1.0, 10.0).reshape(1, 1, 3, 3)
    expected = [[1, 2, 4, 5], [2, 3, 5, 6], [4, 5, 7, 8], [5, 6, 8, 9]]
    for im2col in (conv_op.im2col_ref, conv_op.im2col_numba):
        np.testing.assert_array_equal(im2col(x, (2, 2), (1, 1), (0, 0), (1, 1))[0], expected)
    y = F.conv2d(tensor_of(x), tensor_of(np.array([[[[1.0, 0.0], [0.0, -1.0]]]])))
    np.testing.assert_array_equal(y.numpy(), -4 * np.ones((1, 1, 2, 2)))


# ----------------------------------------------------------------------------- adjoint
@given(conv_cases(max_extra=5), st.sampled_from(CPU_BACKENDS))
def test_conv_transpose_is_the_adjoint_of_conv(case, backend_name):
    """<conv2d(x, w), y> = <x, conv_transpose2d(y, w)> with output_padding chosen so that the
    transposed convolution returns x's size."""
    x, w, _ = case.conv_arrays()
    with ms.backend.use(backend_name):
        y_shape = case.conv(tensor_of(x), tensor_of(w), None).shape
        y = distinct(y_shape, case.seed + 5)
        output_padding = tuple(
            case.size[i]
            - ((y_shape[2 + i] - 1) * case.stride[i] - 2 * case.padding[i]
               + case.dilation[i] * (case.kernel[i] - 1) + 1)
            for i in (0, 1)
        )  # fmt: skip
        lhs = float((case.conv(tensor_of(x), tensor_of(w), None).numpy() * y).sum())
        xt = F.conv_transpose2d(
            tensor_of(y), tensor_of(w), None, case.stride, case.padding, output_padding,
            case.groups, case.dilation,
        )  # fmt: skip
        assert xt.shape == x.shape
        rhs = float((x * xt.numpy()).sum())
    assert abs(lhs - rhs) <= 1e-10 * max(1.0, abs(lhs))


# ----------------------------------------------------------------------------- PyTorch
TORCH_CASES = [  # (op, case)
    ("conv", Case(2, 3, 4, (9, 8), (3, 3), (1, 1), (1, 1), (1, 1), 1, True)),
    ("conv", Case(2, 4, 6, (11, 10), (3, 2), (2, 3), (2, 1), (2, 1), 2, True)),
    ("conv", Case(1, 6, 6, (7, 7), (1, 1), (1, 1), (0, 0), (1, 1), 3, False)),
    ("conv", Case(2, 4, 4, (12, 12), (3, 3), (1, 1), (4, 4), (4, 4), 1, True)),  # PSPNet-like
    ("transpose", Case(3, 2, 4, (6, 5), (4, 4), (2, 2), (1, 1), (1, 1), 1, True, (1, 0))),
    ("transpose", Case(1, 4, 2, (5, 6), (3, 3), (1, 2), (2, 0), (2, 2), 2, True, (1, 1))),
    ("transpose", Case(2, 6, 6, (7, 7), (1, 1), (1, 1), (0, 0), (1, 1), 3, True)),
    ("transpose", Case(1, 3, 3, (4, 4), (16, 16), (8, 8), (4, 4), (1, 1), 1, False)),  # upscore8
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("op, case", TORCH_CASES, ids=range(len(TORCH_CASES)))
def test_matches_torch(op, case, dtype):
    torch = pytest.importorskip("torch")
    x, w, b = case.conv_arrays(dtype) if op == "conv" else case.transpose_arrays(dtype)
    y, dx, dw, db = run("numba", op, case, x, w, b)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = None if b is None else torch.tensor(b, requires_grad=True)
    if op == "conv":
        ty = torch.nn.functional.conv2d(
            tx, tw, tb, case.stride, case.padding, case.dilation, case.groups
        )
    else:
        ty = torch.nn.functional.conv_transpose2d(
            tx, tw, tb, case.stride, case.padding, case.output_padding, case.groups,
            case.dilation,
        )  # fmt: skip
    ty.backward(torch.tensor(distinct(tuple(ty.shape), 7, dtype)))
    expected = [ty.detach().numpy(), tx.grad.numpy(), tw.grad.numpy()]
    expected.append(None if tb is None else tb.grad.numpy())
    tolerance = dict(rtol=1e-4, atol=1e-4) if dtype == np.float32 else dict(rtol=1e-9, atol=1e-9)
    for name, a, e in zip(("y", "dx", "dw", "db"), (y, dx, dw, db), expected):
        if e is None:
            assert a is None
            continue
        scale = max(1.0, float(np.abs(e).max()))
        np.testing.assert_allclose(a / scale, e / scale, err_msg=name, **tolerance)


# ----------------------------------------------------------------------------- fast paths
@pytest.mark.parametrize(
    "batch, size, groups",
    [(2, (5, 7), 1), (3, (40, 40), 2), (5, (3, 3), 4)],  # 1600 positions: one image per GEMM
)
def test_pointwise_fast_path_matches_general_path(cpu_backend, batch, size, groups, monkeypatch):
    case = Case(batch, 8, 4, size, (1, 1), (1, 1), (0, 0), (1, 1), groups, True)
    x, w, b = case.conv_arrays()
    fast = run(cpu_backend, "conv", case, x, w, b)
    fast_t = run(cpu_backend, "transpose", case, *case.transpose_arrays())
    monkeypatch.setattr(conv_chunks, "POINTWISE_FAST_PATH", False)
    general = run(cpu_backend, "conv", case, x, w, b)
    general_t = run(cpu_backend, "transpose", case, *case.transpose_arrays())
    assert_runs_match(fast, general, np.float64)
    assert_runs_match(fast_t, general_t, np.float64)


CHUNK_CASES = [
    Case(3, 4, 5, (37, 36), (3, 3), (1, 1), (1, 1), (1, 1), 1, True),  # 1332 positions: bands
    Case(2, 3, 4, (29, 31), (7, 5), (1, 2), (3, 2), (2, 1), 1, True),  # row shifts, dilated
    Case(5, 4, 6, (9, 10), (3, 3), (2, 1), (1, 2), (2, 1), 2, True),  # small: grouped images
    Case(4, 3, 3, (33, 33), (1, 1), (1, 1), (0, 0), (1, 1), 3, True),  # 1x1 fast path
]


@pytest.mark.parametrize("budget", [1, 5000, 100_000])
@pytest.mark.parametrize("case", CHUNK_CASES, ids=range(len(CHUNK_CASES)))
def test_chunking_gives_the_unchunked_result(case, budget):
    """Chunks change only the order of float64 sums (dw, and GEMM blocking): agreement to 1e-12
    relative with one chunk holding the whole batch."""
    for op in ("conv", "transpose"):
        x, w, b = case.conv_arrays() if op == "conv" else case.transpose_arrays()
        with conv_chunks.chunk_bytes(2**40):
            whole = run("numba", op, case, x, w, b)
        with conv_chunks.chunk_bytes(budget):
            chunked = run("numba", op, case, x, w, b)
        assert_runs_match(chunked, whole, np.float64, what=f"{op} ")


@pytest.mark.parametrize(
    "n, ho, wo, rows", [(8, 128, 128, 576), (8, 14, 14, 4608), (32, 1, 1, 25088), (3, 7, 9, 27)]
)
def test_column_buffer_does_not_grow_with_the_batch(n, ho, wo, rows):
    """Chunks cover every output row of every image once; their columns fit the budget, for a
    batch of n as for a batch of 16n."""
    for batch in (n, 16 * n):
        chunks = conv_engine._chunks(batch, ho, rows, wo, 4)
        covered = sorted(
            (n0 + b, oy0 + r) for n0, nb, oy0, nr in chunks for b in range(nb) for r in range(nr)
        )
        assert covered == [(i, r) for i in range(batch) for r in range(ho)]
        for _, nb, _, nr in chunks:
            assert nb * nr * wo * rows * 4 <= conv_chunks.CHUNK_BYTES
            assert nb == 1 or ho * wo < 1024  # large maps: one image (or band) per GEMM


def test_output_padding_at_least_stride_with_dilation():
    """stride 1, dilation 2: output_padding 1 >= stride is allowed (PyTorch's rule) and adds a
    row and a column that only the bias reaches; the zero-extended input path handles it."""
    case = Case(2, 3, 2, (4, 5), (3, 3), (1, 1), (0, 0), (2, 2), 1, True, output_padding=(1, 1))
    x, w, b = case.transpose_arrays()
    expected = run("numpy", "transpose", case, x, w, b)
    assert expected[0].shape == (2, 2, 9, 10)
    assert_runs_match(run("numba", "transpose", case, x, w, b), expected, np.float64)
    inputs = [tensor_of(a, True) for a in (x, w, b)]
    with ms.backend.use("numpy"):
        gradcheck(lambda *t: case.transpose(*t), inputs)


def test_float32_stays_float32_and_grads_only_where_needed():
    x = tensor_of(distinct((2, 3, 6, 6), 0, np.float32))
    w = tensor_of(distinct((4, 3, 3, 3), 1, np.float32), requires_grad=True)
    y = F.conv2d(x, w, None, padding=1)
    assert y.dtype == np.float32 and y.shape == (2, 4, 6, 6)
    y.backward(np.ones(y.shape, np.float32))
    assert x.grad is None and w.grad.dtype == np.float32


# ----------------------------------------------------------------------------- layers
def test_conv_layers_shapes_parameters_and_init():
    conv = nn.Conv2d(6, 8, 3, stride=2, padding=1, groups=2, seed=0)
    assert conv.weight.shape == (8, 3, 3, 3) and conv.bias.shape == (8,)
    assert [name for name, _ in conv.named_parameters()] == ["weight", "bias"]
    assert np.all(conv.bias.numpy() == 0) and conv.weight.dtype == np.float32
    x = tensor_of(distinct((2, 6, 9, 9), 0, np.float32))
    assert conv(x).shape == (2, 8, 5, 5)
    big = nn.Conv2d(64, 64, 3, seed=1)
    std = float(big.weight.numpy().std())
    assert abs(std - np.sqrt(2 / (64 * 9))) < 0.03 * np.sqrt(2 / (64 * 9))  # He: 2 / fan_in
    again = nn.Conv2d(6, 8, 3, stride=2, padding=1, groups=2, seed=0)
    np.testing.assert_array_equal(again.weight.numpy(), conv.weight.numpy())
    assert "Conv2d(6, 8, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), groups=2)" == repr(conv)

    up = nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1, groups=2, bias=False, seed=0)
    assert up.weight.shape == (4, 3, 4, 4) and up.bias is None
    xt = tensor_of(distinct((1, 4, 5, 5), 0, np.float32))
    assert up(xt).shape == (1, 6, 10, 10)
    assert up(xt, output_size=(11, 11)).shape == (1, 6, 11, 11)
    with pytest.raises(ValueError, match="output_size"):
        up(xt, output_size=(13, 11))
    with pytest.raises(ValueError, match="output_padding"):
        nn.ConvTranspose2d(4, 4, 3, stride=2, output_padding=2)
    with pytest.raises(ValueError, match="in_channels"):
        nn.Conv2d(5, 4, 3, groups=2)
    with pytest.raises(ValueError, match="kernel_size"):
        nn.Conv2d(4, 4, 0)


# ----------------------------------------------------------------------------- errors
def _t(shape, dtype=np.float32):
    return tensor_of(np.ones(shape, dtype))


CONV_ERRORS = [  # (kwargs for conv2d, exception, words the message must contain)
    (dict(input=_t((3, 8, 8)), weight=_t((4, 3, 3, 3))), ValueError, "input must be 4-D"),
    (dict(weight=_t((4, 3, 3))), ValueError, "weight must be 4-D"),
    (dict(input=_t((1, 4, 8, 8))), ValueError, "input has 4 channels"),
    (
        dict(input=_t((1, 3, 8, 8)), weight=_t((4, 1, 3, 3)), groups=2),
        ValueError,
        "divisible by groups",
    ),
    (dict(input=_t((1, 4, 8, 8)), weight=_t((3, 2, 3, 3)), groups=2), ValueError, "out_channels"),
    (dict(input=_t((1, 3, 2, 2))), ValueError, "larger than the padded input"),
    (dict(input=_t((1, 3, 4, 4)), dilation=2), ValueError, "dilated kernel"),
    (dict(bias=_t((5,))), ValueError, "bias must have shape (4,)"),
    (dict(padding=-1), ValueError, "padding must be >= 0"),
    (dict(stride=0), ValueError, "stride must be >= 1"),
    (dict(dilation=(1, 0)), ValueError, "dilation must be >= 1"),
    (dict(groups=0), ValueError, "groups"),
    (dict(stride=1.5), TypeError, "stride must be an int or a pair"),
    (dict(padding=(1, 1, 1)), TypeError, "padding must be an int or a pair"),
    (dict(weight=_t((4, 3, 3, 3), np.float64)), TypeError, "weight dtype float64 differs"),
    (dict(bias=_t((4,), np.float64)), TypeError, "bias dtype"),
    (dict(input=tensor_of(np.ones((1, 3, 8, 8), np.int64))), TypeError, "float32 or float64"),
    (dict(weight=np.ones((4, 3, 3, 3))), TypeError, "weight must be a minisegnet Tensor"),
    (dict(bias=np.ones(4)), TypeError, "bias must be a minisegnet Tensor"),
]


TRANSPOSE_ERRORS = [
    (dict(input=_t((3, 8, 8))), ValueError, "input must be 4-D"),
    (dict(input=_t((1, 4, 8, 8))), ValueError, "input has 4 channels"),
    (
        dict(input=_t((1, 3, 8, 8)), weight=_t((3, 2, 3, 3)), groups=2),
        ValueError,
        "divisible by groups",
    ),
    (dict(output_padding=2, stride=2), ValueError, "output_padding must satisfy"),
    (dict(output_padding=1), ValueError, "output_padding must satisfy"),
    (dict(input=_t((1, 3, 1, 1)), padding=2), ValueError, "output size"),
    (dict(bias=_t((3,))), ValueError, "bias must have shape (2,)"),
    (dict(padding=-1), ValueError, "padding must be >= 0"),
    (dict(stride=0), ValueError, "stride must be >= 1"),
    (dict(weight=_t((3, 2, 3, 3), np.float64)), TypeError, "weight dtype"),
]


ERRORS = [("conv2d", *case) for case in CONV_ERRORS] + [
    ("conv_transpose2d", *case) for case in TRANSPOSE_ERRORS
]
WEIGHT_SHAPES = {"conv2d": (4, 3, 3, 3), "conv_transpose2d": (3, 2, 3, 3)}  # for a 3-channel input


@pytest.mark.parametrize("op, kwargs, error, words", ERRORS)
def test_errors(op, kwargs, error, words):
    args = dict(input=_t((1, 3, 8, 8)), weight=_t(WEIGHT_SHAPES[op]))
    args.update(kwargs)
    with pytest.raises(error, match=_escape(words)):
        getattr(F, op)(**args)


def _escape(words):
    import re

    return re.escape(words)


def test_row_shift_path_is_taken_where_it_applies():
    """Vertical stride 1, kh >= ROW_SHIFT_MIN_KH, ROW_SHIFT_MIN_CHANNELS input channels, one
    group, not 1x1, and for a kernel of at most ROW_SHIFT_SIZE_RULE_TAPS taps an output of at
    least ROW_SHIFT_MIN_PIXELS per image or columns over SMALL_IMAGE_BANDS_MAX_BYTES: the
    row-shift path."""
    k, c = max(2, conv_engine.ROW_SHIFT_MIN_KH), conv_engine.ROW_SHIFT_MIN_CHANNELS

    def uses(kernel, stride, padding, groups, channels, out_size, n=4, itemsize=4):
        return conv_engine._uses_row_shift(
            kernel, stride, padding, groups, channels, out_size, n, itemsize
        )

    big = (64, 64)
    assert uses((k, 3), (1, 2), (1, 1), 1, c, big)
    assert not uses((k, 3), (1, 2), (1, 1), 1, c - 1, big)  # an RGB-like input: bands
    assert not uses((k, 3), (2, 1), (1, 1), 1, c, big)  # vertical stride 2
    assert not uses((k, 3), (1, 1), (1, 1), 2, c, big)  # groups
    assert not uses((1, 1), (1, 1), (0, 0), 1, c, big)  # pointwise
    with conv_engine.row_shift(False):
        assert not uses((k, 3), (1, 1), (1, 1), 1, c, big)
    # small images, small kernels: one product over several images' columns on the band path
    least = conv_engine.ROW_SHIFT_MIN_PIXELS
    assert conv_engine.ROW_SHIFT_SIZE_RULE_TAPS >= 16 and least > 1
    assert uses((3, 3), (1, 1), (1, 1), 1, c, (least, 1))
    assert not uses((3, 3), (1, 1), (1, 1), 1, c, (least - 1, 1))
    assert not uses((4, 4), (1, 1), (0, 0), 1, 64, (2, 2))  # FCN's fc6 on a small image
    assert uses((7, 7), (1, 1), (3, 3), 1, c, (8, 8))  # larger kernels: row shifts
    # ... unless the batch's columns would outgrow SMALL_IMAGE_BANDS_MAX_BYTES (PSPNet's head)
    cap = conv_engine.SMALL_IMAGE_BANDS_MAX_BYTES
    fits = cap // (c * 9 * 64 * 4)  # images whose 3x3 columns (c channels, 8x8, float32) fit
    assert not uses((3, 3), (1, 1), (1, 1), 1, c, (8, 8), n=fits, itemsize=4)
    assert uses((3, 3), (1, 1), (1, 1), 1, c, (8, 8), n=fits + 1, itemsize=4)
    assert uses((3, 3), (1, 1), (1, 1), 1, 512, (8, 8), n=4, itemsize=4)
    with conv_engine.row_shift(True, any_size=True):
        assert uses((3, 3), (1, 1), (1, 1), 1, c, (1, 1))
    assert not uses((3, 3), (1, 1), (1, 1), 1, c, (1, 1))  # the threshold is back


def test_small_images_take_the_band_path(monkeypatch):
    """A 3x3 convolution on 10x10 images runs its three products on the band path, not the
    row shifts (conv_row_stack is never called), and equals the row-shift result."""
    from minisegnet.ops import conv_row_stack, conv_winograd

    rng = np.random.default_rng(3)
    x = rng.standard_normal((4, 16, 10, 10)).astype(np.float32)
    w = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    one, pad = (1, 1), (1, 1)
    with conv_engine.row_shift(True, any_size=True):
        expected = conv_engine.conv2d_forward(x, w, one, pad, one, 1, None)
        expected_dx = conv_engine.conv2d_data_grad(expected, w, (10, 10), one, pad, one, 1)
        expected_dw = conv_engine.conv2d_weight_grad(x, expected, (3, 3), one, pad, one, 1)

    def refuse(*args, **kwargs):
        raise AssertionError("the row-shift path ran on a small image")

    for name in ("conv2d_forward", "conv2d_data_grad", "conv2d_weight_grad"):
        monkeypatch.setattr(conv_row_stack, name, refuse)
    with conv_winograd.winograd(False):
        y = conv_engine.conv2d_forward(x, w, one, pad, one, 1, None)
        dx = conv_engine.conv2d_data_grad(y, w, (10, 10), one, pad, one, 1)
        dw = conv_engine.conv2d_weight_grad(x, y, (3, 3), one, pad, one, 1)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(dw, expected_dw, rtol=1e-4, atol=1e-2)


@pytest.mark.parametrize("budget", [1, 700, 5000, conv_chunks.CHUNK_BYTES])
def test_stacked_rows_stream_across_image_boundaries(budget):
    """conv_row_stack walks the images' padded rows as one strip in blocks of nb rows (at least
    dilation*(kh-1), the two-block reach of the shifted sum); whatever nb the budget gives, and
    however blocks straddle images, the three products equal the reference's."""
    from minisegnet.ops import conv_row_stack

    rng = np.random.default_rng(7)
    x = rng.standard_normal((3, 4, 11, 9))
    w = rng.standard_normal((5, 4, 4, 3))
    b = rng.standard_normal(5)
    stride, padding, dilation = (1, 2), (2, 1), (2, 1)
    expected = conv_op._gemm_by_images(x, w, stride, padding, dilation, 1, b)
    dy = rng.standard_normal(expected.shape)
    expected_dw = conv_op._weight_grad_by_images(x, dy, (4, 3), stride, padding, dilation, 1)
    dy1 = rng.standard_normal((3, 5, 11 + 4 - 6, 9))  # a stride-1 output gradient
    expected_dx = conv_op._data_grad_by_images(dy1, w, (11, 9), (1, 1), padding, dilation, 1)
    with conv_chunks.chunk_bytes(budget):
        y = conv_row_stack.conv2d_forward(x, w, stride, padding, dilation, b)
        dw = conv_row_stack.conv2d_weight_grad(x, dy, (4, 3), stride, padding, dilation)
        dx = conv_row_stack.conv2d_data_grad(dy1, w, (11, 9), (1, 1), padding, dilation)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, expected_dw, rtol=1e-12, atol=1e-11)
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-12, atol=1e-12)


def test_row_products_choice():
    """The "auto" choice stacks the forward and data-gradient products always, the weight
    gradient's from STACKED_WEIGHT_GRAD_MIN_DEPTH deep width-columns on (C*kw); "per_row" and
    "stacked" force one form."""
    from minisegnet.ops import conv_row_shift, conv_row_stack

    pick, deep = conv_engine._row_module, conv_engine.STACKED_WEIGHT_GRAD_MIN_DEPTH
    with conv_engine.row_shift(True, products="auto"):
        assert pick("forward", 8, (3, 3)) is conv_row_stack
        assert pick("data_grad", 8, (3, 3)) is conv_row_stack
        assert pick("weight_grad", deep // 3 - 1, (3, 3)) is conv_row_shift
        assert pick("weight_grad", deep // 3, (5, 3)) is conv_row_stack
    with conv_engine.row_shift(True, products="per_row"):
        assert pick("forward", 64, (7, 7)) is conv_row_shift
    with conv_engine.row_shift(True, products="stacked"):
        assert pick("weight_grad", 8, (3, 3)) is conv_row_stack
    with pytest.raises(ValueError, match="products must be 'per_row', 'stacked' or 'auto'"):
        with conv_engine.row_shift(True, products="fast"):
            pass


@pytest.mark.parametrize(
    "kernel, stride, padding, dilation",
    [
        ((16, 16), (8, 8), (0, 0), (1, 1)),
        ((3, 5), (1, 2), (2, 1), (2, 1)),
        ((4, 4), (2, 2), (1, 1), (1, 1)),
    ],
)
def test_depthwise_path_matches_the_reference(kernel, stride, padding, dilation):
    """groups = C = O (FCN's fixed bilinear upsamplers run transposed): conv_depthwise's direct
    loops give the reference's forward, data gradient (the transposed convolution) and weight
    gradient."""
    from minisegnet.ops import conv_depthwise

    rng = np.random.default_rng(3)
    C = 5
    x = rng.standard_normal((2, C, 19, 17))
    w = rng.standard_normal((C, 1, *kernel))
    b = rng.standard_normal(C)
    args = (stride, padding, dilation, C)
    expected = conv_op._gemm_by_images(x, w, *args, b)
    dy = rng.standard_normal(expected.shape)
    expected_dx = conv_op._data_grad_by_images(dy, w, (19, 17), *args)
    expected_dw = conv_op._weight_grad_by_images(x, dy, kernel, *args)
    assert conv_depthwise.applies(C, C, C) and not conv_depthwise.applies(C, 2 * C, C)
    with ms.backend.use("numba"):
        y = conv_op.conv2d_gemm(x, w, *args, b)
        dx, dw = conv_op.conv2d_grads(dy, x, w, *args)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dx, expected_dx, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, expected_dw, rtol=1e-12, atol=1e-11)


@pytest.mark.parametrize(
    "kernel, stride, padding, out_size",
    [((4, 4), (2, 2), (0, 0), (12, 14)), ((4, 4), (2, 2), (1, 1), (11, 13)),
     ((6, 4), (3, 2), (2, 1), (12, 8)), ((4, 2), (2, 2), (0, 0), (9, 7))],
)  # fmt: skip
def test_stride_phases_data_gradient_matches_the_reference(kernel, stride, padding, out_size):
    """conv_stride_phases: a strided data gradient (a transposed convolution's forward) as one
    stride-1 product for all stride phases; odd output sizes (output_padding) included."""
    from minisegnet.ops import conv_stride_phases

    rng = np.random.default_rng(5)
    O, C = 3, 4
    kh, kw = kernel
    out = [(out_size[i] + 2 * padding[i] - kernel[i]) // stride[i] + 1 for i in (0, 1)]
    dy = rng.standard_normal((2, O, *out))
    w = rng.standard_normal((O, C, kh, kw))
    args = (stride, padding, (1, 1), 1)
    expected = conv_op._data_grad_by_images(dy, w, out_size, *args)
    assert conv_stride_phases.applies(kernel, stride, (1, 1), 1)
    for budget in (1, conv_chunks.CHUNK_BYTES):
        with conv_chunks.chunk_bytes(budget), ms.backend.use("numba"):
            dx = conv_op.conv2d_data_grad(dy, w, out_size, *args)
        np.testing.assert_allclose(dx, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize(
    "stride, padding, groups", [((2, 2), (0, 0), 1), ((1, 1), (1, 1), 1), ((2, 1), (1, 0), 2)]
)
def test_forward_and_weight_grad_in_one_pass(backend, stride, padding, groups):
    """conv2d_forward_and_weight_grad (a transposed convolution's backward) equals the forward
    and the weight gradient computed apart, on the band path's shared im2col and elsewhere."""
    rng = np.random.default_rng(9)
    x = rng.standard_normal((3, 4, 11, 10))
    w = rng.standard_normal((6, 4 // groups, 4, 3))
    args = (stride, padding, (1, 1), groups)
    expected_y = conv_op._gemm_by_images(x, w, *args, None)
    g = rng.standard_normal(expected_y.shape)
    expected_dw = conv_op._weight_grad_by_images(x, g, (4, 3), *args)
    with conv_chunks.chunk_bytes(500), ms.backend.use(backend):
        y, dw = conv_op.conv2d_forward_and_weight_grad(x, w, g, *args)
    np.testing.assert_allclose(y, expected_y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dw, expected_dw, rtol=1e-12, atol=1e-11)

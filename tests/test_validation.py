"""Issue 18's Python-API cases, one regression test each: max_unpool2d's switches checked before
any kernel (the Numba backward used to read out of bounds), class weights, empty batches (N = 0)
as in PyTorch, NumPy integers wherever Python ints go, and a network's own minimum input size.
The random version of all this is ``test_validation_fuzz.py``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import minisegnet as ms
import minisegnet.functional as F
from minisegnet import models, nn
from tests.conftest import backend_or_skip

ROOT = Path(__file__).resolve().parents[1]


def _x(*shape, dtype=np.float32, seed=0, grad=False):
    data = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    return ms.tensor(data, requires_grad=grad, dtype=dtype)


# ----------------------------------------------------------------------------- max_unpool2d
def test_the_issue_snippet_raises_on_every_backend_without_crashing():
    """The issue's reproduction, in a subprocess (it used to segfault the Numba backward)."""
    script = textwrap.dedent(
        """
        import numpy as np, minisegnet as ms, minisegnet.functional as F
        for name in ("numpy", "numba", "cuda-emu"):
            if ms.backend.get(name).unavailable_reason():
                continue
            with ms.backend.use(name):
                x = ms.tensor(np.random.rand(2, 3, 8, 8).astype(np.float32))
                y, i = F.max_pool2d(x, 2, return_indices=True)
                i.data[0, 0, 0, 0] = 200
                try:
                    u = F.max_unpool2d(ms.tensor(y.data.copy(), requires_grad=True), i, 2)
                    u.sum().backward()
                    print(name, "accepted")
                except ValueError as error:
                    print(name, "refused:", error)
        """
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines and all("refused: max_unpool2d: indices hold the switch 200" in s for s in lines)
    assert "numba refused" in proc.stdout


def _pooled(kernel=2, stride=None, padding=0, ceil_mode=False, size=7):
    x = _x(2, 3, size, size)
    return F.max_pool2d(x, kernel, stride, padding, ceil_mode=ceil_mode, return_indices=True)


def _set(value, at=(0, 0, 0, 0)):
    def edit(indices):
        indices.data[at] = value
        return indices

    return edit


def _as(dtype, value=None):
    def edit(indices):
        data = indices.data.astype(dtype)
        if value is not None:
            data[...] = value
        return F.PoolIndices(data, indices.kernel, indices.stride, indices.padding, indices.in_size)

    return edit


BAD_SWITCHES = {
    # name: (edit, geometry, error type, words the message must hold)
    "value 200 in a 2x2 window": (_set(200), {}, ValueError, "switch 200"),
    "value 4 in a 2x2 window": (_set(4), {}, ValueError, "0 <= k < 4"),
    "int8 -1": (_as(np.int8, -1), {}, TypeError, "dtype int8"),
    "float switches": (_as(np.float32), {}, TypeError, "dtype float32"),
    "int64 switches": (_as(np.int64), {}, TypeError, "uint8"),
    "a switch into the top padding": (_set(0), dict(kernel=3, stride=2, padding=1), ValueError,
                                      "row -1"),
    "a switch past the bottom edge": (_set(8, (1, 2, 3, 3)), dict(kernel=3, stride=2, padding=1),
                                      ValueError, "row 7"),
    "a ceil-mode window's switch past the edge": (
        _set(3, (1, 2, 3, 3)), dict(ceil_mode=True, output_size=(7, 7)), ValueError, "row 7"
    ),
    "a list instead of an array": (
        lambda i: F.PoolIndices(i.data.tolist(), i.kernel, i.stride, i.padding, i.in_size), {},
        TypeError, "indices.data",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_SWITCHES))
def test_max_unpool2d_refuses_switches_a_kernel_would_misuse(any_backend, case):
    edit, geometry, error, words = BAD_SWITCHES[case]
    geometry = dict(geometry)
    output_size = geometry.pop("output_size", None)
    with backend_or_skip(any_backend):
        y, indices = _pooled(**geometry)
        indices = edit(indices)
        kernel, stride = geometry.get("kernel", 2), geometry.get("stride")
        source = ms.tensor(y.data.copy(), requires_grad=True)
        with pytest.raises(error, match="max_unpool2d") as caught:
            F.max_unpool2d(source, indices, kernel, stride, geometry.get("padding", 0),
                           output_size=output_size)  # fmt: skip
        assert "indices" in str(caught.value) and words in str(caught.value)


def test_max_unpool2d_still_takes_every_switch_max_pool2d_makes(any_backend):
    """The checks pass real switches: overlapping windows, padding, ceil mode, odd sizes."""
    with backend_or_skip(any_backend):
        for kernel, stride, padding, ceil_mode in [(2, 2, 0, True), (3, 2, 1, False),
                                                   (3, 2, 1, True), (3, 1, 1, False)]:  # fmt: skip
            x = _x(2, 3, 7, 5)
            y, indices = F.max_pool2d(x, kernel, stride, padding, ceil_mode, return_indices=True)
            source = ms.tensor(y.data.copy(), requires_grad=True)
            out = F.max_unpool2d(source, indices, kernel, stride, padding, output_size=(7, 5))
            out.sum().backward()
            assert out.shape == (2, 3, 7, 5) and source.grad.shape == y.shape


def test_max_unpool2d_flat_index_errors_name_max_unpool2d():
    y, indices = _pooled()
    flat = indices.to_flat().data.copy()
    flat[0, 0, 0, 0] = -1
    with pytest.raises(ValueError, match="^max_unpool2d: index -1"):
        F.max_unpool2d(y, flat, 2, output_size=(7, 7))


# ----------------------------------------------------------------------------- cross_entropy
@pytest.mark.parametrize(
    "weight, error, words",
    [
        ([-1.0, 1.0, 1.0], ValueError, "-1.0 for class 0"),
        ([1.0, np.nan, 1.0], ValueError, "nan for class 1"),
        ([1.0, 1.0, np.inf], ValueError, "inf for class 2"),
        ([1.0, 1.0], ValueError, "shape (3,)"),
        (["a", "b", "c"], TypeError, "weight must be numbers"),
        ([True, False, True], TypeError, "weight must be numbers"),
    ],
)
def test_cross_entropy_refuses_bad_class_weights(any_backend, weight, error, words):
    with backend_or_skip(any_backend):
        logits = _x(2, 3, 4, 4, grad=True)
        target = np.zeros((2, 4, 4), np.int64)
        with pytest.raises(error, match="^cross_entropy: weight") as caught:
            F.cross_entropy(logits, target, weight=weight)
        assert words in str(caught.value)


def test_cross_entropy_takes_zero_weights_and_numpy_integer_weights():
    logits, target = _x(2, 3, grad=True), np.array([0, 2])
    assert float(F.cross_entropy(logits, target, weight=[0.0, 0.0, 0.0]).item()) == 0.0
    loss = F.cross_entropy(logits, target, weight=np.array([1, 2, 3]), ignore_index=np.int64(9))
    assert np.isfinite(loss.item())


# ----------------------------------------------------------------------------- empty batches
def _empty_calls():
    """op -> (build inputs of batch size 0, call) as minisegnet and torch spell them."""
    w = np.random.default_rng(1).standard_normal((4, 3, 3, 3)).astype(np.float32)
    wt = np.random.default_rng(2).standard_normal((3, 2, 4, 4)).astype(np.float32)
    return {
        "conv2d": lambda f, x, p: f.conv2d(x, p(w), p(np.ones(4, np.float32)), padding=1),
        "conv2d dilated": lambda f, x, p: f.conv2d(x, p(w), None, dilation=2),
        "conv2d 1x1": lambda f, x, p: f.conv2d(x, p(w[:, :, :1, :1])),
        "conv_transpose2d": lambda f, x, p: f.conv_transpose2d(x, p(wt), None, 2, 1),
        "max_pool2d": lambda f, x, p: f.max_pool2d(x, 3, 2, 1),
        "avg_pool2d": lambda f, x, p: f.avg_pool2d(x, 2),
        "adaptive_avg_pool2d": lambda f, x, p: f.adaptive_avg_pool2d(x, 3),
        "interpolate bilinear": lambda f, x, p: f.interpolate(x, size=(5, 7), mode="bilinear",
                                                              align_corners=False),
        "interpolate nearest": lambda f, x, p: f.interpolate(x, scale_factor=2, mode="nearest"),
        "batch_norm training": lambda f, x, p: f.batch_norm(
            x, p(np.zeros(3, np.float32)), p(np.ones(3, np.float32)), p(np.ones(3, np.float32)),
            p(np.zeros(3, np.float32)), training=True),
        "batch_norm eval": lambda f, x, p: f.batch_norm(
            x, p(np.zeros(3, np.float32)), p(np.ones(3, np.float32)), training=False),
        "local_response_norm": lambda f, x, p: f.local_response_norm(x, 3),
        "softmax": lambda f, x, p: f.softmax(x, dim=1),
        "log_softmax": lambda f, x, p: f.log_softmax(x, dim=1),
        "relu": lambda f, x, p: f.relu(x),
        "cross_entropy none": lambda f, x, p: f.cross_entropy(
            x, p(np.zeros((0, 8, 8), np.int64)), reduction="none"),
        "cross_entropy sum": lambda f, x, p: f.cross_entropy(
            x, p(np.zeros((0, 8, 8), np.int64)), reduction="sum"),
    }  # fmt: skip


@pytest.mark.parametrize("name", sorted(_empty_calls()))
def test_an_empty_batch_gives_what_pytorch_gives(any_backend, name):
    torch = pytest.importorskip("torch")
    call = _empty_calls()[name]
    data = np.zeros((0, 3, 8, 8), np.float32)
    tx = torch.tensor(data, requires_grad=True)
    expected = call(torch.nn.functional, tx, torch.tensor)
    expected.sum().backward()
    with backend_or_skip(any_backend):
        xp = ms.backend.current().xp
        x = ms.tensor(xp.asarray(data), requires_grad=True)
        y = call(F, x, lambda a: ms.tensor(xp.asarray(a), dtype=a.dtype))
        y.sum().backward()
        assert y.shape == tuple(expected.shape)
        np.testing.assert_array_equal(np.asarray(y.numpy()), expected.detach().numpy())
        assert x.grad.shape == tuple(tx.grad.shape)


def test_an_empty_batch_leaves_running_statistics_and_gives_zero_parameter_gradients(any_backend):
    with backend_or_skip(any_backend):
        layer = nn.BatchNorm2d(3)
        layer.running_mean[...] = 0.5
        x = ms.tensor(np.zeros((0, 3, 4, 4), np.float32), requires_grad=True)
        layer(x).sum().backward()
        assert np.all(np.asarray(layer.running_mean) == 0.5)
        assert np.all(np.asarray(layer.running_var) == 1.0)
        assert np.all(np.asarray(layer.weight.grad) == 0)
        assert np.all(np.asarray(layer.bias.grad) == 0)
        conv = nn.Conv2d(3, 2, 3, padding=1)
        conv(x).sum().backward()
        assert np.all(np.asarray(conv.weight.grad) == 0) and np.all(np.asarray(conv.bias.grad) == 0)
        # both gradients of a transposed convolution come from one kernel-table row
        # (conv2d_forward_and_weight_grad), whose chunk planner needs N >= 1
        for stride in (1, 2):
            up = nn.ConvTranspose2d(3, 2, 4, stride=stride, padding=1)
            up(x).sum().backward()
            assert np.all(np.asarray(up.weight.grad) == 0) and np.all(np.asarray(up.bias.grad) == 0)


def test_the_mean_cross_entropy_of_an_empty_batch_is_0_like_a_fully_ignored_one(any_backend):
    """PyTorch gives NaN (0/0); this project's documented choice for 0/0 is 0, zero gradient."""
    with backend_or_skip(any_backend):
        logits = ms.tensor(np.zeros((0, 3, 4, 4), np.float32), requires_grad=True)
        loss = F.cross_entropy(logits, np.zeros((0, 4, 4), np.int64))
        loss.backward()
        assert float(loss.item()) == 0.0 and logits.grad.shape == (0, 3, 4, 4)


# ----------------------------------------------------------------------------- NumPy integers
i64 = np.int64
NUMPY_INTEGER_CALLS = {
    "conv2d": lambda x: F.conv2d(x, _x(3, 4, 3, 3), None, i64(2), i64(1), i64(1), i64(1)),
    "conv2d pair": lambda x: F.conv2d(x, _x(3, 4, 3, 3), None, (i64(2), np.int32(1)), [i64(1)] * 2),
    "conv_transpose2d": lambda x: F.conv_transpose2d(x, _x(4, 3, 3, 3), None, i64(2), i64(1),
                                                     i64(1)),
    "max_pool2d": lambda x: F.max_pool2d(x, i64(2), i64(2), i64(0)),
    "max_unpool2d": lambda x: F.max_unpool2d(*F.max_pool2d(x, 2, return_indices=True), i64(2),
                                             output_size=(i64(8), i64(8))),
    "avg_pool2d": lambda x: F.avg_pool2d(x, i64(3), i64(2), i64(1)),
    "adaptive_avg_pool2d": lambda x: F.adaptive_avg_pool2d(x, (i64(3), None)),
    "interpolate size": lambda x: F.interpolate(x, size=i64(5)),
    "interpolate scale": lambda x: F.interpolate(x, scale_factor=np.float32(1.5)),
    "local_response_norm": lambda x: F.local_response_norm(x, i64(3), np.float32(1e-4)),
    "softmax": lambda x: F.softmax(x, dim=i64(1)),
    "dropout": lambda x: F.dropout(x, np.float32(0.5), seed=i64(3)),
    "cross_entropy": lambda x: F.cross_entropy(x, np.zeros((2, 8, 8), np.int64),
                                               ignore_index=i64(255)),
    "Tensor.sum": lambda x: x.sum(axis=i64(1)),
    "nn.Conv2d": lambda x: nn.Conv2d(i64(4), i64(3), i64(3), i64(1), i64(1))(x),
    "nn.ConvTranspose2d": lambda x: nn.ConvTranspose2d(i64(4), i64(3), i64(3), i64(2))(x),
    "nn.MaxPool2d": lambda x: nn.MaxPool2d(i64(2), i64(2))(x),
    "nn.AvgPool2d": lambda x: nn.AvgPool2d(i64(2))(x),
    "nn.BatchNorm2d": lambda x: nn.BatchNorm2d(i64(4))(x),
    "nn.LocalResponseNorm": lambda x: nn.LocalResponseNorm(i64(3))(x),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(NUMPY_INTEGER_CALLS))
def test_numpy_integers_are_taken_wherever_python_ints_are(name):
    out = NUMPY_INTEGER_CALLS[name](_x(2, 4, 8, 8, grad=True))
    out = out[0] if isinstance(out, tuple) else out
    assert out.size > 0


def test_build_takes_a_numpy_integer_class_count():
    model = models.build("segnet_basic", np.int64(5), preset="small", materialize=False)
    assert model.config["num_classes"] == 5 and type(model.config["num_classes"]) is int
    assert models.build("fcn8s", np.int32(3), preset="small", materialize=False)
    with pytest.raises(TypeError, match="num_classes must be a positive integer, got '5'"):
        models.build("segnet_basic", "5")
    with pytest.raises(ValueError, match=r"num_classes must be .*, got np.int64\(0\)"):
        models.build("segnet_basic", np.int64(0))


# ----------------------------------------------------------------------------- minimum sizes
@pytest.mark.parametrize(
    "name, config, smallest, network",
    [
        ("segnet_basic", {}, 9, "SegNetBasic"),  # 4 ceil-mode 2x2 pools: 9 -> 5 -> 3 -> 2 -> 1
        ("segnet_basic", {"depth": 2}, 3, "SegNetBasic"),
        ("segnet", {}, 17, "SegNet"),  # 5 pools: 17 -> 9 -> 5 -> 3 -> 2 -> 1
        ("deconvnet", {}, 17, "DeconvNet"),
        ("fcn32s", {"first_padding": 1, "fc_kernel": 1}, 17, "FCN-32s"),
    ],
)
def test_a_too_small_input_is_reported_by_the_network(name, config, smallest, network):
    model = models.build(name, 3, preset="small", seed=0, **config)
    model.eval()
    too_small = _x(1, 3, smallest - 1, smallest + 4)
    with pytest.raises(ValueError, match=f"^{network}: input height and width must be at least "
                                         f"{smallest} pixels") as caught:  # fmt: skip
        model(too_small)
    assert "max_pool2d" not in str(caught.value)
    assert model(_x(1, 3, smallest, smallest)).shape == (1, 3, smallest, smallest)

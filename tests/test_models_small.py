"""Small configurations of every network: forward + backward on several input sizes (odd ones
included), output shape (N, classes, H, W), and every parameter receiving a gradient."""

from __future__ import annotations

import numpy as np
import pytest

import minisegnet as ms
import minisegnet.functional as F
from minisegnet import models

ALL = ["fcn32s", "fcn16s", "fcn8s", "deconvnet", "segnet", "segnet_basic", "pspnet"]
SIZES = [(64, 64), (45, 61), (37, 50)]  # the gradient test uses 45x61, the others the rest
NUM_CLASSES = 5


def _input(n, h, w, seed=0):
    return ms.tensor(np.random.default_rng(seed).standard_normal((n, 3, h, w)).astype(np.float32))


def _randomise_zero_layers(model):
    """FCN's score layers start at zero, which (correctly) blocks every gradient below them on
    the first step; give them random values so the test can see gradients reach the backbone."""
    rng = np.random.default_rng(1)
    for name, p in model.named_parameters():
        if not np.any(p.numpy()):
            if name.endswith("weight") and p.ndim == 4:
                p.data = rng.normal(0, 0.1, p.shape).astype(p.dtype)


def _loss(output, h, w, seed=0):
    labels = np.random.default_rng(seed).integers(0, NUM_CLASSES, (output.shape[0], h, w))
    return F.cross_entropy(output, labels)


@pytest.mark.parametrize("name", ALL)
def test_forward_backward_every_parameter_gets_a_gradient(name):
    model = models.build(name, NUM_CLASSES, preset="small", seed=0)
    _randomise_zero_layers(model)
    model.train()
    h, w = SIZES[1]  # odd sizes: 45 x 61
    out = model(_input(2, h, w))
    if name == "pspnet":
        main, aux = out
        assert aux.shape == (2, NUM_CLASSES, h, w)
        loss = _loss(main, h, w) + 0.4 * _loss(aux, h, w)
    else:
        main = out
        loss = _loss(main, h, w)
    assert main.shape == (2, NUM_CLASSES, h, w)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"{name}: no gradient for {missing}"
    zero = [n for n, p in model.named_parameters() if not np.any(p.grad)]
    assert not zero, f"{name}: all-zero gradient for {zero}"
    for n, p in model.named_parameters():
        assert p.grad.shape == p.shape, n
        assert np.all(np.isfinite(p.grad)), n


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("size", [SIZES[0], SIZES[2]])
def test_output_has_the_input_size(name, size):
    model = models.build(name, NUM_CLASSES, preset="small", seed=0).eval()
    h, w = size
    with ms.no_grad():
        out = model(_input(1, h, w, seed=3))
    assert out.shape == (1, NUM_CLASSES, h, w)
    assert np.all(np.isfinite(out.numpy()))


def test_fcn_first_step_only_reaches_the_score_layers():
    """Zero-initialised score layers: d loss / d fc7 = W_score^T dy = 0 on the first step."""
    model = models.build("fcn8s", NUM_CLASSES, preset="small", seed=0).train()
    _loss(model(_input(1, 40, 40)), 40, 40).backward()
    for name, p in model.named_parameters():
        if name.startswith("score_"):
            assert np.any(p.grad), name
        else:
            assert not np.any(p.grad), name


@pytest.mark.parametrize("name", ["fcn8s", "pspnet"])
def test_eval_mode_is_deterministic(name):
    """No dropout and running batch-norm statistics in eval mode (both models have dropout)."""
    model = models.build(name, NUM_CLASSES, preset="small", seed=0).eval()
    x = _input(1, 33, 40)
    with ms.no_grad():
        a, b = model(x).numpy(), model(x).numpy()
    np.testing.assert_array_equal(a, b)

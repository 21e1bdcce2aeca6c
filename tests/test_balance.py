"""nn.balance_init_: batch-normalised convolutions rescaled so that none starts with a larger
effective step |dL/dW| / |W| than the median, with the network's function unchanged."""

from __future__ import annotations

import numpy as np
import pytest

import minisegnet as ms
import minisegnet.functional as F
from minisegnet import models, nn
from minisegnet.nn.balance import batch_normalised_convs, effective_steps


def batch(n=4, size=32, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    x = ms.tensor(rng.standard_normal((n, 3, size, size)).astype(np.float32))
    y = rng.integers(0, classes, (n, size, size))
    return x, y


def test_finds_the_convolutions_that_feed_a_batch_norm():
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, seed=0), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 1, seed=1), nn.ReLU(),  # no batch norm after it
        nn.ConvTranspose2d(4, 5, 3, padding=1, seed=2), nn.BatchNorm2d(5),
    )  # fmt: skip
    x, _ = batch()
    assert batch_normalised_convs(net, lambda: net(x)) == ["0", "5"]


@pytest.mark.parametrize("name", ["segnet", "deconvnet", "pspnet"])
def test_balanced_network_is_the_same_function_with_no_hot_layer(name):
    x, y = batch()
    model = models.build(name, 5, preset="small", seed=0)

    def loss():
        out = model(x)  # PSPNet in training mode: (main, auxiliary)
        return F.cross_entropy(out[0] if isinstance(out, tuple) else out, y)

    buffers = {k: v.copy() for k, v in model.named_buffers()}

    def measure():
        """Training-mode loss and effective steps, from the same buffers (dropout masks)."""
        model.train()
        names = batch_normalised_convs(model, loss)
        model.load_state_dict({**model.state_dict(), **buffers})
        with ms.no_grad():
            value = float(loss().numpy())
        model.load_state_dict({**model.state_dict(), **buffers})
        steps = effective_steps(model, loss, names)
        model.load_state_dict({**model.state_dict(), **buffers})
        return value, steps

    loss_before, before = measure()
    model.eval()
    scales = nn.balance_init_(model, loss)

    assert not model.training  # left in the mode it was in
    for k, v in model.named_buffers():  # running statistics, dropout counters: as they were
        np.testing.assert_array_equal(v, buffers[k], err_msg=k)
    assert all(p.grad is None for p in model.parameters())
    median = np.median(list(before.values()))
    assert list(scales) == list(before)
    for layer, scale in scales.items():  # only the hot layers move, each by sqrt(r / median)
        expected = np.sqrt(before[layer] / median) if before[layer] > median else 1.0
        assert scale == pytest.approx(expected, rel=1e-9), layer
    assert max(scales.values()) > 1.5  # these deep networks do have hot layers

    loss_after, after = measure()
    assert loss_after == pytest.approx(loss_before, rel=1e-4)  # the same function
    for layer in before:  # every layer now starts at or below the median step
        assert after[layer] <= median * 1.02, (layer, after[layer], median)


def test_a_convolution_that_also_feeds_something_else_is_refused():
    class Shortcut(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 5, 3, padding=1, seed=0)
            self.bn = nn.BatchNorm2d(5)
            self.deep = nn.Sequential(
                *[
                    m
                    for i in range(6)
                    for m in (
                        nn.Conv2d(5, 5, 3, padding=1, seed=i + 1),
                        nn.BatchNorm2d(5),
                        nn.ReLU(),
                    )
                ]
            )

        def forward(self, x):
            h = self.conv(x)
            return self.deep(self.bn(h)) + h  # h is used past its batch norm: not scale-free

    x, y = batch()
    net = Shortcut()
    weights = {k: v.copy() for k, v in net.state_dict().items()}
    with pytest.raises(ValueError, match="loss changed from .* feed something other"):
        nn.balance_init_(net, lambda: F.cross_entropy(net(x), y))
    for k, v in net.state_dict().items():
        np.testing.assert_array_equal(v, weights[k], err_msg=k)


def test_a_network_without_batch_norm_is_refused():
    x, y = batch()
    net = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1, seed=0))
    with pytest.raises(ValueError, match="no convolution followed by batch norm"):
        nn.balance_init_(net, lambda: F.cross_entropy(net(x), y))

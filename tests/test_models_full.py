"""Full-size (paper) networks: parameter counts against the papers, within 1%, and exactly
against the layer-by-layer sums written in the model docstrings.

The networks are built with ``materialize=False`` (weights allocated, not randomly initialised):
the same constructors and shapes, in milliseconds instead of the tens of seconds that drawing
and writing 250M random numbers takes. One test builds FCN-8s for real to show the two agree
(marked slow)."""

from __future__ import annotations

import numpy as np
import pytest

from minisegnet import models


def _count(model, prefix=""):
    return sum(p.size for n, p in model.named_parameters() if n.startswith(prefix))


def _bn_count(model):
    from minisegnet import nn

    return sum(
        p.size for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()
    )


def _within(actual, paper, tolerance=0.01):
    return abs(actual - paper) <= tolerance * paper


def test_fcn8s_count():
    model = models.build("fcn8s", 21, learn_upsampling=True, materialize=False)
    learnable = model.num_parameters()
    upsampling = _count(model, "upscore")
    assert upsampling == 21 * 21 * (16 + 16 + 256)  # the "127k" of the paper's deconvolutions
    assert learnable - upsampling == 134_362_751  # VGG16 (conv + fc6 + fc7) + the score layers
    assert _within(learnable, 134.36e6) and _within(learnable - upsampling, 134.36e6)
    assert _count(model, "encoder.fc6") == 102_764_544


def test_fcn32s_and_16s_counts_with_fixed_upsampling():
    assert models.build("fcn32s", 21, materialize=False).num_parameters() == 134_346_581
    assert models.build("fcn16s", 21, materialize=False).num_parameters() == 134_357_354


def test_deconvnet_count():
    model = models.build("deconvnet", 21, materialize=False)
    bn = _bn_count(model)
    assert bn == 33_408
    assert model.num_parameters() - bn == 251_772_245
    assert _within(model.num_parameters() - bn, 251.8e6)


def test_segnet_counts():
    segnet = models.build("segnet", 11, materialize=False)
    assert _count(segnet, "encoder.conv") == 14_714_688  # the 13 VGG16 convs: "14.7M"
    assert segnet.num_parameters() == 29_480_779
    assert _within(segnet.num_parameters(), 29.5e6)
    basic = models.build("segnet_basic", 11, materialize=False)
    assert basic.num_parameters() == 1_416_331
    assert _within(basic.num_parameters(), 1.425e6)


@pytest.mark.parametrize(
    "depth, layer3, main, total",
    [(50, 7_098_368, 46_716_373, 49_081_578), (101, 26_090_496, 65_708_501, 68_073_706)],
)
def test_pspnet_counts_match_the_documented_table(depth, layer3, main, total):
    model = models.build("pspnet", 21, depth=depth, materialize=False)
    parts = {k: _count(model, k + ".") for k in
             ("layer0", "layer1", "layer2", "layer3", "layer4", "ppm", "cls", "aux")}  # fmt: skip
    assert parts == {
        "layer0": 112_832, "layer1": 236_288, "layer2": 1_219_584, "layer3": layer3,
        "layer4": 14_964_736, "ppm": 4_198_400, "cls": 18_886_165, "aux": 2_365_205,
    }  # fmt: skip
    assert model.num_parameters() == total and total - parts["aux"] == main
    assert np.isclose(
        sum(parts[f"layer{i}"] for i in range(5)) / 1e6, 23.63 if depth == 50 else 42.62, atol=0.01
    )


def test_uninitialised_build_skips_only_inside_the_block():
    from minisegnet import nn

    with models.uninitialised():
        w = nn.Parameter(np.zeros((4, 3, 3, 3)))
        nn.init.kaiming_normal_(w)
        assert not np.any(w.numpy())  # skipped: left as it was
    nn.init.kaiming_normal_(w)
    assert np.any(w.numpy())  # after the block the initialiser runs again
    a = models.build("segnet_basic", 3, preset="small", seed=0)
    b = models.build("segnet_basic", 3, preset="small", seed=0)
    assert np.any(a.conv2.weight.numpy())
    np.testing.assert_array_equal(a.conv2.weight.numpy(), b.conv2.weight.numpy())


@pytest.mark.slow
def test_materialized_full_build_has_the_same_parameters():
    real = models.build("fcn8s", 21, seed=0)
    shapes = [(n, p.shape) for n, p in real.named_parameters()]
    fast = models.build("fcn8s", 21, materialize=False)
    assert shapes == [(n, p.shape) for n, p in fast.named_parameters()]
    assert real.num_parameters() == 134_362_751
    w = real.encoder.fc6.weight.numpy()[:64]
    assert abs(w.std() - (2 / (512 * 49)) ** 0.5) < 1e-3  # He initialisation happened

"""SegNet, SegNet-Basic and DeconvNet faithfulness: the decoder is driven by the encoder's
switches, odd sizes unpool back to the encoder's sizes, the layer tables of the papers."""

from __future__ import annotations

import numpy as np
import pytest

import minisegnet as ms
from minisegnet import models, nn


def _x(n, h, w, seed=0, c=3):
    return ms.tensor(np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(np.float32))


def _replace_switches(model, pool_name, new_switches):
    """A forward hook that keeps the pool's values and swaps in other switches."""
    pool = dict(model.named_modules())[pool_name]
    return pool.register_forward_hook(lambda m, inputs, out: (out[0], new_switches))


@pytest.mark.parametrize(
    "name, pool",
    [
        ("segnet", "encoder.pool4"),
        ("segnet_basic", "pool2"),
        ("deconvnet", "encoder.pool1"),
    ],
)
def test_output_changes_when_only_the_switches_change(name, pool):
    model = models.build(name, 4, preset="small", seed=0).eval()
    x, other = _x(1, 48, 40, seed=0), _x(1, 48, 40, seed=1)
    own = models.switches(model, x)[pool]
    foreign = models.switches(model, other)[pool]
    with ms.no_grad():
        base = model(x).numpy()
        remove = _replace_switches(model, pool, own)  # control: the same switches again
        same = model(x).numpy()
        remove()
        remove = _replace_switches(model, pool, foreign)  # same values, other positions
        moved = model(x).numpy()
        remove()
    np.testing.assert_array_equal(same, base)
    assert np.abs(moved - base).max() > 1e-3 * np.abs(base).max()


@pytest.mark.parametrize(
    "name, before, unpooled",
    [
        ("segnet", "encoder.relu1_2", "upsample1"),
        ("segnet_basic", "relu1", "upsample1"),
        ("deconvnet", "encoder.relu1_2", "unpool1"),
    ],
)
def test_unpooling_puts_values_at_the_encoders_argmax(name, before, unpooled):
    model = models.build(name, 4, preset="small", seed=0).eval()
    acts = models.capture(model, _x(1, 45, 61), [before, unpooled])
    a = acts[before].numpy()[0]  # (C, 45, 61): what pool1 saw
    u = acts[unpooled].numpy()[0]  # (C, 45, 61): decoder features placed at the switches
    assert a.shape == u.shape == (a.shape[0], 45, 61)
    C, H, W = a.shape
    pad = np.full((C, H + 1, W + 1), -np.inf, np.float32)  # ceil mode: the last window hangs over
    pad[:, :H, :W] = a
    u_pad = np.zeros((C, H + 1, W + 1), np.float32)
    u_pad[:, :H, :W] = u
    win_a = pad.reshape(C, (H + 1) // 2, 2, (W + 1) // 2, 2).transpose(0, 1, 3, 2, 4)
    win_u = u_pad.reshape(C, (H + 1) // 2, 2, (W + 1) // 2, 2).transpose(0, 1, 3, 2, 4)
    win_a = win_a.reshape(C, (H + 1) // 2, (W + 1) // 2, 4)
    win_u = win_u.reshape(C, (H + 1) // 2, (W + 1) // 2, 4)
    argmax = win_a.argmax(axis=-1)  # first maximum, the tie rule of the pools
    nonzero = win_u != 0
    assert np.all(nonzero.sum(axis=-1) <= 1)  # at most one value per window
    where = np.argwhere(nonzero)
    assert len(where) > 0.3 * win_u[..., 0].size
    assert np.all(where[:, 3] == argmax[where[:, 0], where[:, 1], where[:, 2]])


def test_segnet_basic_odd_sizes_pool_and_unpool_back():
    model = models.build("segnet_basic", 3, preset="small", seed=0).eval()
    names = [f"pool{i}" for i in range(1, 5)] + [f"upsample{i}" for i in range(4, 0, -1)]
    acts = models.capture(model, _x(1, 45, 61), names)
    pooled = [acts[f"pool{i}"][0].shape[2:] for i in range(1, 5)]
    assert pooled == [(23, 31), (12, 16), (6, 8), (3, 4)]  # Caffe ceil rounding
    unpooled = [acts[f"upsample{i}"].shape[2:] for i in range(4, 0, -1)]
    assert unpooled == [(6, 8), (12, 16), (23, 31), (45, 61)]


def test_segnet_basic_layers_are_the_papers():
    model = models.build("segnet_basic", 11, materialize=False)
    assert isinstance(model.norm, nn.LocalResponseNorm)
    assert (model.norm.size, model.norm.alpha, model.norm.beta, model.norm.k) == (5, 1e-4, 0.75, 1)
    for i in range(1, 5):
        enc, dec = getattr(model, f"conv{i}"), getattr(model, f"conv_decode{i}")
        assert enc.weight.shape[0] == 64 and enc.weight.shape[2:] == (7, 7)
        assert enc.bias is not None
        assert dec.weight.shape == (64, 64, 7, 7) and dec.bias is None
        assert not hasattr(model, f"relu_decode{i}")
    relus = [n for n, m in model.named_modules() if isinstance(m, nn.ReLU)]
    assert relus == ["relu1", "relu2", "relu3", "relu4"]  # none in the decoder
    assert model.conv_classifier.weight.shape == (11, 64, 1, 1)


def test_segnet_decoder_mirrors_the_encoder():
    model = models.build("segnet", 11, materialize=False)
    expected = [("conv5_3_D", 512, 512), ("conv5_2_D", 512, 512), ("conv5_1_D", 512, 512),
                ("conv4_3_D", 512, 512), ("conv4_2_D", 512, 512), ("conv4_1_D", 512, 256),
                ("conv3_3_D", 256, 256), ("conv3_2_D", 256, 256), ("conv3_1_D", 256, 128),
                ("conv2_2_D", 128, 128), ("conv2_1_D", 128, 64),
                ("conv1_2_D", 64, 64), ("conv1_1_D", 64, 64)]  # fmt: skip
    for name, c_in, c_out in expected:
        assert getattr(model, name).weight.shape == (c_out, c_in, 3, 3), name
        assert isinstance(getattr(model, f"{name}_bn"), nn.BatchNorm2d)
    assert model.classifier.weight.shape == (11, 64, 1, 1)
    assert model.encoder.batch_norm and model.encoder.return_indices


def test_deconvnet_layers_are_the_papers():
    model = models.build("deconvnet", 21, materialize=False)
    enc = model.encoder
    assert enc.fc6.weight.shape == (4096, 512, 7, 7) and enc.fc7.weight.shape == (4096, 4096, 1, 1)
    assert isinstance(enc.fc6_bn, nn.BatchNorm2d) and isinstance(enc.fc7_bn, nn.BatchNorm2d)
    assert isinstance(model.fc6_deconv, nn.ConvTranspose2d)
    assert model.fc6_deconv.weight.shape == (4096, 512, 7, 7)  # (in, out, k, k)
    table = {"deconv5_1": 512, "deconv5_2": 512, "deconv5_3": 512, "deconv4_1": 512,
             "deconv4_2": 512, "deconv4_3": 256, "deconv3_1": 256, "deconv3_2": 256,
             "deconv3_3": 128, "deconv2_1": 128, "deconv2_2": 64, "deconv1_1": 64,
             "deconv1_2": 64}  # fmt: skip
    for name, c_out in table.items():
        layer = getattr(model, name)
        assert isinstance(layer, nn.ConvTranspose2d), name
        assert layer.weight.shape[1:] == (c_out, 3, 3), name
        stage, i = name[len("deconv") :].split("_")
        assert isinstance(getattr(model, f"debn{stage}_{i}"), nn.BatchNorm2d)
    assert model.seg_score.weight.shape == (21, 64, 1, 1)
    # BN after every encoder conv
    bns = [n for n, m in enc.named_modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 13 + 2


def test_deconvnet_with_7x7_fc6_explains_its_minimum_size():
    model = models.build("deconvnet", 3, width=1 / 64, fc_channels=2, seed=0).eval()
    assert model.encoder.min_input_size() == 193
    with pytest.raises(ValueError, match="at least 193"):
        model(_x(1, 100, 100))
    with ms.no_grad():
        assert model(_x(1, 193, 200)).shape == (1, 3, 193, 200)

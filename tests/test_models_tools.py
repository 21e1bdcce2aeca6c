"""``models.build``/``names``, ``models.summary`` and the activation/switch capture helpers."""

from __future__ import annotations

import numpy as np
import pytest

import minisegnet as ms
from minisegnet import models, nn


def test_names_and_aliases():
    assert models.names() == sorted(
        ["fcn32s", "fcn16s", "fcn8s", "deconvnet", "segnet", "segnet_basic", "pspnet",
         "deeplab_largefov", "deeplab_v2_vgg", "deeplab_v2_resnet", "dilation8", "unet",
         "unet_padded"]
    )  # fmt: skip
    for alias in ("segnet-basic", "SegNet_Basic", " segnet_basic "):
        assert isinstance(models.build(alias, 11, preset="small"), models.SegNetBasic)
    assert models.build("fcn-8s", 3, preset="small").variant == "8s"


def test_build_records_its_config_and_applies_presets_and_overrides():
    model = models.build("segnet", 7, preset="small", width=0.25)
    assert model.config == {"name": "segnet", "num_classes": 7, "config": {"width": 0.25}}
    assert model.encoder.conv1_1.weight.shape[0] == 16
    small = models.build("pspnet", 3, preset="small")
    assert small.config["config"] == models.SMALL_PRESETS["pspnet"]
    assert models.build("fcn32s", 3, preset="small").config["config"] == models.small_preset(
        "fcn32s"
    )


def test_width_multiplier_scales_every_vgg_conv():
    model = models.build("segnet", 5, width=0.125)
    widths = [getattr(model.encoder, f"conv{s}_1").weight.shape[0] for s in range(1, 6)]
    assert widths == [8, 16, 32, 64, 64]


def test_named_builders_match_build():
    for name in models.names():
        fn = getattr(models, name)
        a = fn(4, **models.small_preset(name))
        b = models.build(name, 4, preset="small")
        assert type(a) is type(b)
        assert [(n, p.shape) for n, p in a.named_parameters()] == [
            (n, p.shape) for n, p in b.named_parameters()
        ]


def test_build_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown model name 'enet'.*fcn8s"):
        models.build("enet", 3)
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['depth'\].*width"):
        models.build("segnet", 3, depth=50)
    with pytest.raises(ValueError, match="num_classes"):
        models.build("segnet", 0)
    with pytest.raises(ValueError, match="preset"):
        models.build("segnet", 3, preset="tiny")
    with pytest.raises(ValueError, match="width"):
        models.build("segnet", 3, width=-1)


# ----------------------------------------------------------------------------- summary
def test_summary_rows_and_totals():
    model = models.build("segnet_basic", 11, width=0.25, seed=0)
    s = models.summary(model, (2, 3, 45, 61))
    names = [r.name for r in s.rows]
    assert names[0] == "norm" and names[-1] == "conv_classifier"
    assert names.count("conv1") == 1 and "upsample1" in names
    assert s.total_params == model.num_parameters() == sum(r.params for r in s.rows)
    rows = {r.name: r for r in s.rows}
    conv1 = rows["conv1"]
    assert conv1.output_shape == (2, 16, 45, 61)
    assert conv1.params == 16 * 3 * 49 + 16
    assert conv1.macs == 2 * 16 * 45 * 61 * 3 * 49
    assert conv1.activation_bytes == 2 * 16 * 45 * 61 * 4
    assert rows["pool1"].output_shape == (2, 16, 23, 31)
    assert 0 < rows["pool1"].switch_bytes <= 2 * 16 * 23 * 31 * 4
    assert rows["upsample1"].output_shape == (2, 16, 45, 61)
    assert s.total_macs == sum(r.macs for r in s.rows)
    text = str(s)
    assert "conv_decode4" in text and "parameters:" in text and "multiply-adds:" in text
    assert isinstance(s.to_list()[0], dict) and s.to_list()[0]["name"] == "norm"


def test_summary_of_a_transposed_conv_and_fixed_weights():
    model = models.build("fcn32s", 2, width=1 / 64, fc_channels=2, seed=0)
    s = models.summary(model, (1, 3, 40, 40))
    row = next(r for r in s.rows if r.name == "upscore")
    score = next(r for r in s.rows if r.name == "score_fr")
    n_in = int(np.prod(score.output_shape))
    assert row.macs == n_in * 64 * 64  # diagonal: each value spreads over its own class only
    learned = models.summary(
        models.build("fcn32s", 2, width=1 / 64, fc_channels=2, learn_upsampling=True),
        (1, 3, 40, 40),
    )
    assert row.params == 0 and row.fixed == 2 * 2 * 64 * 64
    assert s.total_fixed == 2 * 2 * 64 * 64
    assert next(r for r in s.rows if r.name == "crop").output_shape == (1, 2, 40, 40)
    row = next(r for r in learned.rows if r.name == "upscore")
    assert row.macs == n_in * 2 * 64 * 64  # a learned kernel may mix classes: Cout x 64 x 64
    assert row.params == 2 * 2 * 64 * 64 and learned.total_fixed == 0


def test_summary_restores_modes_and_running_statistics():
    model = models.build("pspnet", 3, preset="small", seed=0).train()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    s = models.summary(model, (2, 3, 33, 33), training=True)
    assert any(r.name.startswith("aux") for r in s.rows)
    assert model.training and all(m.training for m in model.modules())
    after = model.state_dict()
    for k in before:
        np.testing.assert_array_equal(before[k], after[k], err_msg=k)
    s_eval = models.summary(model, (1, 3, 33, 33))
    assert not any(r.name.startswith("aux") for r in s_eval.rows)
    assert model.training


# ----------------------------------------------------------------------------- capture
def test_capture_returns_named_outputs_and_removes_its_hooks():
    model = models.build("segnet", 3, preset="small", seed=0).eval()
    x = ms.tensor(np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32))
    acts = models.capture(model, x, ["encoder.relu1_1", "encoder.pool1", "classifier"])
    assert list(acts) == ["encoder.relu1_1", "encoder.pool1", "classifier"]
    assert acts["encoder.relu1_1"].shape == (1, 8, 32, 32)
    values, switches = acts["encoder.pool1"]
    assert values.shape == (1, 8, 16, 16)
    with ms.no_grad():
        np.testing.assert_array_equal(acts["classifier"].numpy(), model(x).numpy())
    assert all(not m._forward_hooks for m in model.modules())
    sw = models.switches(model, x)
    assert list(sw) == [f"encoder.pool{i}" for i in range(1, 6)]
    with pytest.raises(ValueError, match="unknown layer name"):
        models.capture(model, x, ["encoder.nope"])


def test_capture_history_of_a_layer_called_twice():
    relu = nn.ReLU()

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.relu = relu

        def forward(self, x):
            return self.relu(self.relu(x) - 1.0)

    x = ms.tensor(np.array([[2.0, 0.5]], np.float32))
    model = Twice()
    with models.Recorder(model, ["relu"], history=True) as rec:
        model(x)
    assert rec.calls["relu"] == 2
    np.testing.assert_array_equal(rec.outputs["relu"][0].numpy(), [[2.0, 0.5]])
    np.testing.assert_array_equal(rec.outputs["relu"][1].numpy(), [[1.0, 0.0]])

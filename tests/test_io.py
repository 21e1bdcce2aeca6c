"""Weights files: save/load round trip, every mismatch reported, corrupt files named, and the
import of torchvision-layout VGG16 weights (built here from random arrays)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import minisegnet as ms
import minisegnet.functional as F
from minisegnet import io, models, nn


def _x(n=1, h=36, w=44, seed=0, c=3):
    return ms.tensor(np.random.default_rng(seed).standard_normal((n, c, h, w)).astype(np.float32))


def _trained_a_little(name):
    """A small model whose batch-norm statistics and weights are no longer the initial ones."""
    model = models.build(name, 4, preset="small", seed=0).train()
    rng = np.random.default_rng(5)
    for p in model.parameters():
        p.data = (p.numpy() + rng.normal(0, 0.05, p.shape)).astype(np.float32)
    with ms.no_grad():
        model(_x(2, seed=1))  # updates running statistics
    return model.eval()


@pytest.mark.parametrize("name", ["fcn8s", "segnet", "pspnet", "deconvnet", "segnet_basic"])
def test_save_and_load_model_round_trip_gives_identical_outputs(tmp_path, name):
    model = _trained_a_little(name)
    x = _x(seed=2)
    with ms.no_grad():
        expected = model(x).numpy()
    weights, config = io.save(model, tmp_path / "run", extra={"epoch": 3})
    assert weights.name == "run.safetensors" and config.name == "run.json"
    document = json.loads(config.read_text())
    assert document["model"]["name"] == name and document["extra"] == {"epoch": 3}
    assert document["parameters"] == model.num_parameters()

    loaded = io.load_model(tmp_path / "run.safetensors").eval()
    with ms.no_grad():
        np.testing.assert_array_equal(loaded(x).numpy(), expected)
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2
        np.testing.assert_array_equal(a, b, err_msg=k)


def test_load_reports_every_mismatch_and_names_the_file(tmp_path):
    model = models.build("segnet_basic", 4, preset="small")
    state = model.state_dict()
    state.pop("conv1.weight")
    state.pop("conv_decode2_bn.running_var")
    state["conv9.weight"] = np.zeros((2, 2), np.float32)
    state["conv_classifier.weight"] = np.zeros((5, 16, 1, 1), np.float32)
    path = io.save_state_dict(tmp_path / "broken.safetensors", state)
    target = models.build("segnet_basic", 4, preset="small")
    before = {k: v.copy() for k, v in target.state_dict().items()}
    with pytest.raises(nn.StateDictError) as info:
        io.load(target, path)
    message = str(info.value)
    assert str(path) in message
    for expected in (
        "missing: conv1.weight",
        "missing: conv_decode2_bn.running_var",
        "unexpected: conv9.weight",
        "conv_classifier.weight",
    ):
        assert expected in message, expected
    assert "4 problem" in message
    for k, v in target.state_dict().items():  # nothing was loaded
        np.testing.assert_array_equal(v, before[k])


def test_load_into_a_different_width_lists_all_shape_mismatches(tmp_path):
    io.save(models.build("segnet_basic", 4, width=0.25), tmp_path / "w")
    with pytest.raises(nn.StateDictError) as info:
        io.load(models.build("segnet_basic", 4, width=0.125), tmp_path / "w")
    message = str(info.value)
    assert message.count("shape mismatch") >= 8 * 4  # every conv and BN tensor


def test_truncated_file_is_a_clear_error(tmp_path):
    weights, _ = io.save(models.build("segnet_basic", 4, preset="small"), tmp_path / "t")
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(io.WeightsFileError, match="t.safetensors"):
        io.load_state_dict(weights, verify=False)  # safetensors itself sees the truncation
    with pytest.raises(io.WeightsFileError, match="sha256"):
        io.load_state_dict(weights)  # the recorded hash sees it first


def test_corrupted_bytes_are_caught_by_the_recorded_hash(tmp_path):
    weights, _ = io.save(models.build("segnet_basic", 4, preset="small"), tmp_path / "c")
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF  # inside the tensor data: still parses as safetensors
    weights.write_bytes(bytes(data))
    io.load_state_dict(weights, verify=False)
    with pytest.raises(io.WeightsFileError, match="corrupt"):
        io.load(models.build("segnet_basic", 4, preset="small"), weights)


def test_not_a_weights_file(tmp_path):
    bad = tmp_path / "junk.safetensors"
    bad.write_bytes(b"\x00\x01 this is not safetensors")
    with pytest.raises(io.WeightsFileError, match="junk.safetensors"):
        io.load_state_dict(bad)
    with pytest.raises(io.WeightsFileError, match="not found"):
        io.load_state_dict(tmp_path / "missing")
    (tmp_path / "cfg.json").write_text("{not json")
    (tmp_path / "cfg.safetensors").write_bytes(b"")
    with pytest.raises(io.WeightsFileError, match="cfg.json"):
        io.read_config(tmp_path / "cfg")


# ----------------------------------------------------------------------------- VGG16 import
def _torchvision_vgg16(width_channels, fc, batch_norm=False, seed=0, fc_kernel=7):
    """Random arrays with torchvision's VGG16 keys and layouts (features.N, classifier.N)."""
    rng = np.random.default_rng(seed)
    state, c_in, index = {}, 3, 0
    for stage in width_channels:
        for c in stage:
            state[f"features.{index}.weight"] = rng.standard_normal((c, c_in, 3, 3)).astype(
                np.float32
            )
            state[f"features.{index}.bias"] = rng.standard_normal(c).astype(np.float32)
            if batch_norm:
                for part in ("weight", "bias", "running_mean"):
                    state[f"features.{index + 1}.{part}"] = rng.standard_normal(c).astype(
                        np.float32
                    )
                state[f"features.{index + 1}.running_var"] = rng.random(c).astype(np.float32) + 0.5
                state[f"features.{index + 1}.num_batches_tracked"] = np.array(7, np.int64)
            index += 3 if batch_norm else 2
            c_in = c
        index += 1
    flat = c_in * fc_kernel * fc_kernel
    state["classifier.0.weight"] = rng.standard_normal((fc, flat)).astype(np.float32)
    state["classifier.0.bias"] = rng.standard_normal(fc).astype(np.float32)
    state["classifier.3.weight"] = rng.standard_normal((fc, fc)).astype(np.float32)
    state["classifier.3.bias"] = rng.standard_normal(fc).astype(np.float32)
    state["classifier.6.weight"] = rng.standard_normal((10, fc)).astype(np.float32)
    state["classifier.6.bias"] = rng.standard_normal(10).astype(np.float32)
    return state


SMALL_VGG = ((8, 8), (16, 16), (32, 32, 32), (64, 64, 64), (64, 64, 64))  # width 1/8


def test_vgg16_key_map_is_torchvisions_numbering():
    plain = dict(io.vgg16_key_map(batch_norm=False))
    assert [plain[f"conv{s}_1"] for s in range(1, 6)] == [0, 5, 10, 17, 24]
    assert (plain["conv1_2"], plain["conv3_3"], plain["conv5_3"]) == (2, 14, 28)
    bn = dict(io.vgg16_key_map(batch_norm=True))
    assert [bn[f"conv{s}_1"] for s in range(1, 6)] == [0, 7, 14, 24, 34]
    assert bn["conv5_3"] == 40


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
def test_import_vgg16_into_fcn_convolutionalises_fc6_and_fc7(tmp_path, suffix):
    state = _torchvision_vgg16(SMALL_VGG, fc=32)
    path = tmp_path / f"vgg16{suffix}"
    if suffix == ".npz":
        np.savez(path, **state)
    else:
        io.save_state_dict(path, state)
    model = models.build("fcn8s", 3, width=0.125, fc_channels=32)
    report = io.import_vgg16(model, path)
    enc = model.encoder
    np.testing.assert_array_equal(enc.conv1_1.weight.numpy(), state["features.0.weight"])
    np.testing.assert_array_equal(enc.conv3_2.bias.numpy(), state["features.12.bias"])
    np.testing.assert_array_equal(enc.conv5_3.weight.numpy(), state["features.28.weight"])
    np.testing.assert_array_equal(enc.fc7.weight.numpy()[:, :, 0, 0], state["classifier.3.weight"])
    assert enc.fc6.weight.shape == (32, 64, 7, 7)
    # fc6 as a 7x7 conv on a 7x7 pool5 map computes exactly the Linear layer on the flattened map
    pool5 = np.random.default_rng(1).standard_normal((2, 64, 7, 7)).astype(np.float32)
    as_linear = pool5.reshape(2, -1) @ state["classifier.0.weight"].T + state["classifier.0.bias"]
    as_conv = F.conv2d(ms.tensor(pool5), enc.fc6.weight, enc.fc6.bias).numpy()
    assert as_conv.shape == (2, 32, 1, 1)
    np.testing.assert_allclose(as_conv[:, :, 0, 0], as_linear, rtol=1e-4, atol=1e-3)
    # the ImageNet classifier is not used; FCN's own score layers stay zero
    assert "classifier.6.weight" in dict(report.unused)
    assert not np.any(model.score_fr.weight.numpy())
    assert len(report.loaded) == 13 * 2 + 4


def test_import_vgg16_into_segnet_and_deconvnet(tmp_path):
    path = tmp_path / "vgg.npz"
    state = _torchvision_vgg16(SMALL_VGG, fc=32)
    np.savez(path, **state)
    segnet = models.build("segnet", 3, width=0.125)
    report = io.import_vgg16(segnet, path)
    np.testing.assert_array_equal(
        segnet.encoder.conv4_1.weight.numpy(), state["features.17.weight"]
    )
    unused = dict(report.unused)
    assert "classifier.0.weight" in unused and "fc6/fc7" in unused["classifier.0.weight"]
    assert "encoder.bn1_1.weight" in report.not_in_file  # BN stays as initialised

    deconv = models.build("deconvnet", 3, width=0.125, fc_channels=32)
    io.import_vgg16(deconv, path)
    np.testing.assert_array_equal(
        deconv.encoder.fc6.weight.numpy(), state["classifier.0.weight"].reshape(32, 64, 7, 7)
    )


def test_import_vgg16_bn_layout_loads_the_batch_norms(tmp_path):
    path = tmp_path / "vgg_bn.npz"
    state = _torchvision_vgg16(SMALL_VGG, fc=32, batch_norm=True)
    np.savez(path, **state)
    model = models.build("segnet", 3, width=0.125)
    io.import_vgg16(model, path)
    np.testing.assert_array_equal(model.encoder.conv2_1.weight.numpy(), state["features.7.weight"])
    np.testing.assert_array_equal(model.encoder.bn2_1.running_var, state["features.8.running_var"])
    with pytest.raises(ValueError, match="VGG16-BN"):
        io.import_vgg16(models.build("fcn8s", 3, width=0.125, fc_channels=32), path)


def test_import_vgg16_reports_all_mismatches_and_loads_nothing(tmp_path):
    path = tmp_path / "vgg.npz"
    np.savez(path, **_torchvision_vgg16(SMALL_VGG, fc=32))
    model = models.build("fcn8s", 3, width=0.25, fc_channels=32)  # twice the channels
    before = model.encoder.conv1_1.weight.numpy().copy()
    with pytest.raises(ValueError) as info:
        io.import_vgg16(model, path)
    message = str(info.value)
    assert "nothing was loaded" in message and str(path) in message
    assert message.count("shape mismatch") == 13 * 2 + 1  # 26 convs and fc6 (fc7 fits)
    np.testing.assert_array_equal(model.encoder.conv1_1.weight.numpy(), before)
    with pytest.raises(TypeError, match="no VGG16 encoder"):
        io.import_vgg16(models.build("pspnet", 3, preset="small"), path)


def test_model_built_by_hand_saves_and_loads_but_cannot_be_rebuilt(tmp_path):
    model = models.SegNetBasic(4, width=0.125, seed=0)  # no model.config: not made by build()
    io.save(model, tmp_path / "hand")
    assert json.loads((tmp_path / "hand.json").read_text())["model"] is None
    with pytest.raises(io.WeightsFileError, match="records no model config"):
        io.load_model(tmp_path / "hand")
    other = models.SegNetBasic(4, width=0.125, seed=1)
    io.load(other, tmp_path / "hand.safetensors")
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values()):
        np.testing.assert_array_equal(a, b, err_msg=k)


@pytest.mark.parametrize(
    "entry,fragment",
    [
        ("segnet", '"model" must be an object'),
        ({"num_classes": 3}, '"name" must be a model name'),
        ({"name": "segnet", "num_classes": 0}, '"num_classes" must be a positive integer'),
        ({"name": "segnet", "num_classes": 3, "config": [1]}, '"config" must be an object'),
    ],
)
def test_load_model_checks_the_model_entry_of_the_json(tmp_path, entry, fragment):
    """A hand-edited model.json: a WeightsFileError naming the file, not a KeyError."""
    io.save(models.build("segnet_basic", 3, preset="small"), tmp_path / "m")
    document = json.loads((tmp_path / "m.json").read_text())
    document["model"] = entry
    (tmp_path / "m.json").write_text(json.dumps(document))
    with pytest.raises(io.WeightsFileError, match="m.json") as info:
        io.load_model(tmp_path / "m")
    assert fragment in str(info.value)

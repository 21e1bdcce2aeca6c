"""FCN faithfulness: output size for any input, crop alignment, bilinear kernels, fixed versus
learned upsampling, zero-initialised score layers, the at-once scaling."""

from __future__ import annotations

import numpy as np
import pytest

import minisegnet as ms
from minisegnet import models, nn
from minisegnet.models.fcn import FCN_OFFSETS, Crop, FixedConvTranspose2d, fcn_offsets

TINY = {"width": 1 / 64, "fc_channels": 2, "in_channels": 1}  # 1, 2, 4, 8, 8 channels
SMALL_GEOMETRY = {"fc_kernel": 4, "first_padding": 49}  # the small preset's fc6 and padding


def bilinear_reference(k: int) -> np.ndarray:
    """The kernel of REFERENCE.md (FCN's surgery.upsample_filt), written out independently."""
    factor = (k + 1) // 2
    center = factor - 1 if k % 2 == 1 else factor - 0.5
    og = np.ogrid[:k, :k]
    return (1 - abs(og[0] - center) / factor) * (1 - abs(og[1] - center) / factor)


def _tiny(variant, num_classes=1, **kw):
    config = dict(TINY, **kw)
    return models.build(f"fcn{variant}", num_classes, **config)


@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
def test_output_is_exactly_the_input_size(variant):
    model = _tiny(variant, num_classes=3).eval()
    for h, w in [(1, 1), (2, 3), (31, 32), (45, 61), (100, 7), (64, 64)]:
        with ms.no_grad():
            out = model(ms.zeros(1, 1, h, w))
        assert out.shape == (1, 3, h, w), (variant, h, w)


def test_offsets_are_the_reference_ones():
    assert FCN_OFFSETS == {
        "32s": {"out": 19},
        "16s": {"pool4": 5, "out": 27},
        "8s": {"pool4": 5, "pool3": 9, "out": 31},
    }
    m8 = _tiny("8s")
    assert (m8.crop_pool4.offset, m8.crop_pool3.offset, m8.crop.offset) == (5, 9, 31)
    m16 = _tiny("16s")
    assert (m16.crop_pool4.offset, m16.crop.offset) == (5, 27)
    assert _tiny("32s").crop.offset == 19
    assert m8.encoder.conv1_1.padding in (100, (100, 100))


def test_general_offsets_reproduce_the_reference_and_give_the_small_ones():
    for variant, offsets in FCN_OFFSETS.items():
        assert fcn_offsets(variant) == offsets
    assert fcn_offsets("32s", 49, 4) == {"out": 16}
    assert fcn_offsets("16s", 49, 4) == {"pool4": 2, "out": 24}
    assert fcn_offsets("8s", 49, 4) == {"pool4": 2, "pool3": 3, "out": 28}
    m8 = _tiny("8s", **SMALL_GEOMETRY)
    assert (m8.crop_pool4.offset, m8.crop_pool3.offset, m8.crop.offset) == (2, 3, 28)
    assert models.small_preset("fcn8s")["fc_kernel"] == SMALL_GEOMETRY["fc_kernel"]
    assert models.small_preset("fcn8s")["first_padding"] == SMALL_GEOMETRY["first_padding"]


@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
def test_small_geometry_takes_every_input_size(variant):
    """P = 16K - 15 gives fc6 an output for every size, and K >= 4 keeps FCN-8s's pool3 crop
    inside its map (see the module docstring); K = 3 fails for many sizes, 40 among them."""
    model = _tiny(variant, **SMALL_GEOMETRY).eval()
    with ms.no_grad():
        for h in range(1, 141):
            assert model(ms.tensor(np.zeros((1, 1, h, h + 1), np.float32))).shape[2:] == (h, h + 1)
    if variant == "8s":
        model = _tiny(variant, fc_kernel=3, first_padding=33).eval()
        with pytest.raises(ValueError, match="Crop: cannot take"), ms.no_grad():
            model(ms.tensor(np.zeros((1, 1, 40, 40), np.float32)))


def test_geometry_with_negative_offsets_is_rejected():
    with pytest.raises(ValueError, match="fc_kernel >= 3"):
        _tiny("8s", fc_kernel=2, first_padding=49)
    with pytest.raises(ValueError, match="first_padding >= 21"):
        fcn_offsets("8s", 20, 4)


def test_crop_takes_the_window_at_its_offset():
    x = ms.tensor(np.arange(2 * 10 * 12, dtype=np.float32).reshape(1, 2, 10, 12))
    y = Crop(3)(x, (4, 5))
    np.testing.assert_array_equal(y.numpy(), x.numpy()[:, :, 3:7, 3:8])
    with pytest.raises(ValueError, match="offset 3"):
        Crop(3)(x, (8, 5))


# ----------------------------------------------------------------------------- alignment
def _identity_network(model, path):
    """Make every encoder conv pass channel 0 through unchanged (centre tap 1, all else 0) and
    let exactly one score layer ("fr", "pool4" or "pool3") read channel 0; the others are 0.
    ReLU and max pooling keep a non-negative map, so the network transports a single bright
    pixel to the stride-32/16/8 cell that contains it and upsamples it back bilinearly. An
    even kernel (the small preset's 4x4 fc6) has no centre tap: its two middle taps in each
    direction share the weight, which is centred on the kernel's centre as well."""
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            w = np.zeros(module.weight.shape, np.float32)
            if name.startswith("encoder.") or name == f"score_{path}":
                kh, kw = w.shape[2:]
                rows = [kh // 2] if kh % 2 else [kh // 2 - 1, kh // 2]
                cols = [kw // 2] if kw % 2 else [kw // 2 - 1, kw // 2]
                for r in rows:
                    for c in cols:
                        w[0, 0, r, c] = 1.0 / (len(rows) * len(cols))
            module.weight.data = w
            if module.bias is not None:
                module.bias.data = np.zeros(module.bias.shape, np.float32)
    return model


# Positions inside a stride-32 cell, in pairs (o, 31 - o): their mean is the cell's centre, and
# the same holds inside the stride-16 and stride-8 cells (o mod 16 and (31 - o) mod 16 also pair
# up). Cells start where the padded input does: conv1_1's padding P puts image column x at
# padded column x + P - 1, and pool5 cells start at padded multiples of 32, i.e. at
# x = -(P - 1) (mod 32): 29 for the paper's P = 100, 16 for the small preset's 49.
CELL_OFFSETS = np.array([0, 31, 5, 26, 10, 21, 13, 18])


def _cell_start(first_padding):
    """The cell start near 93 (room for the widest upsampled bump on both sides)."""
    return 93 - (93 + first_padding - 1) % 32


def _displacements(model, size=200):
    """(centroid of the output) - (position of a single bright input pixel), in x and y, for a
    pixel at each of the CELL_OFFSETS positions of one cell. For a correctly aligned network each
    output bump is centred on the centre of the cell holding its pixel, so the mean is 0."""
    t = _cell_start(model.encoder.first_padding) + CELL_OFFSETS
    x = np.zeros((len(t), 1, size, size), np.float32)
    x[np.arange(len(t)), 0, t, t] = 1.0
    with ms.no_grad():
        y = model(ms.tensor(x)).numpy()[:, 0]  # (n, size, size)
    assert np.all(y >= -1e-6)
    cols = np.arange(size)
    mass = y.sum(axis=(1, 2))
    assert np.all(mass > 0)
    # the bump must lie inside the image, else its centroid would be biased
    assert np.all(y[:, :, :2] < 1e-6 * mass[:, None, None]) and np.all(y[:, :, -2:] < 1e-6)
    cx = (y.sum(axis=1) * cols).sum(axis=1) / mass
    cy = (y.sum(axis=2) * cols).sum(axis=1) / mass
    return cx - t, cy - t


@pytest.mark.parametrize(
    "variant, path",
    [
        ("32s", "fr"),
        ("16s", "fr"),
        ("16s", "pool4"),
        ("8s", "fr"),
        ("8s", "pool4"),
        ("8s", "pool3"),
    ],
)
@pytest.mark.parametrize("geometry", [{}, SMALL_GEOMETRY], ids=["paper", "small"])
def test_crops_align_the_output_with_the_input(variant, path, geometry):
    model = _identity_network(_tiny(variant, **geometry), path).eval()
    dx, dy = _displacements(model)
    assert abs(dx.mean()) < 1e-3 and abs(dy.mean()) < 1e-3, (variant, path, dx, dy)
    # and every bump is centred within half a cell (32, 16 or 8 pixels) of its pixel
    cell = {"fr": 32, "pool4": 16, "pool3": 8}[path]
    assert np.all(np.abs(dx) <= cell / 2) and np.all(np.abs(dy) <= cell / 2)


def test_alignment_check_detects_a_wrong_offset():
    model = _identity_network(_tiny("32s"), "fr").eval()
    model.crop.offset = 0  # the crop a port without the derivation might use
    dx, _ = _displacements(model)
    assert abs(dx.mean() - 19) < 1e-3


# ----------------------------------------------------------------------------- upsampling
@pytest.mark.parametrize("variant", ["32s", "16s", "8s"])
@pytest.mark.parametrize("learn", [False, "2x", True])
def test_upsampling_kernels_are_bilinear_on_the_diagonal(variant, learn):
    K = 3
    model = _tiny(variant, num_classes=K, learn_upsampling=learn)
    layers = {n: m for n, m in model.named_modules() if n.startswith("upscore")}
    expected = {
        "32s": {"upscore": 64},
        "16s": {"upscore2": 4, "upscore16": 32},
        "8s": {"upscore2": 4, "upscore_pool4": 4, "upscore8": 16},
    }[variant]
    assert set(layers) == set(expected)
    params = dict(model.named_parameters())
    state = model.state_dict()
    for name, k in expected.items():
        layer = layers[name]
        w = np.asarray(state[f"{name}.weight"])
        assert w.shape == (K, K, k, k)
        for c in range(K):
            for d in range(K):
                want = bilinear_reference(k) if c == d else np.zeros((k, k))
                np.testing.assert_allclose(w[c, d], want, atol=1e-7, err_msg=f"{name}[{c},{d}]")
        final = name in ("upscore", "upscore16", "upscore8")
        learned = learn is True or (learn == "2x" and not final)
        assert (f"{name}.weight" in params) == learned, name
        assert isinstance(layer, nn.ConvTranspose2d if learned else FixedConvTranspose2d)
        assert f"{name}.bias" not in state


@pytest.mark.parametrize("factor", [2, 8, 16, 32])
def test_bilinear_upsampling_of_a_constant_is_constant_inside(factor):
    variant, name = {
        2: ("8s", "upscore2"),
        8: ("8s", "upscore8"),
        16: ("16s", "upscore16"),
        32: ("32s", "upscore"),
    }[factor]
    layer = getattr(_tiny(variant, num_classes=2), name)
    with ms.no_grad():
        y = layer(ms.ones(1, 2, 5, 5)).numpy()
    assert y.shape == (1, 2, 4 * factor + 2 * factor, 4 * factor + 2 * factor)
    inner = y[:, :, factor:-factor, factor:-factor]  # away from the half-covered border
    np.testing.assert_allclose(inner, 1.0, atol=1e-6)


def test_fixed_upsampling_is_not_learned_but_is_saved():
    fixed = _tiny("8s", num_classes=21)
    learned = _tiny("8s", num_classes=21, learn_upsampling=True)
    assert learned.num_parameters() - fixed.num_parameters() == 21 * 21 * (16 + 16 + 256)
    assert not [n for n, _ in fixed.named_parameters() if "upscore" in n]
    state = fixed.state_dict()
    assert {"upscore2.weight", "upscore_pool4.weight", "upscore8.weight"} <= set(state)
    learned.load_state_dict(state)  # same names: fixed and learned exchange weights
    fixed.load_state_dict(learned.state_dict())


def test_fixed_upsampling_computes_what_the_learned_layer_computes():
    """The fixed layer runs per class (groups=C) while its kernel is diagonal, and as a full
    transposed convolution once a non-diagonal kernel is loaded into it."""
    fixed = _tiny("8s", num_classes=3).upscore8
    learned = _tiny("8s", num_classes=3, learn_upsampling=True).upscore8
    x = ms.tensor(np.random.default_rng(0).standard_normal((2, 3, 5, 6)).astype(np.float32))
    with ms.no_grad():
        np.testing.assert_allclose(fixed(x).numpy(), learned(x).numpy(), rtol=1e-5, atol=1e-6)
    mixing = np.random.default_rng(1).standard_normal((3, 3, 16, 16)).astype(np.float32)
    fixed.load_state_dict({"weight": mixing})
    learned.load_state_dict({"weight": mixing})
    assert fixed._diagonal() is None
    with ms.no_grad():
        np.testing.assert_allclose(fixed(x).numpy(), learned(x).numpy(), rtol=1e-4, atol=1e-5)


def test_fixed_upsampling_gets_no_gradient_and_learned_does():
    for learn in (False, True):
        model = _tiny("8s", num_classes=2, learn_upsampling=learn).train()
        rng = np.random.default_rng(0)
        for name, p in model.named_parameters():
            if name.startswith("score"):
                p.data = rng.normal(0, 1, p.shape).astype(np.float32)
        out = model(ms.tensor(rng.normal(0, 1, (1, 1, 20, 20)).astype(np.float32)))
        (out * out).sum().backward()
        if learn:
            assert np.any(model.upscore8.weight.grad)
        else:
            assert isinstance(model.upscore8.weight, np.ndarray)  # a buffer: nothing to update


def test_score_layers_start_at_zero():
    model = _tiny("8s", num_classes=4)
    for name in ("score_fr", "score_pool4", "score_pool3"):
        layer = getattr(model, name)
        assert not np.any(layer.weight.numpy()) and not np.any(layer.bias.numpy()), name
    with ms.no_grad():
        out = model.eval()(ms.ones(1, 1, 20, 20))
    assert not np.any(out.numpy())


def test_at_once_scales_pool4_and_pool3():
    assert _tiny("8s", at_once=True).scale_pool4.factor == 0.01
    assert _tiny("8s", at_once=True).scale_pool3.factor == 1e-4
    assert not hasattr(_tiny("8s"), "scale_pool4")
    x = ms.tensor(np.random.default_rng(0).random((1, 1, 40, 40)).astype(np.float32))
    for path, factor in (("pool4", 0.01), ("pool3", 1e-4)):
        plain = _identity_network(_tiny("8s"), path).eval()
        scaled = _identity_network(_tiny("8s", at_once=True), path).eval()
        with ms.no_grad():
            a, b = plain(x).numpy(), scaled(x).numpy()
        assert np.any(a)
        np.testing.assert_allclose(b, factor * a, rtol=1e-5, atol=1e-12)


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match="learn_upsampling"):
        _tiny("8s", learn_upsampling="sometimes")
    with pytest.raises(ValueError, match="input must have shape"):
        _tiny("8s")(ms.zeros(1, 3, 20, 20))

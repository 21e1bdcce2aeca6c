"""Yu & Koltun's context module and dilation8: identity initialisation (a fresh module returns its
input), receptive field 67, the large module's channel plan, parameter counts."""

from __future__ import annotations

import numpy as np
import pytest

import minisegnet as ms
from minisegnet import models
from minisegnet.models.context import CONTEXT_DILATIONS, ContextModule, identity_weight


def _x(shape, seed=0):
    return ms.tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def test_fresh_basic_module_is_the_identity_on_its_input():
    module = ContextModule(7, seed=0)
    x = _x((2, 7, 11, 13))
    x_pos = ms.tensor(np.abs(x.numpy()))
    with ms.no_grad():
        np.testing.assert_array_equal(module(x_pos).numpy(), x_pos.numpy())
        # the ReLUs after each layer truncate: max(x, 0) in general
        np.testing.assert_array_equal(module(x).numpy(), np.maximum(x.numpy(), 0))


def test_large_module_is_the_identity_without_noise_and_close_with_it():
    x = ms.tensor(np.abs(_x((1, 3, 9, 9)).numpy()))
    with ms.no_grad():
        exact = ContextModule(3, "large", noise=0.0)(x).numpy()
        noisy = ContextModule(3, "large", seed=0)(x).numpy()
    np.testing.assert_allclose(exact, x.numpy(), rtol=1e-5, atol=1e-6)
    assert 0 < np.abs(noisy - x.numpy()).max() < 0.05  # eps breaks the copies' symmetry


def test_identity_weight_groups_channels():
    w = identity_weight(4, 2, 3, C=2)  # C -> 2C: each channel copied twice at half the value
    centre = w[:, :, 1, 1]
    np.testing.assert_array_equal(centre, 0.5 * np.array([[1, 0], [1, 0], [0, 1], [0, 1]]))
    assert not np.any(w[:, :, 0, :]) and not np.any(w[:, :, :, 0])
    back = identity_weight(2, 4, 1, C=2)[:, :, 0, 0]  # 2C -> C: sums the copies
    np.testing.assert_array_equal(back, [[1, 1, 0, 0], [0, 0, 1, 1]])


def test_receptive_field_is_67():
    module = ContextModule(1)
    assert module.receptive_field() == 67
    # measure it: the output centre's gradient reaches exactly 67 x 67 input pixels
    x = ms.tensor(np.ones((1, 1, 81, 81), np.float32), requires_grad=True)
    module(x)[0, 0, 40, 40].backward()
    rows = np.nonzero(np.any(x.grad[0, 0] != 0, axis=1))[0]
    # the identity kernels only pass the centre tap; give every tap a weight to see the field
    assert rows.tolist() == [40]
    for name in module.names:
        layer = getattr(module, name)
        if hasattr(layer, "weight"):
            layer.weight.data[...] = 1.0
    x.grad = None
    module(x)[0, 0, 40, 40].backward()
    rows = np.nonzero(np.any(x.grad[0, 0] != 0, axis=1))[0]
    assert (rows.min(), rows.max()) == (40 - 33, 40 + 33)
    assert [getattr(module, n).dilation[0] for n in module.names[::2][:7]] == list(
        CONTEXT_DILATIONS
    )


def test_dilation8_counts():
    front = models.build("dilation8", 21, context=None, materialize=False).num_parameters()
    assert front == 14_714_688 + 102_764_544 + 16_781_312 + 86_037 == 134_346_581
    basic = models.build("dilation8", 21, materialize=False).num_parameters()
    assert basic - front == 7 * (9 * 21 * 21 + 21) + 21 * 21 + 21 == 28_392
    large = models.build("dilation8", 21, context="large", materialize=False)
    assert large.num_parameters() - front == 6_803_139


def test_dilation8_output_stride_8():
    model = models.build("dilation8", 4, preset="small", seed=0).eval()
    feats = []
    model.context.register_forward_hook(lambda m, i, o: feats.append(o.shape))
    with ms.no_grad():
        assert model(_x((1, 3, 45, 64))).shape == (1, 4, 45, 64)
    assert feats == [(1, 4, 6, 8)]


@pytest.mark.parametrize(
    "call, words",
    [
        (lambda: ContextModule(3, "huge"), "variant must be 'basic' or 'large'"),
        (lambda: ContextModule(0), "channels must be a positive int"),
        (lambda: models.build("dilation8", 3, context="big"), "context must be"),
    ],
)
def test_bad_options_are_named(call, words):
    with pytest.raises(ValueError, match=words):
        call()

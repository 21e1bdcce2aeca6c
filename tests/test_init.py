"""Initialisers (minisegnet/nn/init.py): statistics, reproducibility, and the FCN bilinear
kernel, checked by upsampling maps with a transposed convolution."""

from __future__ import annotations

import numpy as np
import pytest

import minisegnet as ms
import minisegnet.functional as F
from minisegnet import nn
from minisegnet.nn import init
from tests.helpers import distinct


def parameter(shape, dtype=np.float32):
    return nn.Parameter(np.zeros(shape, dtype=dtype), dtype=dtype)


# ----------------------------------------------------------------------------- random inits
@pytest.mark.parametrize(
    "shape, mode, nonlinearity, a, fan",
    [
        ((256, 128, 3, 3), "fan_in", "relu", 0, 128 * 9),
        ((256, 128, 3, 3), "fan_out", "relu", 0, 256 * 9),
        ((64, 512), "fan_in", "linear", 0, 512),
        ((128, 64, 4, 4), "fan_in", "leaky_relu", 0.2, 64 * 16),  # transposed conv: dim 1
    ],
)
def test_kaiming_normal_std(shape, mode, nonlinearity, a, fan):
    w = parameter(shape)
    assert init.kaiming_normal_(w, a=a, mode=mode, nonlinearity=nonlinearity, seed=0) is w
    gain = {"relu": np.sqrt(2), "linear": 1.0, "leaky_relu": np.sqrt(2 / (1 + a * a))}
    expected = gain[nonlinearity] / np.sqrt(fan)
    values = w.numpy()
    assert values.dtype == np.float32
    assert abs(values.std() - expected) < 0.02 * expected
    assert abs(values.mean()) < 0.02 * expected


def test_random_inits_are_reproducible_with_a_seed_and_differ_without():
    a, b, c = parameter((32, 16, 3, 3)), parameter((32, 16, 3, 3)), parameter((32, 16, 3, 3))
    init.kaiming_normal_(a, seed=3)
    init.kaiming_normal_(b, seed=3)
    init.kaiming_normal_(c, seed=4)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert not np.array_equal(a.numpy(), c.numpy())
    rng = np.random.default_rng(0)  # one generator: consecutive calls draw different values
    init.normal_(a, seed=rng)
    init.normal_(b, seed=rng)
    assert not np.array_equal(a.numpy(), b.numpy())
    init.normal_(a, seed=np.random.default_rng(0))
    init.normal_(b, seed=np.random.default_rng(0))
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_normal_zeros_constant():
    w = parameter((200, 300), np.float64)
    init.normal_(w, mean=2.0, std=0.5, seed=0)
    assert w.dtype == np.float64
    assert abs(w.numpy().mean() - 2.0) < 0.01 and abs(w.numpy().std() - 0.5) < 0.01
    assert np.all(init.zeros_(w).numpy() == 0)
    assert np.all(init.constant_(w, 0.25).numpy() == 0.25)


def test_init_errors():
    with pytest.raises(TypeError, match="Tensor"):
        init.zeros_(np.zeros(3))
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_normal_(parameter((3, 3)), mode="fan_middle")
    with pytest.raises(ValueError, match="nonlinearity"):
        init.kaiming_normal_(parameter((3, 3)), nonlinearity="swish")
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        init.kaiming_normal_(parameter((3,)))
    with pytest.raises(ValueError, match="std"):
        init.normal_(parameter((3,)), std=-1)
    with pytest.raises(ValueError, match=r"\(C, C, kh, kw\)"):
        init.bilinear_(parameter((3, 2, 4, 4)))
    with pytest.raises(ValueError, match="kernel sizes"):
        init.bilinear_kernel(0)


def test_layers_default_init_is_he_normal_and_zero_bias():
    conv = nn.Conv2d(128, 64, 3, seed=0)
    assert np.all(conv.bias.numpy() == 0)
    expected = np.sqrt(2 / (128 * 9))
    assert abs(conv.weight.numpy().std() - expected) < 0.03 * expected
    up = nn.ConvTranspose2d(64, 32, 4, stride=2, seed=0)
    # each output sums 64 channels x 4*4 taps / (2*2) stride: 256 products (not PyTorch's 32*16)
    expected = np.sqrt(2 / (64 * 16 / 4))
    assert abs(up.weight.numpy().std() - expected) < 0.03 * expected
    assert np.all(up.bias.numpy() == 0)


@pytest.mark.parametrize("stride", [1, 2])
def test_transposed_conv_default_init_keeps_the_activation_scale(stride):
    """He's fan-in: inputs relu(z), z ~ N(0, 1) (mean square 1/2), give outputs of variance
    fan_in * (2 / fan_in) * 1/2 = 1, whether the layer widens or narrows the channels."""
    rng = np.random.default_rng(0)
    x = ms.tensor(np.maximum(rng.standard_normal((4, 128, 12, 12)), 0).astype(np.float32))
    for cin, cout in ((128, 32), (128, 256)):  # reducing and widening the channels
        up = nn.ConvTranspose2d(cin, cout, 4, stride=stride, padding=1, seed=1)
        y = up(x).numpy()[:, :, 2:-2, 2:-2]  # interior: every output has all its taps
        assert 0.8 < float(np.mean(y**2)) < 1.25, (cin, cout, stride, float(np.mean(y**2)))


# ----------------------------------------------------------------------------- bilinear
def test_bilinear_kernel_values():
    np.testing.assert_allclose(
        init.bilinear_kernel(4), np.outer([0.25, 0.75, 0.75, 0.25], [0.25, 0.75, 0.75, 0.25])
    )
    np.testing.assert_allclose(init.bilinear_kernel(3), np.outer([0.5, 1, 0.5], [0.5, 1, 0.5]))
    np.testing.assert_allclose(init.bilinear_kernel(1), [[1.0]])
    k16 = init.bilinear_kernel(16)  # FCN-8s upscore8: factor 8, center 7.5
    np.testing.assert_allclose(k16[7, 7], (1 - 0.5 / 8) ** 2)
    np.testing.assert_allclose(k16, k16[::-1, ::-1])  # symmetric
    assert init.bilinear_kernel((4, 3)).shape == (4, 3)


def test_bilinear_fills_only_the_diagonal():
    w = parameter((5, 5, 4, 4))
    init.normal_(w, seed=0)  # garbage everywhere first: bilinear_ must overwrite all of it
    init.bilinear_(w)
    values = w.numpy()
    for c in range(5):
        for d in range(5):
            if c == d:
                np.testing.assert_allclose(values[c, d], init.bilinear_kernel(4))
            else:
                assert np.all(values[c, d] == 0), f"slice W[{c}, {d}] mixes classes"
    depthwise = parameter((3, 1, 4, 4))
    init.bilinear_(depthwise)
    for c in range(3):
        np.testing.assert_allclose(depthwise.numpy()[c, 0], init.bilinear_kernel(4))


def bilinear_reference(x, factor):
    """Bilinear upsampling by an integer factor, align_corners=False, without border clamping:
    y[o] = sum_i x[i] * max(0, 1 - |(o + 0.5)/f - 0.5 - i|) along each axis."""
    n_in = x.shape[-1]
    src = (np.arange(n_in * factor) + 0.5) / factor - 0.5
    taps = np.maximum(0, 1 - np.abs(src[:, None] - np.arange(n_in)[None, :]))  # (out, in)
    return np.einsum("oi,pj,ncij->ncop", taps, taps, x)


@pytest.mark.parametrize("factor", [2, 3, 4, 8])
def test_bilinear_upsampling_reproduces_interpolation(factor, cpu_backend):
    """Kernel 2f - f%2, stride f, padding (f - f%2)//2 maps n pixels to n*f and equals bilinear
    interpolation wherever the source point has two neighbours (the interior)."""
    k, pad = 2 * factor - factor % 2, (factor - factor % 2) // 2
    up = nn.ConvTranspose2d(3, 3, k, stride=factor, padding=pad, bias=False, dtype=np.float64)
    init.bilinear_(up.weight)
    n = 6
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    maps = np.stack([np.full((n, n), 1.5), 0.5 * rows - 2.0 * cols + 3.0, distinct((n, n), 0)])
    x = maps[None]  # (1, 3, n, n): a constant, a linear ramp, a random map; one per class
    with ms.backend.use(cpu_backend):
        y = up(ms.tensor(x, dtype=np.float64)).numpy()
    assert y.shape == (1, 3, n * factor, n * factor)
    inner = slice(factor, (n - 1) * factor)  # output points whose source lies inside the grid
    expected = bilinear_reference(x, factor)
    np.testing.assert_allclose(y[..., inner, inner], expected[..., inner, inner], atol=1e-12)
    np.testing.assert_allclose(y[0, 0, inner, inner], 1.5, atol=1e-12)  # constant stays
    src = (np.arange(n * factor) + 0.5) / factor - 0.5
    ramp = 0.5 * src[:, None] - 2.0 * src[None, :] + 3.0  # linear map sampled between pixels
    np.testing.assert_allclose(y[0, 1, inner, inner], ramp[inner, inner], atol=1e-12)


def test_bilinear_matches_functional_conv_transpose():
    """bilinear_ on a (C, C, k, k) weight equals upsampling each channel on its own."""
    w = parameter((4, 4, 4, 4), np.float64)
    init.bilinear_(w)
    x = ms.tensor(distinct((2, 4, 5, 5), 1), dtype=np.float64)
    y = F.conv_transpose2d(x, w, stride=2, padding=1).numpy()
    single = ms.tensor(init.bilinear_kernel(4)[None, None], dtype=np.float64)
    for c in range(4):
        one = F.conv_transpose2d(x[:, c : c + 1], single, stride=2, padding=1).numpy()
        np.testing.assert_allclose(y[:, c : c + 1], one, atol=1e-12)

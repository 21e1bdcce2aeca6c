"""U-Net: the paper's parameter count and 23 convolutions, the overlap-tile size rule (valid
sizes, the error that names them, the 92-pixel border), mirror padding, the padded variant on
odd sizes."""

from __future__ import annotations

import numpy as np
import pytest

import minisegnet as ms
from minisegnet import models, nn
from minisegnet.models.unet import mirror_index, nearest_valid_sizes, valid_output_size


def _x(shape, seed=0):
    return ms.tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def _conv(k, cin, cout):
    return k * k * cin * cout + cout


def test_paper_parameter_count_and_23_convolutions():
    model = models.build("unet", 2, in_channels=1, materialize=False)
    contracting = [(1, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256),
                   (256, 512), (512, 512), (512, 1024), (1024, 1024)]  # fmt: skip
    expected = sum(_conv(3, a, b) for a, b in contracting)
    for c in (512, 256, 128, 64):
        expected += _conv(2, 2 * c, c) + _conv(3, 2 * c, c) + _conv(3, c, c)
    expected += _conv(1, 64, 2)
    assert model.num_parameters() == expected == 31_030_658
    convs = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
    assert len(convs) == 23
    padded = models.build("unet-padded", 2, in_channels=1, materialize=False)
    assert padded.num_parameters() == 31_030_658
    assert models.build("unet", 2, materialize=False).num_parameters() == 31_030_658 + 2 * 9 * 64


def test_the_paper_tile_572_gives_388():
    assert valid_output_size(572) == 388
    assert nearest_valid_sizes(572) == (572, 572)
    assert nearest_valid_sizes(580) == (572, 588)
    assert nearest_valid_sizes(100) == (None, 188)


def test_valid_network_output_size_and_border():
    model = models.build("unet", 2, preset="small", mirror_pad=False, seed=0).eval()
    with ms.no_grad():
        y = model(_x((1, 3, 188, 204)))
    assert y.shape == (1, 2, 4, 20)
    # four 2x2 pools: shifting the input by 16 pixels shifts the output by 16, exactly (the
    # tiles of the overlap-tile strategy line up)
    x = _x((1, 3, 204, 188), seed=1)
    with ms.no_grad():
        whole = model(x).numpy()  # (1, 2, 20, 4)
        shifted = model(x[:, :, 16:, :]).numpy()  # 188 rows: (1, 2, 4, 4)
    np.testing.assert_allclose(shifted, whole[:, :, 16:20], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size, words", [(200, "nearest are 188 or 204"), (64, "nearest are 188")])
def test_a_bad_size_names_the_valid_ones(size, words):
    model = models.build("unet", 2, preset="small", mirror_pad=False)
    with pytest.raises(ValueError, match="16\\*b \\+ 124") as info:
        model(_x((1, 3, size, 188)))
    assert words in str(info.value) and "height" in str(info.value)


@pytest.mark.parametrize("length, before, after", [(4, 3, 3), (2, 3, 2), (1, 2, 1), (5, 92, 100)])
def test_mirror_by_slices_is_the_gather(length, before, after):
    from minisegnet.models.unet import _mirror

    x = _x((1, 2, length, length + 1))
    index = mirror_index(length, before, after)
    np.testing.assert_array_equal(_mirror(x, 2, index).numpy(), x.numpy()[:, :, index])
    index = mirror_index(length + 1, before, after)
    out = _mirror(x, 3, index).numpy()
    assert out.flags.c_contiguous
    np.testing.assert_array_equal(out, x.numpy()[:, :, :, index])


def test_mirror_index_reflects_without_repeating_the_edge():
    assert mirror_index(4, 3, 3).tolist() == [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
    assert mirror_index(2, 3, 2).tolist() == [1, 0, 1, 0, 1, 0, 1]  # longer than the side
    assert mirror_index(1, 2, 1).tolist() == [0, 0, 0, 0]


def test_mirror_padded_forward_is_the_valid_network_on_the_mirrored_tile():
    model = models.build("unet", 2, preset="small", seed=0).eval()
    x = _x((1, 3, 20, 37))
    with ms.no_grad():
        y = model(x).numpy()
        rows, cols = mirror_index(20, 92, 204 - 20 - 92), mirror_index(37, 92, 236 - 37 - 92)
        tile = ms.tensor(x.numpy()[:, :, rows][:, :, :, cols])
        model.mirror_pad = False
        direct = model(tile).numpy()
    assert y.shape == (1, 2, 20, 37) and direct.shape == (1, 2, 20, 52)  # 204 -> 20, 236 -> 52
    np.testing.assert_allclose(y, direct[:, :, :20, :37], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [(16, 16), (17, 45), (33, 31)])
def test_padded_variant_keeps_odd_sizes(size):
    model = models.build("unet-padded", 3, preset="small", seed=0).eval()
    with ms.no_grad():
        assert model(_x((1, 3) + size)).shape == (1, 3) + size


def test_padded_variant_refuses_less_than_16_pixels():
    model = models.build("unet-padded", 3, preset="small")
    with pytest.raises(ValueError, match="at least 16 pixels"):
        model(_x((1, 3, 15, 40)))


def test_bad_padding_option():
    with pytest.raises(ValueError, match="padding must be 'valid' or 'same'"):
        models.UNet(2, padding="reflect")

"""DeepLab-LargeFOV and DeepLab v2 (ASPP): parameter counts against the released prototxts'
layer-by-layer sums (deeplab.py's docstring), the output-stride-8 geometry, the ASPP sum, and
clear errors for bad options and inputs."""

from __future__ import annotations

import numpy as np
import pytest

import minisegnet as ms
from minisegnet import models
from minisegnet.models.deeplab import ASPP, AtrousVGG16


def _count(model, prefix=""):
    return sum(p.size for n, p in model.named_parameters() if n.startswith(prefix))


def _conv(k, cin, cout):
    return k * k * cin * cout + cout


VGG16_CONVS = sum(
    _conv(3, cin, cout)
    for cin, cout in [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256),
                      (256, 256), (256, 512), (512, 512), (512, 512), (512, 512), (512, 512),
                      (512, 512)]
)  # fmt: skip


def test_largefov_count_is_the_prototxt_sum():
    model = models.build("deeplab-largefov", 21, materialize=False)
    assert VGG16_CONVS == 14_714_688
    assert _count(model, "backbone.") == VGG16_CONVS
    assert _count(model, "fc6.") == _conv(3, 512, 1024) == 4_719_616
    assert _count(model, "fc7.") == _conv(1, 1024, 1024) == 1_049_600
    assert _count(model, "fc8.") == _conv(1, 1024, 21) == 21_525
    total = model.num_parameters()
    assert total == 20_505_429
    assert abs(total - 20_505_429) <= 0.001 * 20_505_429  # the 0.1% (exact here)


def test_v2_counts():
    vgg = models.build("deeplab-v2-vgg", 21, materialize=False)
    branch = _conv(3, 512, 1024) + _conv(1, 1024, 1024) + _conv(1, 1024, 21)
    assert branch == 5_790_741
    assert _count(vgg, "aspp.branch1.") == branch
    assert vgg.num_parameters() == VGG16_CONVS + 4 * branch == 37_877_652
    resnet = models.build("deeplab-v2-resnet", 21, materialize=False)
    assert _count(resnet, "aspp.") == 4 * _conv(3, 2048, 21) == 1_548_372
    assert resnet.num_parameters() == 42_623_936 + 1_548_372  # ResNet-101 (deep stem) + ASPP


def _pooled(h):
    """Three 3x3 stride-2 pad-1 pools with Caffe's ceil rounding: ceil((h - 1) / 2) + 1 each."""
    for _ in range(3):
        h = -(-(h - 1) // 2) + 1
    return h


def test_atrous_vgg_keeps_output_stride_8_and_aligns_8k_plus_1():
    vgg = AtrousVGG16(width=0.0625, seed=0).eval()
    for size, expected in [(321, 41), (65, 9), (64, 9), (7, 2), (1, 1)]:
        with ms.no_grad():
            y = vgg(ms.tensor(np.zeros((1, 3, size, size + 8), np.float32)))
        assert y.shape[2:] == (expected, _pooled(size + 8))
        assert _pooled(size) == expected
        if size % 8 == 1:  # 8k + 1 pixels: k + 1 features, one on every 8th pixel
            assert expected == (size - 1) // 8 + 1
    assert vgg.conv5_1.dilation == (2, 2) and vgg.conv4_3.dilation == (1, 1)
    assert vgg.pool4.stride == 1 and vgg.pool3.stride == 2


def test_aspp_is_the_sum_of_its_branches():
    aspp = ASPP(4, 3, rates=(1, 2), seed=0)
    x = ms.tensor(np.random.default_rng(0).standard_normal((1, 4, 6, 7)).astype(np.float32))
    with ms.no_grad():
        total = aspp(x).numpy()
        parts = aspp.branch1(x).numpy() + aspp.branch2(x).numpy()
    np.testing.assert_allclose(total, parts, rtol=1e-6, atol=1e-6)
    assert aspp.branch2[0].dilation == (2, 2) and aspp.branch2[0].padding == (2, 2)


def test_classifiers_use_the_prototxt_filler():
    model = models.build("deeplab-largefov", 21, preset="small", seed=0)
    w = model.fc8.weight.numpy()
    assert abs(w.std() - 0.01) < 0.002 and not np.any(model.fc8.bias.numpy())


@pytest.mark.parametrize(
    "name, options, error, words",
    [
        ("deeplab-largefov", {"rate": 0}, ValueError, "rates must be"),
        ("deeplab-v2-vgg", {"rates": ()}, ValueError, "rates must be"),
        ("deeplab-v2-vgg", {"rates": 6}, TypeError, "rates must be"),
        ("deeplab-v2-resnet", {"depth": 7}, ValueError, "depth must be one of"),
        ("deeplab-v2-vgg", {"backbone": "resnet"}, TypeError, "unknown option"),
    ],
)
def test_bad_options_are_named(name, options, error, words):
    with pytest.raises(error, match=words):
        models.build(name, 5, preset="small", **options)


def test_bad_input_is_named():
    model = models.build("deeplab-largefov", 5, preset="small", seed=0)
    with pytest.raises(ValueError, match=r"DeepLab-LargeFOV: input must have shape \(N, 3"):
        model(ms.tensor(np.zeros((1, 1, 8, 8), np.float32)))
    with pytest.raises(TypeError, match="must be a minisegnet Tensor"):
        model(np.zeros((1, 3, 8, 8), np.float32))

"""PSPNet faithfulness: auxiliary output only in training, the pyramid pooling module, output
stride 8 through dilation, align_corners=True upsampling."""

from __future__ import annotations

import numpy as np
import pytest

import minisegnet as ms
from minisegnet import models, nn

TINY = {"depth": "small", "width": 1 / 16}


def _x(n, h, w, seed=0):
    return ms.tensor(np.random.default_rng(seed).standard_normal((n, 3, h, w)).astype(np.float32))


def test_aux_output_only_in_training_mode():
    model = models.build("pspnet", 4, **TINY, seed=0)
    x = _x(2, 33, 41)
    out = model.train()(x)
    assert isinstance(out, tuple) and len(out) == 2
    main, aux = out
    assert main.shape == aux.shape == (2, 4, 33, 41)
    with ms.no_grad():
        evaluated = model.eval()(x)
    assert isinstance(evaluated, ms.Tensor) and evaluated.shape == (2, 4, 33, 41)
    # in eval mode the auxiliary head is not even run
    calls = models.capture(model, x, ["aux.0", "cls.0"])
    assert "aux.0" not in calls and "cls.0" in calls


def test_without_aux_head_training_returns_main_only():
    model = models.build("pspnet", 4, aux=False, **TINY, seed=0).train()
    out = model(_x(2, 33, 41))
    assert isinstance(out, ms.Tensor) and out.shape == (2, 4, 33, 41)
    assert not [n for n, _ in model.named_parameters() if n.startswith("aux")]


def test_pyramid_pooling_module_is_the_papers():
    model = models.build("pspnet", 21, depth=50, materialize=False)
    assert model.layer4[-1].conv3.weight.shape[0] == 2048
    branches = list(model.ppm.features)
    assert [b[0].output_size in (s, (s, s)) for b, s in zip(branches, (1, 2, 3, 6))] == [True] * 4
    for b in branches:
        assert isinstance(b[0], nn.AdaptiveAvgPool2d)
        assert b[1].weight.shape == (512, 2048, 1, 1) and b[1].bias is None  # C -> C/4, no bias
        assert isinstance(b[2], nn.BatchNorm2d) and isinstance(b[3], nn.ReLU)
    assert model.ppm.out_channels == 4096
    assert model.cls[0].weight.shape == (512, 4096, 3, 3) and model.cls[0].bias is None
    assert isinstance(model.cls[3], nn.Dropout2d) and model.cls[3].p == 0.1
    assert model.cls[4].weight.shape == (21, 512, 1, 1)
    assert model.aux[0].weight.shape == (256, 1024, 3, 3)
    assert model.aux[4].weight.shape == (21, 256, 1, 1)


def test_deep_stem_and_dilations():
    model = models.build("pspnet", 21, depth=101, materialize=False)
    stem = [m.weight.shape for m in model.layer0 if isinstance(m, nn.Conv2d)]
    assert stem == [(64, 3, 3, 3), (64, 64, 3, 3), (128, 64, 3, 3)]
    assert [len(model.layer1), len(model.layer2), len(model.layer3), len(model.layer4)] == [
        3,
        4,
        23,
        3,
    ]

    def geometry(conv):
        def pair(v):
            return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

        return pair(conv.stride), pair(conv.dilation), pair(conv.padding)

    assert geometry(model.layer2[0].conv2) == ((2, 2), (1, 1), (1, 1))
    for block in model.layer3:
        assert geometry(block.conv2) == ((1, 1), (2, 2), (2, 2))
    for block in model.layer4:
        assert geometry(block.conv2) == ((1, 1), (4, 4), (4, 4))
    assert geometry(model.layer3[0].downsample[0])[0] == (1, 1)


def test_output_stride_8_on_the_papers_473_crop():
    model = models.build("pspnet", 2, depth="small", width=1 / 64, seed=0).eval()
    acts = models.capture(model, _x(1, 473, 473), ["layer2", "layer4", "cls.4"])
    assert acts["layer4"].shape[2:] == (60, 60)  # 473 -> 60, as in the paper
    assert acts["cls.4"].shape[2:] == (60, 60)


def test_final_upsampling_uses_align_corners_true():
    """With H = 8k + 1 and align_corners=True every 8th output pixel is a feature pixel exactly."""
    model = models.build("pspnet", 3, **TINY, seed=0).eval()
    x = _x(1, 65, 73)
    acts = models.capture(model, x, ["cls.4"])
    with ms.no_grad():
        out = model(x).numpy()
    scores = acts["cls.4"].numpy()
    assert scores.shape[2:] == (9, 10)
    np.testing.assert_allclose(out[:, :, ::8, ::8], scores, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("output_stride, size", [(8, 8), (16, 4), (32, 2)])
def test_output_stride_option(output_stride, size):
    model = models.build("pspnet", 2, output_stride=output_stride, **TINY, seed=0).eval()
    acts = models.capture(model, _x(1, 64, 64), ["layer4"])
    assert acts["layer4"].shape[2:] == (size, size)

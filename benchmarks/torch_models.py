"""PyTorch twins of the minisegnet networks, for the model benchmarks (PyTorch stays optional).

Every class here mirrors ``minisegnet/models/<name>.py`` layer for layer: the same layers in the
same order, the same kernels, strides, paddings, dilations, ceil-mode pools with switches,
unpooling to the encoder's sizes, crops, fixed bilinear upsamplers, and **the same attribute
names**, so the two state dicts have the same keys. ``build(name, num_classes, **config)`` takes
the same options as ``minisegnet.models.build``; ``copy_weights(ms_model, torch_model)`` loads a
minisegnet model's parameters and buffers into its twin, and the benchmark then checks that both
give the same output (the "mirrored" column of the report), which is how we know the timings
compare the same network.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from minisegnet.models import SMALL_PRESETS as MS_SMALL_PRESETS
from minisegnet.models.common import add_unpooling_decoder, scaled, unpooling_decode
from minisegnet.models.deconvnet import ENCODER as DECONVNET_ENCODER
from minisegnet.models.deconvnet import deconvnet_decoder
from minisegnet.models.segnet import ENCODER as SEGNET_ENCODER
from minisegnet.models.segnet import segnet_decoder
from minisegnet.models.vgg import add_vgg16_layers
from minisegnet.nn.init import bilinear_kernel

__all__ = ["build", "copy_weights", "SMALL_PRESETS", "names"]


class TorchLayers:
    """PyTorch's constructors behind the interface of ``minisegnet.models.common.Layers``: the
    twins of VGG16, SegNet and DeconvNet are built by minisegnet's own builders
    (``add_vgg16_layers``, ``add_unpooling_decoder``) from its own tables, so they cannot
    drift from the networks they mirror."""

    def conv(self, c_in, c_out, kernel, padding=0):
        return nn.Conv2d(c_in, c_out, kernel, padding=padding)

    def conv_transpose(self, c_in, c_out, kernel, padding=0):
        return nn.ConvTranspose2d(c_in, c_out, kernel, padding=padding)

    def batch_norm(self, channels):
        return nn.BatchNorm2d(channels)

    def relu(self):
        return nn.ReLU()

    def max_pool(self, ceil_mode, return_indices):
        return nn.MaxPool2d(2, 2, ceil_mode=ceil_mode, return_indices=return_indices)

    def max_unpool(self):
        return nn.MaxUnpool2d(2, 2)

    def dropout(self, p):
        return nn.Dropout(p)


# ----------------------------------------------------------------------------- VGG16
class VGG16(nn.Module):
    def __init__(
        self,
        width=1.0,
        in_channels=3,
        batch_norm=False,
        first_padding=1,
        ceil_mode=True,
        return_indices=False,
        fc_channels=None,
        fc_kernel=7,
        fc_batch_norm=None,
        fc_dropout=0.0,
    ):
        super().__init__()
        self.width, self.in_channels, self.batch_norm = width, in_channels, batch_norm
        self.first_padding, self.ceil_mode = first_padding, ceil_mode
        self.return_indices, self.fc_channels, self.fc_kernel = (
            return_indices,
            fc_channels,
            fc_kernel,
        )
        add_vgg16_layers(self, TorchLayers(), fc_batch_norm, fc_dropout)

    def forward(self, x):
        out = SimpleNamespace(pools=[], switches=[], sizes=[], fc7=None)
        for s, names in enumerate(self.stage_names, start=1):
            for name in names:
                x = getattr(self, name)(x)
            out.sizes.append(tuple(x.shape[2:]))
            pooled = getattr(self, f"pool{s}")(x)
            x, switches = pooled if self.return_indices else (pooled, None)
            out.pools.append(x)
            out.switches.append(switches)
        for name in self.fc_names:
            x = getattr(self, name)(x)
        if self.fc_names:
            out.fc7 = x
        return out


# ----------------------------------------------------------------------------- FCN
def fcn_offsets(variant, first_padding=100, fc_kernel=7):
    """Caffe's crop offsets for conv1_1 padding P and a K x K fc6 (19, (5, 27), (5, 9, 31) for
    the paper's P = 100, K = 7)."""
    shift = first_padding - 16 * fc_kernel
    return {
        "32s": {"out": 31 + shift},
        "16s": {"pool4": fc_kernel - 2, "out": 39 + shift},
        "8s": {"pool4": fc_kernel - 2, "pool3": 2 * fc_kernel - 5, "out": 43 + shift},
    }[variant]


class Crop(nn.Module):
    def __init__(self, offset):
        super().__init__()
        self.offset = offset

    def forward(self, x, size):
        o = self.offset
        return x[:, :, o : o + size[0], o : o + size[1]]


class Scale(nn.Module):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def forward(self, x):
        return x * self.factor


class FixedConvTranspose2d(nn.Module):
    """Transposed conv with a fixed weight held as a buffer (as minisegnet's)."""

    def __init__(self, weight, stride):
        super().__init__()
        self.register_buffer("weight", torch.as_tensor(weight))
        self.stride = stride

    def forward(self, x):
        return F.conv_transpose2d(x, self.weight, None, stride=self.stride)


def bilinear_upsampler(channels, factor, learnable):
    k = 2 * factor
    weight = np.zeros((channels, channels, k, k), np.float32)
    weight[np.arange(channels), np.arange(channels)] = bilinear_kernel(k)
    if learnable:
        layer = nn.ConvTranspose2d(channels, channels, k, stride=factor, bias=False)
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(weight))
        return layer
    return FixedConvTranspose2d(weight, factor)


class FCN(nn.Module):
    def __init__(
        self,
        num_classes=21,
        variant="8s",
        width=1.0,
        fc_channels=4096,
        fc_kernel=7,
        first_padding=100,
        learn_upsampling=False,
        at_once=False,
        dropout=0.5,
        in_channels=3,
    ):
        super().__init__()
        self.variant, self.at_once = variant, at_once
        offsets = fcn_offsets(variant, first_padding, fc_kernel)
        learn_2x, learn_final = learn_upsampling in (True, "2x"), learn_upsampling is True
        self.encoder = VGG16(
            width,
            in_channels,
            first_padding=first_padding,
            ceil_mode=True,
            fc_channels=fc_channels,
            fc_kernel=fc_kernel,
            fc_dropout=dropout,
        )
        self.score_fr = nn.Conv2d(fc_channels, num_classes, 1)
        if variant == "32s":
            self.upscore = bilinear_upsampler(num_classes, 32, learn_final)
        else:
            self.upscore2 = bilinear_upsampler(num_classes, 2, learn_2x)
            if at_once:
                self.scale_pool4 = Scale(0.01)
            self.score_pool4 = nn.Conv2d(scaled(512, width), num_classes, 1)
            self.crop_pool4 = Crop(offsets["pool4"])
        if variant == "16s":
            self.upscore16 = bilinear_upsampler(num_classes, 16, learn_final)
        if variant == "8s":
            self.upscore_pool4 = bilinear_upsampler(num_classes, 2, learn_2x)
            if at_once:
                self.scale_pool3 = Scale(1e-4)
            self.score_pool3 = nn.Conv2d(scaled(256, width), num_classes, 1)
            self.crop_pool3 = Crop(offsets["pool3"])
            self.upscore8 = bilinear_upsampler(num_classes, 8, learn_final)
        self.crop = Crop(offsets["out"])

    def forward(self, x):
        H, W = x.shape[2:]
        features = self.encoder(x)
        score = self.score_fr(features.fc7)
        if self.variant == "32s":
            return self.crop(self.upscore(score), (H, W))
        up2 = self.upscore2(score)
        pool4 = features.pools[3]
        if self.at_once:
            pool4 = self.scale_pool4(pool4)
        fuse4 = up2 + self.crop_pool4(self.score_pool4(pool4), up2.shape[2:])
        if self.variant == "16s":
            return self.crop(self.upscore16(fuse4), (H, W))
        up4 = self.upscore_pool4(fuse4)
        pool3 = features.pools[2]
        if self.at_once:
            pool3 = self.scale_pool3(pool3)
        fuse3 = up4 + self.crop_pool3(self.score_pool3(pool3), up4.shape[2:])
        return self.crop(self.upscore8(fuse3), (H, W))


# ----------------------------------------------------------------------------- DeconvNet
class DeconvNet(nn.Module):
    def __init__(self, num_classes=21, width=1.0, fc_channels=4096, fc_kernel=7, in_channels=3):
        super().__init__()
        self.encoder = VGG16(
            width, in_channels, fc_channels=fc_channels, fc_kernel=fc_kernel, **DECONVNET_ENCODER
        )
        c = scaled(512, width)
        self.fc6_deconv = nn.ConvTranspose2d(fc_channels, c, fc_kernel)
        self.fc6_deconv_bn = nn.BatchNorm2d(c)
        self.fc6_deconv_relu = nn.ReLU()
        c, self.decoder_names = add_unpooling_decoder(
            self, TorchLayers(), deconvnet_decoder(width), c, True, "unpool"
        )
        self.seg_score = nn.Conv2d(c, num_classes, 1)

    def forward(self, x):
        features = self.encoder(x)
        y = self.fc6_deconv_relu(self.fc6_deconv_bn(self.fc6_deconv(features.fc7)))
        y = unpooling_decode(self, y, features, "unpool")
        return self.seg_score(y)


# ----------------------------------------------------------------------------- SegNet
class SegNet(nn.Module):
    def __init__(self, num_classes=11, width=1.0, in_channels=3):
        super().__init__()
        self.encoder = VGG16(width, in_channels, **SEGNET_ENCODER)
        c, self.decoder_names = add_unpooling_decoder(
            self, TorchLayers(), segnet_decoder(width), self.encoder.out_channels, False, "upsample"
        )
        self.classifier = nn.Conv2d(c, num_classes, 1)

    def forward(self, x):
        features = self.encoder(x)
        y = unpooling_decode(self, features.pools[4], features, "upsample")
        return self.classifier(y)


class SegNetBasic(nn.Module):
    """LRN; 4 x (7x7 conv 64 + BN + ReLU + pool w/ switches); 4 x (unpool + 7x7 conv, no bias,
    + BN, no ReLU); 1x1 classifier -- the paper's SegNet-Basic."""

    def __init__(self, num_classes=11, width=1.0, depth=4, kernel_size=7, in_channels=3):
        super().__init__()
        self.depth = depth
        c = scaled(64, width)
        pad = kernel_size // 2
        self.norm = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        c_in = in_channels
        for i in range(1, depth + 1):
            setattr(self, f"conv{i}", nn.Conv2d(c_in, c, kernel_size, padding=pad))
            setattr(self, f"conv{i}_bn", nn.BatchNorm2d(c))
            setattr(self, f"relu{i}", nn.ReLU())
            setattr(self, f"pool{i}", nn.MaxPool2d(2, 2, ceil_mode=True, return_indices=True))
            c_in = c
        for i in range(depth, 0, -1):
            setattr(self, f"upsample{i}", nn.MaxUnpool2d(2, 2))
            setattr(self, f"conv_decode{i}", nn.Conv2d(c, c, kernel_size, padding=pad, bias=False))
            setattr(self, f"conv_decode{i}_bn", nn.BatchNorm2d(c))
        self.conv_classifier = nn.Conv2d(c, num_classes, 1)

    def forward(self, x):
        y = self.norm(x)
        switches, sizes = [], []
        for i in range(1, self.depth + 1):
            y = getattr(self, f"relu{i}")(
                getattr(self, f"conv{i}_bn")(getattr(self, f"conv{i}")(y))
            )
            sizes.append(tuple(y.shape[2:]))
            y, idx = getattr(self, f"pool{i}")(y)
            switches.append(idx)
        for i in range(self.depth, 0, -1):
            y = getattr(self, f"upsample{i}")(y, switches[i - 1], output_size=sizes[i - 1])
            y = getattr(self, f"conv_decode{i}_bn")(getattr(self, f"conv_decode{i}")(y))
        return self.conv_classifier(y)


# ----------------------------------------------------------------------------- PSPNet
RESNET_LAYERS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), "small": (1, 1, 1, 1)}


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, dilation=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = downsample
        self.relu3 = nn.ReLU()

    def forward(self, x):
        skip = x if self.downsample is None else self.downsample(x)
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.relu2(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu3(y + skip)


class PyramidPooling(nn.Module):
    def __init__(self, in_channels, reduction, bins=(1, 2, 3, 6)):
        super().__init__()
        self.features = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(b),
                nn.Conv2d(in_channels, reduction, 1, bias=False),
                nn.BatchNorm2d(reduction),
                nn.ReLU(),
            )
            for b in bins
        )
        self.out_channels = in_channels + len(bins) * reduction

    def forward(self, x):
        size = x.shape[2:]
        out = [x]
        for branch in self.features:
            out.append(F.interpolate(branch(x), size=size, mode="bilinear", align_corners=True))
        return torch.cat(out, 1)


class PSPNet(nn.Module):
    def __init__(
        self,
        num_classes=21,
        depth=50,
        width=1.0,
        bins=(1, 2, 3, 6),
        dropout=0.1,
        aux=True,
        output_stride=8,
        layers=None,
        in_channels=3,
    ):
        super().__init__()
        layers = RESNET_LAYERS[depth] if layers is None else tuple(layers)
        sd = {
            8: ((2, 1), (1, 2), (1, 4)),
            16: ((2, 1), (2, 1), (1, 2)),
            32: ((2, 1), (2, 1), (2, 1)),
        }
        s64, s128 = scaled(64, width), scaled(128, width)
        self.layer0 = nn.Sequential(
            nn.Conv2d(in_channels, s64, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(s64),
            nn.ReLU(),
            nn.Conv2d(s64, s64, 3, padding=1, bias=False),
            nn.BatchNorm2d(s64),
            nn.ReLU(),
            nn.Conv2d(s64, s128, 3, padding=1, bias=False),
            nn.BatchNorm2d(s128),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self._inplanes = s128
        (s2, d2), (s3, d3), (s4, d4) = sd[output_stride]
        self.layer1 = self._make_layer(scaled(64, width), layers[0], 1, 1)
        self.layer2 = self._make_layer(scaled(128, width), layers[1], s2, d2)
        self.layer3 = self._make_layer(scaled(256, width), layers[2], s3, d3)
        c3 = self._inplanes
        self.layer4 = self._make_layer(scaled(512, width), layers[3], s4, d4)
        C = self._inplanes
        self.ppm = PyramidPooling(C, C // len(tuple(bins)), bins)
        mid = max(1, round(512 * width))
        self.cls = nn.Sequential(
            nn.Conv2d(self.ppm.out_channels, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid),
            nn.ReLU(),
            nn.Dropout2d(dropout),
            nn.Conv2d(mid, num_classes, 1),
        )
        self.aux = None
        if aux:
            m = max(1, round(256 * width))
            self.aux = nn.Sequential(
                nn.Conv2d(c3, m, 3, padding=1, bias=False),
                nn.BatchNorm2d(m),
                nn.ReLU(),
                nn.Dropout2d(dropout),
                nn.Conv2d(m, num_classes, 1),
            )

    def _make_layer(self, planes, blocks, stride, dilation):
        downsample = None
        if stride != 1 or self._inplanes != planes * 4:
            downsample = nn.Sequential(
                nn.Conv2d(self._inplanes, planes * 4, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * 4),
            )
        layer = [Bottleneck(self._inplanes, planes, stride, dilation, downsample)]
        self._inplanes = planes * 4
        layer += [Bottleneck(self._inplanes, planes, 1, dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layer)

    def forward(self, x):
        H, W = x.shape[2:]
        c3 = self.layer3(self.layer2(self.layer1(self.layer0(x))))
        c4 = self.layer4(c3)
        main = F.interpolate(
            self.cls(self.ppm(c4)), size=(H, W), mode="bilinear", align_corners=True
        )
        if self.training and self.aux is not None:
            aux = F.interpolate(self.aux(c3), size=(H, W), mode="bilinear", align_corners=True)
            return main, aux
        return main


# ----------------------------------------------------------------------------- building
_BUILDERS = {
    "fcn32s": lambda k, **c: FCN(k, "32s", **c),
    "fcn16s": lambda k, **c: FCN(k, "16s", **c),
    "fcn8s": lambda k, **c: FCN(k, "8s", **c),
    "deconvnet": DeconvNet,
    "segnet": SegNet,
    "segnet_basic": SegNetBasic,
    "pspnet": PSPNet,
}


# minisegnet's small configurations, for the networks that have a twin.
SMALL_PRESETS = {name: dict(MS_SMALL_PRESETS[name]) for name in _BUILDERS}


def names() -> list[str]:
    return sorted(_BUILDERS)


def build(name: str, num_classes: int, preset: str = "full", **config) -> nn.Module:
    """The PyTorch twin of ``minisegnet.models.build(name, num_classes, preset, **config)``."""
    options = dict(SMALL_PRESETS[name]) if preset == "small" else {}
    options.update(config)
    return _BUILDERS[name](num_classes, **options)


def copy_weights(ms_model, torch_model) -> list[str]:
    """Load every parameter and buffer of a minisegnet model into its twin, by name.

    Returns the keys that could not be matched (empty when the twin is a faithful mirror).
    """
    ms_state = ms_model.state_dict()
    t_state = torch_model.state_dict()
    # minisegnet's dropout layers keep their random stream (seed, step) as buffers; PyTorch's
    # dropout has no state. They are not weights.
    ms_keys = {k for k in ms_state if not k.endswith((".seed", ".step"))}
    problems = sorted(ms_keys ^ set(t_state))
    with torch.no_grad():
        for key, value in ms_state.items():
            if key not in t_state:
                continue
            target = t_state[key]
            value = np.asarray(value)
            if tuple(value.shape) != tuple(target.shape):
                problems.append(f"{key}: shape {value.shape} vs {tuple(target.shape)}")
                continue
            target.copy_(torch.from_numpy(np.array(value)).to(target.dtype))
    return problems

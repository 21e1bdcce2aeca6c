"""Dilated ResNet (He et al. 2016; dilated as in PSPNet and hszhao/semseg) for PSPNet.

Deep stem (the "deep base" of PSPNet's ResNets: three 3x3 convs instead of one 7x7)::

    layer0:  conv 3x3 s2 -> 64, BN, ReLU, conv 3x3 -> 64, BN, ReLU, conv 3x3 -> 128, BN, ReLU,
             max pool 3x3 s2 p1                                             stride 4
    layer1:  bottlenecks, 64 -> 256 channels                                stride 4
    layer2:  bottlenecks, 128 -> 512, the first with stride 2               stride 8
    layer3:  bottlenecks, 256 -> 1024, stride 1, **dilation 2**             stride 8
    layer4:  bottlenecks, 512 -> 2048, stride 1, **dilation 4**             stride 8

Blocks per layer: ResNet-50 (3, 4, 6, 3), ResNet-101 (3, 4, 23, 3).

Bottleneck (ResNet v1.5, as semseg and torchvision: the stride sits on the 3x3 conv)::

    y = relu(bn3(conv3_1x1(relu(bn2(conv2_3x3(relu(bn1(conv1_1x1(x))), stride, dilation))))) + skip)
    skip = x, or bn(conv1x1(x, stride)) when the shape changes (``downsample``)

All convs have no bias (BN follows each). Output stride 8 via dilation: the original ResNet
strides by 2 in layer3 and layer4 (output stride 32); PSPNet removes those strides and dilates
the 3x3 convs instead (2 in layer3, 4 in layer4), so every layer sees the receptive field it was
designed for while the feature map stays at 1/8 of the input (473 -> 60). As in semseg, *every*
block of layer3 uses dilation 2 (including the first), and the downsample conv of the first block
uses stride 1. ``output_stride=16`` (dilation only in layer4) and ``32`` (none) are options.

State-dict names follow semseg's PSPNet (``layer0.0.weight`` for the first stem conv,
``layer1.0.conv1.weight``, ``layer1.0.downsample.0.weight``), so its layer table can be read
side by side.

For CPU work, ``depth="small"`` is the same design with one bottleneck per layer; combined with
``width`` (channel multiplier) it keeps the deep stem, the dilations and the output stride.
"""

from __future__ import annotations

from minisegnet import nn
from minisegnet.models.common import make_rng, scaled

__all__ = ["Bottleneck", "DilatedResNet", "RESNET_LAYERS"]

RESNET_LAYERS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3), "small": (1, 1, 1, 1)}


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (stride, dilation) -> 1x1 expand (x4), plus the skip connection."""

    expansion = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
        seed=None,
    ):
        super().__init__()
        rng = make_rng(seed)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False, seed=rng)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        # padding = dilation keeps the size at stride 1: a dilated 3x3 spans 2*dilation + 1.
        self.conv2 = nn.Conv2d(
            planes,
            planes,
            3,
            stride=stride,
            padding=dilation,
            dilation=dilation,
            bias=False,
            seed=rng,
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu2 = nn.ReLU()
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False, seed=rng)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = downsample
        self.relu3 = nn.ReLU()

    def forward(self, x):
        skip = x if self.downsample is None else self.downsample(x)
        y = self.relu1(self.bn1(self.conv1(x)))  # (N, planes, H, W)
        y = self.relu2(self.bn2(self.conv2(y)))  # (N, planes, H/stride, W/stride)
        y = self.bn3(self.conv3(y))  # (N, 4*planes, H/stride, W/stride)
        return self.relu3(y + skip)


class DilatedResNet(nn.Module):
    """The PSPNet backbone. ``forward(x)`` returns (layer3 output, layer4 output).

    Args:
        depth: 50, 101, 152 or "small" (one block per layer); ``layers`` overrides the counts.
        width: channel multiplier (stem 64, 64, 128 and planes 64, 128, 256, 512 are scaled).
        output_stride: 8 (PSPNet: dilation 2 and 4), 16 or 32.
        in_channels: image channels.
        seed: int, NumPy Generator or None; the random stream of the initialisation.

    Attributes ``layer3_channels`` (1024 at width 1, the auxiliary head's input) and
    ``out_channels`` (2048) tell the head what it gets.
    """

    def __init__(
        self,
        depth=50,
        width: float = 1.0,
        output_stride: int = 8,
        layers: tuple | None = None,
        in_channels: int = 3,
        seed=None,
    ):
        super().__init__()
        rng = self._rng = make_rng(seed)
        if layers is None:
            if depth not in RESNET_LAYERS:
                raise ValueError(
                    f"DilatedResNet: depth must be one of {list(RESNET_LAYERS)}, got {depth!r}"
                )
            layers = RESNET_LAYERS[depth]
        if len(layers) != 4 or any(int(n) < 1 for n in layers):
            raise ValueError(f"DilatedResNet: layers must be 4 positive block counts, got {layers}")
        strides_dilations = {
            8: ((2, 1), (1, 2), (1, 4)),
            16: ((2, 1), (2, 1), (1, 2)),
            32: ((2, 1), (2, 1), (2, 1)),
        }
        if output_stride not in strides_dilations:
            raise ValueError(
                f"DilatedResNet: output_stride must be 8, 16 or 32, got {output_stride}"
            )
        self.depth, self.width, self.output_stride = depth, width, output_stride
        self.layers = tuple(int(n) for n in layers)
        s64, s128 = scaled(64, width), scaled(128, width)
        # Deep stem, positions as in semseg's layer0 (conv, bn, relu) x 3 + maxpool.
        self.layer0 = nn.Sequential(
            nn.Conv2d(in_channels, s64, 3, stride=2, padding=1, bias=False, seed=rng),
            nn.BatchNorm2d(s64),
            nn.ReLU(),
            nn.Conv2d(s64, s64, 3, padding=1, bias=False, seed=rng),
            nn.BatchNorm2d(s64),
            nn.ReLU(),
            nn.Conv2d(s64, s128, 3, padding=1, bias=False, seed=rng),
            nn.BatchNorm2d(s128),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        self._inplanes = s128
        (s2, d2), (s3, d3), (s4, d4) = strides_dilations[output_stride]
        self.layer1 = self._make_layer(scaled(64, width), self.layers[0], 1, 1)
        self.layer2 = self._make_layer(scaled(128, width), self.layers[1], s2, d2)
        self.layer3 = self._make_layer(scaled(256, width), self.layers[2], s3, d3)
        self.layer3_channels = self._inplanes
        self.layer4 = self._make_layer(scaled(512, width), self.layers[3], s4, d4)
        self.out_channels = self._inplanes
        del self._rng  # only needed while building

    def _make_layer(self, planes: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
        downsample = None
        if stride != 1 or self._inplanes != planes * Bottleneck.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(
                    self._inplanes,
                    planes * Bottleneck.expansion,
                    1,
                    stride=stride,
                    bias=False,
                    seed=self._rng,
                ),
                nn.BatchNorm2d(planes * Bottleneck.expansion),
            )
        layer = nn.Sequential(
            Bottleneck(self._inplanes, planes, stride, dilation, downsample, seed=self._rng)
        )
        self._inplanes = planes * Bottleneck.expansion
        for _ in range(1, blocks):
            layer.append(Bottleneck(self._inplanes, planes, 1, dilation, seed=self._rng))
        return layer

    def forward(self, x):
        x = self.layer0(x)  # (N, 128w, H/4, W/4)
        x = self.layer1(x)  # (N, 256w, H/4, W/4)
        x = self.layer2(x)  # (N, 512w, H/8, W/8)
        c3 = self.layer3(x)  # (N, 1024w, H/8, W/8) at output stride 8
        c4 = self.layer4(c3)  # (N, 2048w, H/8, W/8)
        return c3, c4

    def extra_repr(self) -> str:
        return f"depth={self.depth!r}, width={self.width}, output_stride={self.output_stride}"

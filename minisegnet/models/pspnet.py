"""PSPNet (Zhao et al., CVPR 2017), as hszhao/semseg's ``model/pspnet.py`` builds it.

::

    layer0..layer4   dilated ResNet-50/101, deep stem, output stride 8   (resnet.py)
    ppm              pyramid pooling on layer4's C = 2048 channels, for each bin b in 1, 2, 3, 6:
                       adaptive average pool to b x b -> 1x1 conv C -> C/4 (no bias) -> BN -> ReLU
                       -> bilinear upsample back to layer4's size (align_corners=True)
                     concatenated with layer4 itself: C + 4 * C/4 = 2C = 4096 channels
    cls              3x3 conv 4096 -> 512 (no bias) + BN + ReLU + Dropout2d(0.1) + 1x1 conv -> K
    output           bilinear upsample (align_corners=True) to the input's H x W
    aux (training)   on layer3 (1024 ch): 3x3 conv -> 256 (no bias) + BN + ReLU + Dropout2d(0.1)
                     + 1x1 conv -> K, upsampled the same way

Design choices, each from the reference code:

* **Bins 1, 2, 3, 6 with adaptive pooling**: bin i of b spans floor(i*H/b) .. ceil((i+1)*H/b),
  so the pyramid works on any feature size (not only 60x60) and covers the map exactly.
* **1x1 convs without bias before BN** (a bias before BN is cancelled by the mean subtraction),
  reducing to C/4 so that the four levels together have as many channels as the features.
* **align_corners=True** everywhere, as semseg. Corner pixels map to corner pixels; with an input of
  size 8k + 1 (473 = 8*59 + 1) the stride-8 features (60 = 59 + 1) align exactly with the input
  grid, which is why semseg crops to 473 and asserts (H - 1) % 8 == 0. Other sizes work here (the
  upsampling simply interpolates to H x W) but align only approximately.
* **Dropout2d** (whole channels) with p = 0.1, as semseg's ``nn.Dropout2d(p=dropout)``.
* **Auxiliary head and its output**: in training mode ``forward`` returns ``(main, aux)``, both
  (N, K, H, W); in eval mode it returns ``main`` alone and the auxiliary head is not run. The
  training code adds ``0.4 * loss(aux)`` (the paper's weight; ADE20K 35.82 -> 37.23 mIoU). The
  head's parameters always exist (``aux=False`` removes them), so a model saved in training
  mode loads for evaluation and vice versa.

Parameter counts (21 classes), counted from the built models (``tests/test_models_full.py``
checks them); batch-norm weights and biases are included, running statistics are buffers:

=================  ===========  ===========
part               ResNet-50    ResNet-101
=================  ===========  ===========
layer0 (stem)          112,832      112,832
layer1                 236,288      236,288
layer2               1,219,584    1,219,584
layer3               7,098,368   26,090,496
layer4              14,964,736   14,964,736
ppm (4 branches)     4,198,400    4,198,400
cls                 18,886,165   18,886,165
**main total**      46,716,373   65,708,501
aux                  2,365,205    2,365,205
**with aux**        49,081,578   68,073,706
=================  ===========  ===========

The backbone is 23.63M (ResNet-50 with the deep stem; torchvision's ResNet-50 without its fc is
23.51M) or 42.62M (ResNet-101). ppm: 4 x (2048*512 + 2*512). cls: the 3x3 conv 4096 -> 512 alone
has 18,874,368 weights, which is why PSPNet's head is heavy; its 1x1 classifier 512*21 + 21.
aux: 3x3 1024 -> 256 (2,359,296) + BN 512 + 1x1 256*21 + 21.
"""

from __future__ import annotations

from minisegnet import functional as F
from minisegnet import nn
from minisegnet.functional import cat
from minisegnet.models.common import check_input, dropout_seed, make_rng, spatial_size
from minisegnet.models.resnet import DilatedResNet

__all__ = ["PSPNet", "PyramidPooling"]


class PyramidPooling(nn.Module):
    """The pyramid pooling module: ``features.i`` = pool to bins[i] -> 1x1 conv -> BN -> ReLU.

    ``forward(x)``: (N, C, h, w) -> (N, C + len(bins) * reduction, h, w).
    """

    def __init__(self, in_channels: int, reduction: int, bins=(1, 2, 3, 6), seed=None):
        super().__init__()
        rng = make_rng(seed)
        self.bins = tuple(int(b) for b in bins)
        self.features = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(b),
                nn.Conv2d(in_channels, reduction, 1, bias=False, seed=rng),
                nn.BatchNorm2d(reduction),
                nn.ReLU(),
            )
            for b in self.bins
        )
        self.out_channels = in_channels + len(self.bins) * reduction

    def forward(self, x):
        size = spatial_size(x)
        out = [x]  # (N, C, h, w)
        for branch in self.features:
            pooled = branch(x)  # (N, C/4, b, b)
            out.append(F.interpolate(pooled, size=size, mode="bilinear", align_corners=True))
        return cat(out, dim=1)  # (N, C + 4 * C/4, h, w)

    def extra_repr(self) -> str:
        return f"bins={self.bins}"


class PSPNet(nn.Module):
    """PSPNet on a dilated ResNet.

    Args:
        num_classes: e.g. 21 (VOC), 150 (ADE20K), 19 (Cityscapes).
        depth: 50, 101 or "small" (one block per ResNet layer); ``layers`` overrides.
        width: channel multiplier for the backbone and the head (512 and 256 are scaled too).
        bins: pyramid levels (1, 2, 3, 6).
        dropout: of the heads (0.1).
        aux: build the auxiliary head on layer3 (its output exists only in training mode).
        output_stride: 8 as the paper; 16/32 for experiments.
        in_channels: image channels.
        seed: int, NumPy Generator or None; the random stream of the initialisation.

    ``forward(x)``: training mode -> ``(main, aux)``; eval mode -> ``main``; each
    (N, num_classes, H, W). With ``aux=False`` it always returns ``main``.
    """

    input_multiple = 1  # any frame size: adaptive pyramid bins, final resize to the input

    def __init__(
        self,
        num_classes: int = 21,
        depth=50,
        width: float = 1.0,
        bins=(1, 2, 3, 6),
        dropout: float = 0.1,
        aux: bool = True,
        output_stride: int = 8,
        layers: tuple | None = None,
        in_channels: int = 3,
        seed=None,
    ):
        super().__init__()
        rng = make_rng(seed)
        self.num_classes, self.in_channels = num_classes, in_channels
        backbone = DilatedResNet(depth, width, output_stride, layers, in_channels, seed=rng)
        # Take the backbone's layers as our own attributes (as semseg does) so state-dict keys are
        # layer0..layer4, ppm, cls, aux -- the reference code's names.
        self.layer0, self.layer1, self.layer2 = backbone.layer0, backbone.layer1, backbone.layer2
        self.layer3, self.layer4 = backbone.layer3, backbone.layer4
        self.depth, self.layers = depth, backbone.layers
        C = backbone.out_channels  # 2048 at width 1
        self.ppm = PyramidPooling(C, C // len(tuple(bins)), bins, seed=rng)
        mid = max(1, round(512 * width))
        self.cls = nn.Sequential(
            nn.Conv2d(self.ppm.out_channels, mid, 3, padding=1, bias=False, seed=rng),
            nn.BatchNorm2d(mid),
            nn.ReLU(),
            nn.Dropout2d(dropout, seed=dropout_seed(rng)),
            nn.Conv2d(mid, num_classes, 1, seed=rng),
        )
        self.aux = None
        if aux:
            mid_aux = max(1, round(256 * width))
            self.aux = nn.Sequential(
                nn.Conv2d(backbone.layer3_channels, mid_aux, 3, padding=1, bias=False, seed=rng),
                nn.BatchNorm2d(mid_aux),
                nn.ReLU(),
                nn.Dropout2d(dropout, seed=dropout_seed(rng)),
                nn.Conv2d(mid_aux, num_classes, 1, seed=rng),
            )

    def forward(self, x):
        H, W = check_input("PSPNet", x, self.in_channels)
        y = self.layer1(self.layer0(x))  # (N, 256w, H/4, W/4)
        y = self.layer2(y)  # (N, 512w, H/8, W/8)
        c3 = self.layer3(y)  # (N, 1024w, H/8, W/8)
        c4 = self.layer4(c3)  # (N, 2048w, H/8, W/8)
        main = self.cls(self.ppm(c4))  # (N, K, H/8, W/8)
        main = F.interpolate(main, size=(H, W), mode="bilinear", align_corners=True)
        if self.training and self.aux is not None:
            aux = self.aux(c3)  # (N, K, H/8, W/8)
            aux = F.interpolate(aux, size=(H, W), mode="bilinear", align_corners=True)
            return main, aux
        return main

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, depth={self.depth!r}, aux={self.aux is not None}"

"""DeepLab v1 (LargeFOV) and DeepLab v2 (ASPP), Chen et al. 2015 / 2018, as the released Caffe
prototxts (DeepLab-LargeFOV ``train.prototxt``; deeplab-public-ver2) define them.

The idea: keep VGG16's ImageNet filters but stop throwing resolution away. Pool4 and pool5 keep
their 3x3 windows but get stride 1, so the features stay at 1/8 of the image ("output stride
8") instead of 1/32; every layer after a removed stride then has to look twice as far apart to
see the receptive field it was trained for, which is what the dilated ("atrous", with holes)
convolution does without adding a single weight:

    y[o] = sum_k w[k] * x[o + r*k]        (3x3 kernel, rate r: taps r pixels apart)

DeepLab-LargeFOV (v1)
---------------------
::

    conv1_1 conv1_2   64   pool1 3x3 s2 p1 (ceil)              stride 2
    conv2_1 conv2_2   128  pool2 3x3 s2 p1                     stride 4
    conv3_1..3_3      256  pool3 3x3 s2 p1                     stride 8
    conv4_1..4_3      512  pool4 3x3 **s1** p1                 stride 8
    conv5_1..5_3      512, **dilation 2** (pad 2)  pool5 3x3 s1 p1
    fc6   3x3, **dilation 12** (pad 12), 1024 channels, ReLU, dropout 0.5
    fc7   1x1, 1024, ReLU, dropout 0.5
    fc8   1x1, num_classes                                     (N, K, H/8, W/8)
    bilinear upsampling x8 to the input size (align_corners=True, Caffe's Interp layer)

(The released training prototxt instead shrinks the *labels* by 8 to the score map's size and
takes the loss there; here the scores are upsampled and the loss is taken at full resolution, as
at the released test time, so that DeepLab trains with the same loss code as every other network.
The weights are the same either way.)

Every convolution is 3x3 stride 1 with a bias and a ReLU, padded so that it keeps the size. The
pools are 3x3 (not VGG's 2x2) with Caffe's ceil rounding, so that an input of 8k + 1 pixels
(321 in training) gives exactly k + 1 = 41 feature rows whose centres sit on every 8th input
pixel; align_corners bilinear interpolation then maps them back without a shift. fc6 is VGG's fc6
made small: the paper subsamples the 7x7x512x4096 weights to 3x3 and 1024 channels ("LargeFOV":
large field of view at rate 12, 1024 channels so it is cheap).

Parameter count of DeepLab-LargeFOV, layer by layer, for K classes (weights + biases; the layer
list above is the released ``train.prototxt``, the formula is k*k*Cin*Cout + Cout)::

    13 VGG16 convs      sum of 9*Cin*Cout + Cout                  = 14,714,688
    fc6                 3*3*512*1024 + 1024                       =  4,719,616
    fc7                 1*1*1024*1024 + 1024                      =  1,049,600
    fc8                 1024*K + K                (K = 21: 21,525)
    total (K = 21)                                                = 20,505,429

Pools, ReLUs, dropout and the interpolation have no parameters. ``tests/test_models_deeplab.py``
checks this sum against the built model exactly (the issue asked for 0.1%).

DeepLab v2: atrous spatial pyramid pooling (ASPP)
-------------------------------------------------
One fc6 rate is one field of view; ASPP runs several in parallel on the same features and sums
their class scores, so objects of several scales are scored together::

    scores = sum over r in (6, 12, 18, 24) of branch_r(features)

* on VGG16 (``deeplab-v2-vgg``, the paper's ASPP-L): the backbone above up to pool5, then each
  branch is fc6 (3x3, rate r, 1024) ReLU dropout, fc7 (1x1, 1024) ReLU dropout, fc8 (1x1, K).
  Per branch 4,719,616 + 1,049,600 + 21,525 = 5,790,741 (K = 21); four branches 23,162,964;
  with the backbone 37,877,652. (Some descriptions of the v2 VGG prototxts put a 3x3 stride-1
  average pool, "pool5a", after pool5; ``pool5a=True`` adds it, without parameters. It is off by
  default because this session could not check it against the released file.)
* on ResNet (``deeplab-v2-resnet``): each branch is one 3x3 convolution (rate r) from the 2048
  backbone channels straight to K classes, with a bias, as ``fc1_voc12_c0..c3`` of the ResNet-101
  prototxt: 4 * (9*2048*K + K) = 1,548,372 for K = 21. The backbone is the dilated ResNet of
  ``resnet.py`` (output stride 8: layer3 dilation 2, layer4 dilation 4, as DeepLab v2). Two
  differences from DeepLab's own ResNet-101, both in the backbone: ours has PSPNet's deep stem
  (three 3x3 convs) where DeepLab keeps the 7x7 one, and puts the stride on the 3x3 conv (v1.5).
  With the depth-101 backbone (42,623,936) the total is 44,172,308 (K = 21).

The classifiers (fc8, the ResNet branches) start from N(0, 0.01^2) weights and zero bias, the
prototxts' ``gaussian std 0.01`` filler; every other layer uses the library's He initialisation
(the papers start from ImageNet weights, which this project does not ship).
"""

from __future__ import annotations

from minisegnet import functional as F
from minisegnet import nn
from minisegnet.models.common import (
    check_input,
    dropout_seed,
    make_rng,
    run_chain,
    scaled,
)
from minisegnet.models.resnet import DilatedResNet
from minisegnet.models.vgg import VGG16_STAGES

__all__ = ["AtrousVGG16", "DeepLabLargeFOV", "DeepLabV2", "ASPP", "ASPP_RATES"]

ASPP_RATES = (6, 12, 18, 24)


def _classifier(in_channels: int, num_classes: int, kernel_size: int, dilation: int, rng):
    """A score layer with the prototxt's filler: weights N(0, 0.01^2), bias 0."""
    conv = nn.Conv2d(
        in_channels, num_classes, kernel_size, padding=dilation * (kernel_size // 2),
        dilation=dilation, seed=rng,
    )  # fmt: skip
    nn.init.normal_(conv.weight, 0.0, 0.01, seed=rng)
    nn.init.zeros_(conv.bias)
    return conv


def _check_rates(model: str, rates) -> tuple[int, ...]:
    try:
        rates = tuple(rates)
    except TypeError:
        raise TypeError(
            f"{model}: rates must be a sequence of positive integers, got {rates!r}"
        ) from None
    if not rates or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in rates):
        raise ValueError(
            f"{model}: rates must be a non-empty sequence of positive ints, got {rates}"
        )
    return rates


class AtrousVGG16(nn.Module):
    """VGG16 made dense for DeepLab: 3x3 ceil pools, pool4/pool5 stride 1, conv5 dilation 2.

    ``forward(x)``: (N, C, H, W) -> pool5 (N, 512w, h, w) with h = ceil-pooled H three times
    (h = (H - 1) // 8 + 1 for H = 8k + 1). Layer names are the prototxt's.
    """

    def __init__(self, width: float = 1.0, in_channels: int = 3, seed=None):
        super().__init__()
        rng = make_rng(seed)
        self.names: list[str] = []
        c_in = in_channels
        for s, stage in enumerate(VGG16_STAGES, start=1):
            dilation = 2 if s == 5 else 1  # conv5 sees through pool4's removed stride
            for i, paper_channels in enumerate(stage, start=1):
                c_out = scaled(paper_channels, width)
                conv = nn.Conv2d(c_in, c_out, 3, padding=dilation, dilation=dilation, seed=rng)
                setattr(self, f"conv{s}_{i}", conv)
                setattr(self, f"relu{s}_{i}", nn.ReLU())
                self.names += [f"conv{s}_{i}", f"relu{s}_{i}"]
                c_in = c_out
            stride = 2 if s <= 3 else 1  # pool4 and pool5 keep the resolution
            setattr(self, f"pool{s}", nn.MaxPool2d(3, stride=stride, padding=1, ceil_mode=True))
            self.names.append(f"pool{s}")
        self.out_channels = c_in

    def forward(self, x):
        return run_chain(self, self.names, x)  # (N, 512w, H/8, W/8)


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: ``sum_r branch_r(x)``, one branch per rate.

    ``hidden=None`` (ResNet): each branch is one 3x3 conv at rate r to ``num_classes``.
    ``hidden=C`` (VGG, ASPP-L): fc6 3x3 rate r -> C, ReLU, dropout, fc7 1x1 -> C, ReLU, dropout,
    fc8 1x1 -> ``num_classes``. Branch k is ``branch{k}`` (k = 1..len(rates)).

    ``forward(x)``: (N, C_in, h, w) -> (N, num_classes, h, w).
    """

    def __init__(self, in_channels, num_classes, rates=ASPP_RATES, hidden=None, dropout=0.5,
                 seed=None):  # fmt: skip
        super().__init__()
        rng = make_rng(seed)
        self.rates = _check_rates("ASPP", rates)
        self.hidden = hidden
        for k, r in enumerate(self.rates, start=1):
            if hidden is None:
                branch = nn.Sequential(_classifier(in_channels, num_classes, 3, r, rng))
            else:
                branch = nn.Sequential(
                    nn.Conv2d(in_channels, hidden, 3, padding=r, dilation=r, seed=rng),  # fc6
                    nn.ReLU(),
                    nn.Dropout(dropout, seed=dropout_seed(rng)),
                    nn.Conv2d(hidden, hidden, 1, seed=rng),  # fc7
                    nn.ReLU(),
                    nn.Dropout(dropout, seed=dropout_seed(rng)),
                    _classifier(hidden, num_classes, 1, 1, rng),  # fc8
                )
            setattr(self, f"branch{k}", branch)

    def forward(self, x):
        out = None
        for k in range(1, len(self.rates) + 1):
            y = getattr(self, f"branch{k}")(x)  # (N, K, h, w)
            out = y if out is None else out + y
        return out

    def extra_repr(self) -> str:
        return f"rates={self.rates}, hidden={self.hidden}"


def _upsample(scores, size):
    """Bilinear x8 back to the image, corners aligned (Caffe ``Interp``)."""
    return F.interpolate(scores, size=size, mode="bilinear", align_corners=True)


class DeepLabLargeFOV(nn.Module):
    """DeepLab v1 LargeFOV (module docstring): atrous VGG16, fc6 rate 12, bilinear x8.

    Args:
        num_classes: 21 on PASCAL VOC.
        width: channel multiplier of the VGG convs (1 = paper).
        fc_channels: fc6/fc7 channels (1024 in LargeFOV).
        rate: fc6 dilation (12; DeepLab-v1 variants used 4 and 8 with larger kernels).
        dropout: after fc6 and fc7 (0.5).
        in_channels: image channels.
        seed: int, NumPy Generator or None.

    ``forward(x)``: (N, in_channels, H, W) -> (N, num_classes, H, W), any H, W >= 1.
    """

    def __init__(self, num_classes=21, width=1.0, fc_channels=1024, rate=12, dropout=0.5,
                 in_channels=3, seed=None):  # fmt: skip
        super().__init__()
        rng = make_rng(seed)
        rate = _check_rates("DeepLabLargeFOV", (rate,))[0]
        self.num_classes, self.in_channels, self.rate = num_classes, in_channels, rate
        self.backbone = AtrousVGG16(width, in_channels, seed=rng)
        c = self.backbone.out_channels
        self.fc6 = nn.Conv2d(c, fc_channels, 3, padding=rate, dilation=rate, seed=rng)
        self.relu6 = nn.ReLU()
        self.drop6 = nn.Dropout(dropout, seed=dropout_seed(rng))
        self.fc7 = nn.Conv2d(fc_channels, fc_channels, 1, seed=rng)
        self.relu7 = nn.ReLU()
        self.drop7 = nn.Dropout(dropout, seed=dropout_seed(rng))
        self.fc8 = _classifier(fc_channels, num_classes, 1, 1, rng)
        self.head = ["fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"]

    def forward(self, x):
        H, W = check_input("DeepLab-LargeFOV", x, self.in_channels)
        scores = run_chain(self, self.head, self.backbone(x))  # (N, K, H/8, W/8)
        return _upsample(scores, (H, W))  # (N, K, H, W)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, rate={self.rate}"


class DeepLabV2(nn.Module):
    """DeepLab v2: ASPP (rates 6, 12, 18, 24, summed) on atrous VGG16 or a dilated ResNet.

    Args:
        num_classes: score channels.
        backbone: "vgg" (ASPP-L with fc6/fc7 per branch) or "resnet" (one conv per branch).
        depth: ResNet depth (101 in the paper; 50 or "small"); ignored for "vgg".
        width: channel multiplier of the backbone (and of the VGG branches' 1024 channels).
        rates: the ASPP rates.
        dropout: in the VGG branches (0.5).
        pool5a: the v2 VGG prototxts' 3x3 stride-1 average pool after pool5 (no parameters).
        in_channels: image channels.
        seed: int, NumPy Generator or None.

    ``forward(x)``: (N, in_channels, H, W) -> (N, num_classes, H, W).
    """

    def __init__(self, num_classes=21, backbone="vgg", depth=101, width=1.0, rates=ASPP_RATES,
                 dropout=0.5, pool5a=False, in_channels=3, seed=None):  # fmt: skip
        super().__init__()
        rng = make_rng(seed)
        if backbone not in ("vgg", "resnet"):
            raise ValueError(f"DeepLabV2: backbone must be 'vgg' or 'resnet', got {backbone!r}")
        rates = _check_rates("DeepLabV2", rates)
        self.num_classes, self.in_channels, self.kind = num_classes, in_channels, backbone
        if backbone == "vgg":
            self.backbone = AtrousVGG16(width, in_channels, seed=rng)
            self.pool5a = nn.AvgPool2d(3, stride=1, padding=1) if pool5a else None
            hidden = scaled(1024, width)
            self.aspp = ASPP(self.backbone.out_channels, num_classes, rates, hidden, dropout, rng)
        else:
            resnet = DilatedResNet(depth, width, output_stride=8, in_channels=in_channels, seed=rng)
            self.layer0, self.layer1, self.layer2 = resnet.layer0, resnet.layer1, resnet.layer2
            self.layer3, self.layer4 = resnet.layer3, resnet.layer4
            self.pool5a = None
            self.aspp = ASPP(resnet.out_channels, num_classes, rates, None, dropout, rng)

    def features(self, x):
        """Backbone features at output stride 8: (N, C, H/8, W/8)."""
        if self.kind == "vgg":
            x = self.backbone(x)
            return x if self.pool5a is None else self.pool5a(x)
        return run_chain(self, ["layer0", "layer1", "layer2", "layer3", "layer4"], x)

    def forward(self, x):
        H, W = check_input(f"DeepLab-v2-{self.kind}", x, self.in_channels)
        scores = self.aspp(self.features(x))  # (N, K, H/8, W/8)
        return _upsample(scores, (H, W))  # (N, K, H, W)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, backbone={self.kind!r}"

"""The context module of Yu & Koltun (ICLR 2016, "Multi-scale context aggregation by dilated
convolutions") on its dilated VGG16 front end ("dilation8").

The context module
------------------
C feature maps in, C out (C = the number of classes: the module refines class scores). Seven 3x3
convolutions with dilations 1, 1, 2, 4, 8, 16, 1, each followed by a ReLU, then a 1x1 convolution
(no ReLU)::

    layer          dilation  receptive field     basic: channels    large: channels
    ctx_conv1_1    1          3x3                C -> C             C  -> 2C
    ctx_conv1_2    1          5x5                C -> C             2C -> 2C
    ctx_conv2_1    2          9x9                C -> C             2C -> 4C
    ctx_conv3_1    4          17x17              C -> C             4C -> 8C
    ctx_conv4_1    8          33x33              C -> C             8C -> 16C
    ctx_conv5_1    16         65x65              C -> C             16C -> 32C
    ctx_fc1        1          67x67              C -> C             32C -> 32C
    ctx_final      1x1        67x67              C -> C             32C -> C

A 3x3 layer at dilation d widens the receptive field by 2d, so the stack sees
1 + 2*(1 + 1 + 2 + 4 + 8 + 16 + 1) = 67 pixels of the front end's output (536 image pixels at
output stride 8) while every layer keeps the resolution (padding = dilation). The dilations
double, so the field grows exponentially with depth while the weights grow linearly.

Identity initialisation (the paper's section 3): random initialisation did not train, so every
layer starts as the identity,

    basic:  w[b, a, ky, kx] = 1 if a == b and (ky, kx) is the centre, else 0;  bias 0
    large:  w[b, a, centre] = C / c_out if floor(a*C/c_in) == floor(b*C/c_out), else eps,
            eps ~ N(0, sigma^2) with sigma << C / c_out        (c_in, c_out: the layer's channels)

so a freshly built basic module returns its input unchanged wherever the input is >= 0 (the ReLUs
truncate negatives: in general it returns max(x, 0)). In the large module, a C -> 2C layer copies
each channel twice at half the value, 2C -> 2C averages the pairs, and the final 32C -> C layer
sums the 32 copies back: identity again, up to eps. The noise is what lets the copies become
different channels (identical copies receive identical gradients forever); ``noise=0`` builds
the exact identity.

Parameters (C = 21): basic 7 * (9*21*21 + 21) + (21*21 + 21) = 27,930 + 462 = 28,392;
large 6,803,139 (7,980 + 15,918 + 31,836 + 127,176 + 508,368 + 2,032,800 + 4,064,928 + 14,133).

The front end ("dilation8")
---------------------------
VGG16 with pool4 and pool5 removed, conv5_x at dilation 2 and fc6 as a 7x7 convolution at
dilation 4 (4096 channels), fc7 1x1 4096, dropout 0.5 after both, and a 1x1 classifier
("final"): output stride 8, then the context module, then bilinear upsampling x8. Pools 1-3 are
VGG's 2x2 stride 2 (Caffe's ceil rounding). Parameters (C = 21): 14,714,688 (convs) +
102,764,544 (fc6: 7*7*512*4096 + 4096) + 16,781,312 (fc7) + 86,037 (final: 4096*21 + 21)
= 134,346,581; with the basic context module 134,374,973, with the large one 141,149,720.

One difference from the released Caffe code (fyu/dilation), stated because it changes sizes but
not weights: the released front end pads nothing (every convolution is "valid") and instead
reflection-pads the input image by 186 pixels, so 500 pixels come out as 66 x 66 scores. Here
every convolution pads by its dilation (fc6 by 12), so any input size works and the score map is
ceil(H/8) x ceil(W/8), the same layout the rest of this library's networks use. The weight
shapes, and so the parameter counts above, are the released ones.
"""

from __future__ import annotations

import numpy as np

from minisegnet import functional as F
from minisegnet import nn
from minisegnet.models.common import check_input, dropout_seed, make_rng, run_chain, scaled
from minisegnet.models.vgg import VGG16_STAGES

__all__ = ["ContextModule", "Dilation8", "CONTEXT_DILATIONS", "identity_weight"]

CONTEXT_DILATIONS = (1, 1, 2, 4, 8, 16, 1)
_NAMES = ("ctx_conv1_1", "ctx_conv1_2", "ctx_conv2_1", "ctx_conv3_1", "ctx_conv4_1",
          "ctx_conv5_1", "ctx_fc1")  # fmt: skip
_LARGE = (2, 2, 4, 8, 16, 32, 32)  # output channels of the seven layers, in units of C


def identity_weight(c_out: int, c_in: int, k: int, C: int, noise: float = 0.0, rng=None):
    """The paper's identity initialisation of one (c_out, c_in, k, k) layer of a module with C
    classes: C/c_out at the centre tap where floor(a*C/c_in) == floor(b*C/c_out), elsewhere
    N(0, (noise * C/c_out)^2) (0 when ``noise`` is 0). c_in == c_out == C gives the identity."""
    scale = C / c_out
    w = np.zeros((c_out, c_in, k, k), np.float64)
    if noise:
        w += make_rng(rng).normal(0.0, noise * scale, w.shape)
    a = np.arange(c_in)
    b = np.arange(c_out)
    same_group = (a[None, :] * C // c_in) == (b[:, None] * C // c_out)  # (c_out, c_in)
    w[:, :, k // 2, k // 2][same_group] = scale
    return w.astype(np.float32)


class ContextModule(nn.Module):
    """Seven 3x3 dilated layers (1, 1, 2, 4, 8, 16, 1) + ReLU, then a 1x1: C -> C channels.

    Args:
        channels: C, the number of classes of the scores it refines.
        variant: "basic" (C channels throughout) or "large" (2C ... 32C, see the table).
        noise: sigma of the large module's eps, relative to C/c_out (0.001; 0 = exact identity).
            The basic module is always exact.
        seed: int, NumPy Generator or None (only the large module's noise is random).

    ``forward(x)``: (N, C, h, w) -> (N, C, h, w); at initialisation max(x, 0) (identity on x >= 0).
    """

    def __init__(self, channels: int, variant: str = "basic", noise: float = 1e-3, seed=None):
        super().__init__()
        rng = make_rng(seed)
        if variant not in ("basic", "large"):
            raise ValueError(f"ContextModule: variant must be 'basic' or 'large', got {variant!r}")
        if (
            isinstance(channels, bool)
            or not isinstance(channels, (int, np.integer))
            or channels < 1
        ):
            raise ValueError(f"ContextModule: channels must be a positive int, got {channels!r}")
        C = int(channels)
        self.channels, self.variant = C, variant
        widths = [C] * 7 if variant == "basic" else [m * C for m in _LARGE]
        sigma = 0.0 if variant == "basic" else float(noise)
        self.names: list[str] = []
        c_in = C
        for name, d, c_out in zip(_NAMES, CONTEXT_DILATIONS, widths):
            conv = nn.Conv2d(c_in, c_out, 3, padding=d, dilation=d)
            self._identity(conv, C, sigma, rng)
            setattr(self, name, conv)
            setattr(self, name.replace("ctx_", "ctx_relu_"), nn.ReLU())
            self.names += [name, name.replace("ctx_", "ctx_relu_")]
            c_in = c_out
        self.ctx_final = nn.Conv2d(c_in, C, 1)
        self._identity(self.ctx_final, C, sigma, rng)
        self.names.append("ctx_final")

    @staticmethod
    def _identity(conv, C, sigma, rng):
        c_out, c_in, k, _ = conv.weight.shape
        nn.init.zeros_(conv.bias)
        conv.weight.data[...] = identity_weight(c_out, c_in, k, C, sigma, rng)

    def receptive_field(self) -> int:
        """1 + 2 * sum of the 3x3 layers' dilations = 67 (in front-end output pixels)."""
        return 1 + 2 * sum(CONTEXT_DILATIONS)

    def forward(self, x):
        return run_chain(self, self.names, x)  # (N, C, h, w)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, variant={self.variant!r}"


class Dilation8(nn.Module):
    """Yu & Koltun's front end + context module (module docstring), output stride 8.

    Args:
        num_classes: C.
        width: channel multiplier of the VGG convs (1 = paper).
        fc_channels: fc6/fc7 channels (4096).
        fc_kernel: fc6 kernel (7, at dilation 4).
        context: "basic", "large" or None (the front end alone).
        dropout: after fc6 and fc7 (0.5).
        in_channels: image channels.
        seed: int, NumPy Generator or None.

    ``forward(x)``: (N, in_channels, H, W) -> (N, C, H, W), any H, W >= 1.
    """

    def __init__(self, num_classes=21, width=1.0, fc_channels=4096, fc_kernel=7, context="basic",
                 dropout=0.5, in_channels=3, seed=None):  # fmt: skip
        super().__init__()
        rng = make_rng(seed)
        if context not in ("basic", "large", None):
            raise ValueError(
                f"Dilation8: context must be 'basic', 'large' or None, got {context!r}"
            )
        self.num_classes, self.in_channels = num_classes, in_channels
        self.names: list[str] = []
        c_in = in_channels
        for s, stage in enumerate(VGG16_STAGES, start=1):
            d = 2 if s == 5 else 1
            for i, paper_channels in enumerate(stage, start=1):
                c_out = scaled(paper_channels, width)
                setattr(self, f"conv{s}_{i}", nn.Conv2d(c_in, c_out, 3, padding=d, dilation=d,
                                                        seed=rng))  # fmt: skip
                setattr(self, f"relu{s}_{i}", nn.ReLU())
                self.names += [f"conv{s}_{i}", f"relu{s}_{i}"]
                c_in = c_out
            if s <= 3:  # pool4 and pool5 are removed
                setattr(self, f"pool{s}", nn.MaxPool2d(2, stride=2, ceil_mode=True))
                self.names.append(f"pool{s}")
        pad = 4 * (fc_kernel // 2)
        self.fc6 = nn.Conv2d(c_in, fc_channels, fc_kernel, padding=pad, dilation=4, seed=rng)
        self.fc6_relu = nn.ReLU()
        self.drop6 = nn.Dropout(dropout, seed=dropout_seed(rng))
        self.fc7 = nn.Conv2d(fc_channels, fc_channels, 1, seed=rng)
        self.fc7_relu = nn.ReLU()
        self.drop7 = nn.Dropout(dropout, seed=dropout_seed(rng))
        self.final = nn.Conv2d(fc_channels, num_classes, 1, seed=rng)
        self.names += ["fc6", "fc6_relu", "drop6", "fc7", "fc7_relu", "drop7", "final"]
        self.context = None if context is None else ContextModule(num_classes, context, seed=rng)

    def forward(self, x):
        H, W = check_input("Dilation8", x, self.in_channels)
        scores = run_chain(self, self.names, x)  # (N, C, H/8, W/8)
        if self.context is not None:
            scores = self.context(scores)  # (N, C, H/8, W/8)
        return F.interpolate(scores, size=(H, W), mode="bilinear", align_corners=False)

    def extra_repr(self) -> str:
        kind = None if self.context is None else self.context.variant
        return f"num_classes={self.num_classes}, context={kind!r}"

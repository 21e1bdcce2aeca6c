"""SegNet and SegNet-Basic (Badrinarayanan, Kendall & Cipolla, PAMI 2017; SegNet-Tutorial).

SegNet
------
Encoder: the 13 VGG16 convolutions, each conv + BN + ReLU, and five 2x2 stride-2 max pools that
**store their argmax switches** (no fc layers: 14.7M instead of 134M parameters). Decoder: the
mirror image, each stage an unpooling with the switches of the matching pool followed by 3x3
convs + BN + ReLU (names of the SegNet-Tutorial prototxt)::

    upsample5  conv5_3_D conv5_2_D conv5_1_D        512 512 512
    upsample4  conv4_3_D conv4_2_D conv4_1_D        512 512 256
    upsample3  conv3_3_D conv3_2_D conv3_1_D        256 256 128
    upsample2  conv2_2_D conv2_1_D                  128  64
    upsample1  conv1_2_D conv1_1_D                   64  64
    classifier 1x1 conv -> num_classes  (the paper's "trainable soft-max classifier")

The decoder of the first encoder outputs 64 channels, not 3 ("the decoder corresponding to the
first encoder produces a multi-channel feature map, although its encoder input has 3 channels"),
and a 1x1 classifier maps them to class scores. Parameters (11 classes): 14,714,688 (encoder) +
14,749,376 (decoder convs) + 715 (classifier) = 29,464,779, plus 16,000 batch-norm weights and
biases (4,224 encoder + 3,776 decoder channels) = 29,480,779 (the paper's 29.5M).

The point of SegNet is the switches. Unpooling writes each value back at the position its max
came from and zeros elsewhere; the decoder's convolutions then densify that sparse map. The
indices are what recovers boundary detail, and they are cheap: 2 bits of information per 2x2
window (one uint8 here) against FCN's storing of whole encoder feature maps for its skips. Because
the decoder is driven by the indices, changing only the switches (same values) changes the output,
which the tests check.

SegNet-Basic
------------
The smaller network of the paper's analysis: an LRN on the input (size 5, alpha 1e-4, beta 0.75),
four encoders ``conv 7x7 -> 64 + BN + ReLU + max pool`` and four decoders ``unpool + conv 7x7 -> 64
+ BN`` -- **no ReLU and no conv bias in the decoder**, as in the paper's and the Tutorial's
SegNet-Basic -- then a 1x1 classifier. Parameters (11 classes): 9,472 + 3 * 200,768 (encoder convs)
+ 4 * 200,704 (decoder convs) + 715 (classifier) + 8 * 128 (batch norm) = 1,416,331 (the paper
quotes 1.425M).

Odd sizes
---------
Both networks pool with Caffe's ceil rounding (45 rows pool to 23) and every unpooling is given the
size that entered the matching pool (``output_size``), so 45 unpools back to 45 and the decoder's
maps always line up with the encoder's. Any input size works, e.g. 45x61 or CamVid's 360x480
(360 -> 180 -> 90 -> 45 -> 23 -> 12).
"""

from __future__ import annotations

from minisegnet import nn
from minisegnet.models.common import (
    Layers,
    add_unpooling_decoder,
    check_input,
    make_rng,
    min_pooled_input,
    run_chain,
    scaled,
    unpooling_decode,
)
from minisegnet.models.vgg import VGG16

__all__ = ["SegNet", "SegNetBasic", "SEGNET_DECODER", "ENCODER", "segnet_decoder"]

# (stage, [(layer name, paper output channels), ...]) deepest first, as in SegNet-Tutorial.
SEGNET_DECODER = (
    (5, (("conv5_3_D", 512), ("conv5_2_D", 512), ("conv5_1_D", 512))),
    (4, (("conv4_3_D", 512), ("conv4_2_D", 512), ("conv4_1_D", 256))),
    (3, (("conv3_3_D", 256), ("conv3_2_D", 256), ("conv3_1_D", 128))),
    (2, (("conv2_2_D", 128), ("conv2_1_D", 64))),
    (1, (("conv1_2_D", 64), ("conv1_1_D", 64))),
)


def segnet_decoder(width: float) -> tuple:
    """:data:`SEGNET_DECODER` at ``width``, as :func:`~minisegnet.models.common.add_unpooling_decoder`
    takes it: per stage, (conv, its ``_bn``, its ReLU ``relu5_3_D``..., scaled channels)."""
    return tuple(
        (
            stage,
            tuple((n, f"{n}_bn", "relu" + n[len("conv") :], scaled(c, width)) for n, c in layers),
        )
        for stage, layers in SEGNET_DECODER
    )


# The encoder's VGG16 options: batch norm after every conv, ceil-mode pools that keep their
# switches for the decoder.
ENCODER = {"batch_norm": True, "ceil_mode": True, "return_indices": True}


class SegNet(nn.Module):
    """SegNet: VGG16-BN encoder storing switches, mirrored decoder, 1x1 classifier.

    Args:
        num_classes: 11 on CamVid (12 with "void"; the paper ignores it).
        width: channel multiplier (1 = paper).
        in_channels: image channels.
        seed: int, NumPy Generator or None; the random stream of the initialisation.

    ``forward(x)``: (N, in_channels, H, W) -> scores (N, num_classes, H, W), any H, W >= 1.
    """

    input_multiple = 1  # any frame size: ceil pooling, unpooling to the recorded sizes

    def __init__(self, num_classes: int = 11, width: float = 1.0, in_channels: int = 3, seed=None):
        super().__init__()
        rng = make_rng(seed)
        self.num_classes, self.in_channels = num_classes, in_channels
        self.encoder = VGG16(width, in_channels, seed=rng, **ENCODER)
        c, self.decoder_names = add_unpooling_decoder(
            self, Layers(rng), segnet_decoder(width), self.encoder.out_channels, False, "upsample"
        )
        self.classifier = nn.Conv2d(c, num_classes, 1, seed=rng)

    def forward(self, x):
        check_input("SegNet", x, self.in_channels, self.encoder.min_input_size())
        features = self.encoder(x)
        y = features.pools[4]  # (N, 512w, H/32, W/32)
        y = unpooling_decode(self, y, features, "upsample")  # stages 5, 4, 3, 2, 1
        return self.classifier(y)  # (N, num_classes, H, W)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"


class SegNetBasic(nn.Module):
    """SegNet-Basic: LRN, 4 x (7x7 conv 64 + BN + ReLU + pool), 4 x (unpool + 7x7 conv + BN).

    Args:
        num_classes: 11 (CamVid).
        width: multiplier of the 64 channels (1 = paper).
        depth: number of encoder/decoder pairs (4 in the paper).
        kernel_size: of the encoder and decoder convs (7 in the paper; odd, padding k//2).
        in_channels: image channels.
        seed: int, NumPy Generator or None; the random stream of the initialisation.
    """

    input_multiple = 1  # any frame size: ceil pooling, unpooling to the recorded sizes

    def __init__(
        self,
        num_classes: int = 11,
        width: float = 1.0,
        depth: int = 4,
        kernel_size: int = 7,
        in_channels: int = 3,
        seed=None,
    ):
        super().__init__()
        rng = make_rng(seed)
        if kernel_size % 2 != 1:
            raise ValueError(f"SegNetBasic: kernel_size must be odd, got {kernel_size}")
        self.num_classes, self.in_channels, self.depth = num_classes, in_channels, depth
        c = scaled(64, width)
        pad = kernel_size // 2
        # Caffe LRN across channels: x / (k + alpha/n * sum of x^2 over n neighbours)^beta.
        self.norm = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)
        c_in = in_channels
        for i in range(1, depth + 1):
            setattr(self, f"conv{i}", nn.Conv2d(c_in, c, kernel_size, padding=pad, seed=rng))
            setattr(self, f"conv{i}_bn", nn.BatchNorm2d(c))
            setattr(self, f"relu{i}", nn.ReLU())
            setattr(
                self, f"pool{i}", nn.MaxPool2d(2, stride=2, ceil_mode=True, return_indices=True)
            )
            c_in = c
        for i in range(depth, 0, -1):
            setattr(self, f"upsample{i}", nn.MaxUnpool2d(2, stride=2))
            # No bias: BN follows and there is no ReLU, so a bias would be absorbed by BN's shift.
            decode = nn.Conv2d(c, c, kernel_size, padding=pad, bias=False, seed=rng)
            setattr(self, f"conv_decode{i}", decode)
            setattr(self, f"conv_decode{i}_bn", nn.BatchNorm2d(c))
        self.conv_classifier = nn.Conv2d(c, num_classes, 1, seed=rng)

    def forward(self, x):
        check_input("SegNetBasic", x, self.in_channels, min_pooled_input(self.depth, True))
        y = self.norm(x)
        switches, sizes = [], []
        for i in range(1, self.depth + 1):
            y = run_chain(self, [f"conv{i}", f"conv{i}_bn", f"relu{i}"], y)
            sizes.append((int(y.shape[2]), int(y.shape[3])))
            y, idx = getattr(self, f"pool{i}")(y)  # (N, 64, ceil(H/2), ceil(W/2)), switches
            switches.append(idx)
        for i in range(self.depth, 0, -1):
            y = getattr(self, f"upsample{i}")(y, switches[i - 1], output_size=sizes[i - 1])
            y = run_chain(self, [f"conv_decode{i}", f"conv_decode{i}_bn"], y)
        return self.conv_classifier(y)  # (N, num_classes, H, W)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, depth={self.depth}"

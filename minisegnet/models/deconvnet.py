"""DeconvNet (Noh, Hong & Han, ICCV 2015), as in HyeonwooNoh/DeconvNet's prototxt.

An encoder-decoder whose decoder is the mirror image of the encoder::

    encoder  VGG16 convs, each conv + BN + ReLU; pools (ceil) return their switches
             fc6: 7x7 conv -> 4096 (7x7 pool5 -> 1x1) + BN + ReLU
             fc7: 1x1 conv -> 4096 + BN + ReLU
    decoder  fc6_deconv: 7x7 transposed conv 4096 -> 512 (1x1 -> 7x7) + BN + ReLU
             unpool5 (switches of pool5) deconv5_1, 5_2, 5_3          512 512 512
             unpool4                     deconv4_1, 4_2, 4_3          512 512 256
             unpool3                     deconv3_1, 3_2, 3_3          256 256 128
             unpool2                     deconv2_1, 2_2               128  64
             unpool1                     deconv1_1, 1_2                64  64
             seg_score: 1x1 conv -> num_classes

Each "deconv" layer is a 3x3 transposed convolution with padding 1 (stride 1, so it keeps the size;
with stride 1 it is a convolution with the flipped, transposed kernel, but it is written and
initialised as the reference's Deconvolution layer) + BN + ReLU.

Design choices:

* **Unpooling uses the encoder's switches**, the positions of the maxima pool{i} chose, so the
  decoder puts each activation back where it came from ("where" information that FCN's bilinear
  upsampling does not have), then the deconv layers densify the sparse map.
* **Unpooling takes the encoder's sizes** (``output_size`` = the size that entered the pool), so
  an odd size (ceil pooling: 45 -> 23) unpools back to 45, not 46, and any input size works as
  long as pool5 is at least ``fc_kernel`` wide (224 in the paper; ``fc_kernel=1`` for small
  variants accepts any size).
* **No dropout**: the reference network uses batch normalisation after every layer instead.
* **Deconvolutions start at He's std over their real fan-in**, sqrt(2 / (in_channels * 9)),
  ``nn.ConvTranspose2d``'s default here. PyTorch's and Caffe's rule reads the fan from the weight
  shape (in, out, k, k) as if it were a convolution's and uses out_channels * 9, which makes the
  channel-reducing layers (deconv4_3, 3_3, 2_2, fc6_deconv) start sqrt 2 too large. With batch
  norm after them, a larger weight is a smaller effective step (the normalised output does not
  change with the weight's scale, its gradient shrinks as 1/scale): measured on the small preset
  (64x64 built-in data, 12 epochs, lr 0.1, one warm-up epoch), 0.65 mean IoU against 0.55.
* **Trained from scratch, it needs balanced initial steps.** Its fc block puts three more batch
  norms between the loss and the encoder, whose first layers then start with 27 times the
  decoder's effective step (SegNet: 10; ``benchmarks/gradient_scale.py``). ``train
  --balance-init`` (``nn.balance_init_``) evens that out: 0.91 mean IoU instead of 0.65, same
  recipe. (The paper started its encoder from ImageNet VGG16 weights instead.)
* **Biases kept before BN**, as in the prototxt (they are redundant with BN's shift, but they are
  part of the published 251.8M count and of any converted weights).

Parameters (21 classes): encoder + fc6 + fc7 134,260,544; fc6_deconv 102,760,960; decoder
14,749,376; seg_score 1,365: 251,772,245 (the paper's 251.8M), plus 33,408 batch-norm weights
and biases (16,704 channels: 4,224 in the VGG convs, 2 x 4,096 after fc6/fc7, 512 after
fc6_deconv, 3,776 in the decoder) = 251,805,653; the running statistics are buffers.
"""

from __future__ import annotations

from minisegnet import nn
from minisegnet.models.common import (
    Layers,
    add_unpooling_decoder,
    check_input,
    make_rng,
    run_chain,
    scaled,
    unpooling_decode,
)
from minisegnet.models.vgg import VGG16

__all__ = ["DeconvNet", "DECONVNET_DECODER", "ENCODER", "deconvnet_decoder"]

# Decoder stages, deepest first: (stage, output channels of each 3x3 deconv) -- paper numbers.
DECONVNET_DECODER = (
    (5, (512, 512, 512)),
    (4, (512, 512, 256)),
    (3, (256, 256, 128)),
    (2, (128, 64)),
    (1, (64, 64)),
)


def deconvnet_decoder(width: float) -> tuple:
    """:data:`DECONVNET_DECODER` at ``width``, as :func:`~minisegnet.models.common.add_unpooling_decoder`
    takes it: per stage, (``deconv{s}_{i}``, ``debn{s}_{i}``, ``derelu{s}_{i}``, channels)."""
    return tuple(
        (
            stage,
            tuple(
                (f"deconv{stage}_{i}", f"debn{stage}_{i}", f"derelu{stage}_{i}", scaled(c, width))
                for i, c in enumerate(channels, start=1)
            ),
        )
        for stage, channels in DECONVNET_DECODER
    )


# The encoder's VGG16 options: batch norm after every conv and fc layer, ceil-mode pools that
# keep their switches for the decoder.
ENCODER = {"batch_norm": True, "ceil_mode": True, "return_indices": True, "fc_batch_norm": True}


class DeconvNet(nn.Module):
    """DeconvNet: VGG16-BN encoder with switches, fc6/fc7, fc6_deconv, mirrored decoder.

    Args:
        num_classes: 21 on PASCAL VOC.
        width: channel multiplier of all VGG-sized layers (1 = paper).
        fc_channels: channels of fc6/fc7 (4096 in the paper).
        fc_kernel: fc6 and fc6_deconv kernel (7 in the paper, needs pool5 >= 7x7, i.e. input
            >= 193 pixels; 1 accepts any input size).
        in_channels: image channels.
        seed: int, NumPy Generator or None; the random stream of the initialisation.

    ``forward(x)``: (N, in_channels, H, W) -> scores (N, num_classes, H, W).
    """

    input_multiple = 1  # any frame size: ceil pooling, unpooling to the recorded sizes

    def __init__(
        self,
        num_classes: int = 21,
        width: float = 1.0,
        fc_channels: int = 4096,
        fc_kernel: int = 7,
        in_channels: int = 3,
        seed=None,
    ):
        super().__init__()
        rng = make_rng(seed)
        self.num_classes, self.in_channels = num_classes, in_channels
        self.encoder = VGG16(
            width, in_channels, fc_channels=fc_channels, fc_kernel=fc_kernel, seed=rng, **ENCODER
        )
        c = scaled(512, width)
        self.fc6_deconv = nn.ConvTranspose2d(fc_channels, c, fc_kernel, seed=rng)
        self.fc6_deconv_bn = nn.BatchNorm2d(c)
        self.fc6_deconv_relu = nn.ReLU()
        c, self.decoder_names = add_unpooling_decoder(
            self, Layers(rng), deconvnet_decoder(width), c, True, "unpool"
        )
        self.seg_score = nn.Conv2d(c, num_classes, 1, seed=rng)

    def forward(self, x):
        check_input("DeconvNet", x, self.in_channels, self.encoder.min_input_size())
        features = self.encoder(x)
        y = run_chain(self, ["fc6_deconv", "fc6_deconv_bn", "fc6_deconv_relu"], features.fc7)
        y = unpooling_decode(self, y, features, "unpool")  # stages 5, 4, 3, 2, 1
        return self.seg_score(y)  # (N, num_classes, H, W)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}"

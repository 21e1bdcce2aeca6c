"""VGG16 (Simonyan & Zisserman 2015) as the encoder of FCN, DeconvNet and SegNet.

The 13 convolutions, in five stages separated by 2x2 stride-2 max pools::

    stage 1: conv1_1 conv1_2                 64 channels     (full resolution)
    stage 2: conv2_1 conv2_2                 128             (1/2)
    stage 3: conv3_1 conv3_2 conv3_3         256             (1/4)
    stage 4: conv4_1 conv4_2 conv4_3         512             (1/8)
    stage 5: conv5_1 conv5_2 conv5_3         512             (1/16, pool5 -> 1/32)

Every conv is 3x3, stride 1, padding 1 (so it keeps H and W), with a bias, followed by ReLU.
Parameters: sum over the 13 convs of 9*Cin*Cout + Cout = 14,714,688 (SegNet quotes 14.7M).

The classifier of the ImageNet network, fc6 (25088 -> 4096) and fc7 (4096 -> 4096), is optional
here and written *convolutionally*, as FCN does: fc6 looks at the whole 7x7x512 pool5 map of a
224x224 image, which is exactly a 7x7 convolution with no padding, and fc7 is a 1x1 convolution.
On a larger image the same weights slide over pool5 and produce a coarse map of fc7 vectors
instead of one vector; this is what makes the network "fully convolutional". fc6 alone holds
7*7*512*4096 + 4096 = 102,764,544 parameters, fc7 16,781,312.

What the three networks change (all are options of :class:`VGG16`):

=============  ===============  ==========  ==========  ============================
network        conv1_1 padding  batch norm  pool mode   pools return switches
=============  ===============  ==========  ==========  ============================
FCN            100              no          ceil        no
DeconvNet      1                every conv  ceil        yes (for the decoder)
SegNet         1                every conv  ceil        yes (for the decoder)
=============  ===============  ==========  ==========  ============================

Pools use Caffe's *ceil* rounding in all three because all three reference implementations are
Caffe networks: an odd size 2k+1 pools to k+1, and the last window hangs over the edge (the
missing row counts as -infinity, so it is never chosen). Unpooling gives the size back through
``output_size`` (see SegNet).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from minisegnet import nn
from minisegnet.models.common import (
    Layers,
    make_rng,
    min_pooled_input,
    run_chain,
    scaled,
    spatial_size,
)

__all__ = ["VGG16", "VGGFeatures", "VGG16_STAGES", "add_vgg16_layers"]

# Output channels of each conv, stage by stage (the paper's configuration D).
VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def add_vgg16_layers(
    module, layers, fc_batch_norm: bool | None = None, fc_dropout: float = 0.0
) -> None:
    """Add VGG16's layers to ``module``, in order, as its options say (the attributes
    ``width``, ``in_channels``, ``batch_norm``, ``first_padding``, ``ceil_mode``,
    ``return_indices``, ``fc_channels``, ``fc_kernel``, set first; see :class:`VGG16`): per
    stage ``conv{s}_{i}`` (3x3; padding 1, ``first_padding`` for conv1_1), [``bn{s}_{i}``],
    ``relu{s}_{i}``, then ``pool{s}`` (2x2, stride 2); with ``fc_channels``, ``fc6``
    (``fc_kernel`` square, no padding) and ``fc7`` (1x1), each followed by [``_bn``], ``_relu``,
    [``_drop``]. Sets ``module.stage_names`` (per stage, the layers before its pool),
    ``stage_channels``, ``fc_names`` and ``out_channels``. ``layers``: a
    :class:`~minisegnet.models.common.Layers` (PyTorch's, for the benchmark's twin)."""
    width, batch_norm, fc_channels = module.width, module.batch_norm, module.fc_channels
    module.stage_names, module.stage_channels, module.fc_names = [], [], []
    c_in = module.in_channels
    for s, stage in enumerate(VGG16_STAGES, start=1):
        names = []
        for i, paper_channels in enumerate(stage, start=1):
            c_out = scaled(paper_channels, width)
            padding = module.first_padding if (s, i) == (1, 1) else 1
            setattr(module, f"conv{s}_{i}", layers.conv(c_in, c_out, 3, padding=padding))
            names.append(f"conv{s}_{i}")
            if batch_norm:
                setattr(module, f"bn{s}_{i}", layers.batch_norm(c_out))
                names.append(f"bn{s}_{i}")
            setattr(module, f"relu{s}_{i}", layers.relu())
            names.append(f"relu{s}_{i}")
            c_in = c_out
        setattr(module, f"pool{s}", layers.max_pool(module.ceil_mode, module.return_indices))
        module.stage_names.append(names)
        module.stage_channels.append(c_in)
    module.out_channels = c_in
    if fc_channels is None:
        return
    fc_batch_norm = batch_norm if fc_batch_norm is None else fc_batch_norm
    for name, c_from, k in (("fc6", c_in, module.fc_kernel), ("fc7", fc_channels, 1)):
        setattr(module, name, layers.conv(c_from, fc_channels, k))
        module.fc_names.append(name)
        if fc_batch_norm:
            setattr(module, f"{name}_bn", layers.batch_norm(fc_channels))
            module.fc_names.append(f"{name}_bn")
        setattr(module, f"{name}_relu", layers.relu())
        module.fc_names.append(f"{name}_relu")
        if fc_dropout:
            setattr(module, f"{name}_drop", layers.dropout(fc_dropout))
            module.fc_names.append(f"{name}_drop")
    module.out_channels = fc_channels


@dataclass
class VGGFeatures:
    """What the encoder hands to a decoder or to FCN's skip layers.

    ``pools[i]``     output of pool{i+1}                  (N, C_i, H_i, W_i)
    ``switches[i]``  pool{i+1}'s switches (or None)       where each max came from, per window
    ``sizes[i]``     (H, W) *entering* pool{i+1}          what unpool{i+1} must restore
    ``fc7``          output of fc7 (after ReLU/BN/dropout), or None without the fc layers
    """

    pools: list = field(default_factory=list)
    switches: list = field(default_factory=list)
    sizes: list = field(default_factory=list)
    fc7: object = None


class VGG16(nn.Module):
    """The VGG16 feature extractor with the options FCN, DeconvNet and SegNet need.

    Args:
        width: channel multiplier (1 = the paper; 0.125 gives 8, 16, 32, 64, 64 channels).
        in_channels: image channels (3).
        batch_norm: insert ``bn{s}_{i}`` (BatchNorm2d) between each conv and its ReLU
            (DeconvNet, SegNet); the convs keep their bias, as in the reference prototxts.
        first_padding: padding of conv1_1 (FCN uses 100; see ``fcn.py`` for why).
        ceil_mode: Caffe's ceil rounding in the pools (True in all three reference networks).
        return_indices: pools also return their switches (DeconvNet, SegNet).
        fc_channels: if given, add fc6 (``fc_kernel`` x ``fc_kernel`` conv, no padding) and fc7
            (1x1 conv), each with ``fc_channels`` outputs, followed by [BN], ReLU, [dropout].
        fc_kernel: 7 in the paper (pool5 of a 224 image is 7x7); smaller for small variants.
        fc_batch_norm: BN after fc6 and fc7 (DeconvNet); defaults to ``batch_norm``.
        fc_dropout: dropout probability after fc6 and fc7 (FCN: 0.5, as in VGG; 0 = none).
        seed: int, NumPy Generator or None; the random stream of the layers' initialisation.

    ``forward(x)`` returns a :class:`VGGFeatures`.
    """

    def __init__(
        self,
        width: float = 1.0,
        in_channels: int = 3,
        batch_norm: bool = False,
        first_padding: int = 1,
        ceil_mode: bool = True,
        return_indices: bool = False,
        fc_channels: int | None = None,
        fc_kernel: int = 7,
        fc_batch_norm: bool | None = None,
        fc_dropout: float = 0.0,
        seed=None,
    ):
        super().__init__()
        rng = make_rng(seed)
        self.width = width
        self.in_channels = in_channels
        self.batch_norm = batch_norm
        self.first_padding = first_padding
        self.ceil_mode = ceil_mode
        self.return_indices = return_indices
        self.fc_channels = fc_channels
        self.fc_kernel = fc_kernel
        add_vgg16_layers(self, Layers(rng), fc_batch_norm, fc_dropout)

    def min_input_size(self) -> int:
        """Smallest H (or W) for which pool5 is at least ``fc_kernel`` wide (1 without fc)."""
        need = self.fc_kernel if self.fc_channels is not None else 1
        grow = 2 * (self.first_padding - 1)  # conv1_1 adds this much; other convs keep the size
        return min_pooled_input(5, self.ceil_mode, need, grow)

    def forward(self, x) -> VGGFeatures:
        out = VGGFeatures()
        for s, names in enumerate(self.stage_names, start=1):
            x = run_chain(self, names, x)  # (N, C_s, H_s, W_s)
            out.sizes.append(spatial_size(x))
            pooled = getattr(self, f"pool{s}")(x)
            if self.return_indices:
                x, switches = pooled  # values (N, C_s, H_s', W_s'), switches (same grid)
            else:
                x, switches = pooled, None
            out.pools.append(x)
            out.switches.append(switches)
        if self.fc_names:
            h5, w5 = spatial_size(x)
            if min(h5, w5) < self.fc_kernel:
                raise ValueError(
                    f"VGG16: pool5 is {h5}x{w5}, smaller than the {self.fc_kernel}x"
                    f"{self.fc_kernel} fc6 kernel; the input must be at least "
                    f"{self.min_input_size()} pixels in height and width for this configuration"
                )
            out.fc7 = run_chain(self, self.fc_names, x)  # (N, fc_channels, h5-k+1, w5-k+1)
        return out

    def extra_repr(self) -> str:
        return (
            f"width={self.width}, batch_norm={self.batch_norm}, first_padding="
            f"{self.first_padding}, ceil_mode={self.ceil_mode}, return_indices="
            f"{self.return_indices}, fc_channels={self.fc_channels}, fc_kernel={self.fc_kernel}"
        )

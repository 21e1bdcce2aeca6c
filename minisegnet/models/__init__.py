"""The networks: FCN-32s/16s/8s, DeconvNet, SegNet, SegNet-Basic, PSPNet, DeepLab (LargeFOV, v2
ASPP on VGG16 and ResNet), Yu & Koltun's dilation8 with its context module, U-Net (valid and
padded), and tools to inspect them.

One way to build every model::

    from minisegnet import models
    net = models.build("fcn8s", num_classes=21)                    # the paper network
    net = models.build("fcn8s", num_classes=21, preset="small")    # trains on 2 CPU cores
    net = models.build("segnet", 11, width=0.25)                   # any option of the class
    models.names()            # ['deconvnet', 'fcn16s', 'fcn32s', 'fcn8s', 'pspnet', ...]
    print(models.summary(net, (1, 3, 64, 64)))                      # layer table
    acts = models.capture(net, x, ["encoder.pool1", "crop"])        # intermediate outputs

``preset="full"`` (default) is each paper's configuration; ``preset="small"`` is
:data:`SMALL_PRESETS`, chosen so that a forward and backward pass of a 2x3x64x64 batch takes well
under a second on two cores while the architecture (layers, kernels, strides, crops, switches,
dilations, pyramid bins) stays the paper's. Keyword options override the preset. The model keeps
how it was built in ``model.config`` (``{"name", "num_classes", "config"}``), which
``minisegnet.io.save`` writes beside the weights so ``io.load_model`` can rebuild it.
"""

from __future__ import annotations

import inspect

import numpy as np

from minisegnet.models.common import uninitialised
from minisegnet.models.context import ContextModule, Dilation8
from minisegnet.models.deconvnet import DeconvNet
from minisegnet.models.deeplab import DeepLabLargeFOV, DeepLabV2
from minisegnet.models.fcn import FCN
from minisegnet.models.hooks import Recorder, capture, switches
from minisegnet.models.pspnet import PSPNet
from minisegnet.models.resnet import DilatedResNet
from minisegnet.models.segnet import SegNet, SegNetBasic
from minisegnet.models.summary import Summary, summary
from minisegnet.models.unet import UNet
from minisegnet.models.vgg import VGG16

__all__ = [
    "build", "names", "canonical_name", "small_preset", "SMALL_PRESETS", "ALIASES",
    "fcn32s", "fcn16s", "fcn8s", "deconvnet", "segnet", "segnet_basic", "pspnet",
    "FCN", "DeconvNet", "SegNet", "SegNetBasic", "PSPNet", "VGG16", "DilatedResNet",
    "deeplab_largefov", "deeplab_v2_vgg", "deeplab_v2_resnet", "dilation8", "unet", "unet_padded",
    "DeepLabLargeFOV", "DeepLabV2", "Dilation8", "ContextModule", "UNet",
    "summary", "Summary", "capture", "switches", "Recorder", "uninitialised",
]  # fmt: skip


def fcn32s(num_classes: int = 21, **config) -> FCN:
    """FCN-32s: one 32x bilinear upsampling of score_fr, crop at 19 (see ``fcn.py``)."""
    return FCN(num_classes, variant="32s", **config)


def fcn16s(num_classes: int = 21, **config) -> FCN:
    """FCN-16s: + pool4 skip (crop 5), 16x upsampling, crop at 27."""
    return FCN(num_classes, variant="16s", **config)


def fcn8s(num_classes: int = 21, **config) -> FCN:
    """FCN-8s: + pool4 (crop 5) and pool3 (crop 9) skips, 8x upsampling, crop at 31."""
    return FCN(num_classes, variant="8s", **config)


def deconvnet(num_classes: int = 21, **config) -> DeconvNet:
    """DeconvNet: VGG16-BN, fc6/fc7, fc6_deconv and a mirrored unpool + deconv decoder."""
    return DeconvNet(num_classes, **config)


def segnet(num_classes: int = 11, **config) -> SegNet:
    """SegNet: VGG16-BN encoder with switches and a mirrored decoder."""
    return SegNet(num_classes, **config)


def segnet_basic(num_classes: int = 11, **config) -> SegNetBasic:
    """SegNet-Basic: LRN, four 7x7x64 encoders and decoders."""
    return SegNetBasic(num_classes, **config)


def pspnet(num_classes: int = 21, **config) -> PSPNet:
    """PSPNet on a dilated ResNet-50 (``depth=101`` or ``"small"`` for the others)."""
    return PSPNet(num_classes, **config)


def deeplab_largefov(num_classes: int = 21, **config) -> DeepLabLargeFOV:
    """DeepLab v1 LargeFOV: atrous VGG16 (output stride 8), fc6 3x3 rate 12, 1024 channels."""
    return DeepLabLargeFOV(num_classes, **config)


def deeplab_v2_vgg(num_classes: int = 21, **config) -> DeepLabV2:
    """DeepLab v2 ASPP-L on atrous VGG16: four fc6-fc7-fc8 branches at rates 6, 12, 18, 24."""
    return DeepLabV2(num_classes, backbone="vgg", **config)


def deeplab_v2_resnet(num_classes: int = 21, **config) -> DeepLabV2:
    """DeepLab v2 ASPP on the dilated ResNet-101: four 3x3 class convs at rates 6..24, summed."""
    return DeepLabV2(num_classes, backbone="resnet", **config)


def dilation8(num_classes: int = 21, **config) -> Dilation8:
    """Yu & Koltun: dilated VGG16 front end (output stride 8) + the identity-initialised context
    module (dilations 1, 1, 2, 4, 8, 16, 1)."""
    return Dilation8(num_classes, **config)


def unet(num_classes: int = 2, **config) -> UNet:
    """U-Net as the paper: valid convolutions, copy-and-crop, mirror-padded overlap-tile input."""
    return UNet(num_classes, padding="valid", **config)


def unet_padded(num_classes: int = 2, **config) -> UNet:
    """U-Net with padded 3x3 convolutions (no crops; any input of 16 pixels or more)."""
    return UNet(num_classes, padding="same", **config)


_BUILDERS = {
    "fcn32s": (fcn32s, FCN),
    "fcn16s": (fcn16s, FCN),
    "fcn8s": (fcn8s, FCN),
    "deconvnet": (deconvnet, DeconvNet),
    "segnet": (segnet, SegNet),
    "segnet_basic": (segnet_basic, SegNetBasic),
    "pspnet": (pspnet, PSPNet),
    "deeplab_largefov": (deeplab_largefov, DeepLabLargeFOV),
    "deeplab_v2_vgg": (deeplab_v2_vgg, DeepLabV2),
    "deeplab_v2_resnet": (deeplab_v2_resnet, DeepLabV2),
    "dilation8": (dilation8, Dilation8),
    "unet": (unet, UNet),
    "unet_padded": (unet_padded, UNet),
}

ALIASES = {
    "segnet-basic": "segnet_basic",
    "fcn-32s": "fcn32s",
    "fcn-16s": "fcn16s",
    "fcn-8s": "fcn8s",
    "deeplab-largefov": "deeplab_largefov",
    "deeplab-v2-vgg": "deeplab_v2_vgg",
    "deeplab-v2-resnet": "deeplab_v2_resnet",
    "unet-padded": "unet_padded",
}

# Small versions for two CPU cores. Widths keep every layer (1/8 of VGG's channels gives
# 8..64 channels); the fc layers of FCN/DeconvNet shrink from 4096 to 128; DeconvNet's fc6 becomes
# 1x1 so that any input size works (the 7x7 fc6 needs pool5 >= 7, i.e. inputs >= 193 pixels);
# FCN keeps its padded, cropped design with a 4x4 fc6 and conv1_1 padding 49, the smallest that
# still takes every input size (see fcn.py), a third of the paper's padding cost at 40x40;
# PSPNet uses one bottleneck per ResNet layer. DeepLab, dilation8 and U-Net keep every layer, rate
# and dilation at 1/8 of the channels (fc layers 128); U-Net's valid network mirror-pads a 64-pixel
# image to its 252-pixel overlap tile, which the narrow channels keep cheap.
_FCN_SMALL = {"width": 0.125, "fc_channels": 128, "fc_kernel": 4, "first_padding": 49}
SMALL_PRESETS = {
    "fcn32s": dict(_FCN_SMALL),
    "fcn16s": dict(_FCN_SMALL),
    "fcn8s": dict(_FCN_SMALL),
    "deconvnet": {"width": 0.125, "fc_channels": 128, "fc_kernel": 1},
    "segnet": {"width": 0.125},
    "segnet_basic": {"width": 0.25},
    "pspnet": {"depth": "small", "width": 0.125},
    "deeplab_largefov": {"width": 0.125, "fc_channels": 128},
    "deeplab_v2_vgg": {"width": 0.125},
    "deeplab_v2_resnet": {"depth": "small", "width": 0.125},
    "dilation8": {"width": 0.125, "fc_channels": 128},
    "unet": {"width": 0.125},
    "unet_padded": {"width": 0.125},
}


def names() -> list[str]:
    """The canonical model names accepted by :func:`build` (aliases: :data:`ALIASES`)."""
    return sorted(_BUILDERS)


def canonical_name(name: str) -> str:
    """The canonical name of model ``name``: case and surrounding spaces ignored, an alias of
    :data:`ALIASES` ("segnet-basic") replaced by its model ("segnet_basic"). TypeError for a
    non-string, ValueError naming the valid names for an unknown one."""
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in _BUILDERS:
        raise ValueError(
            f"unknown model name {name!r}; expected one of {names()} (aliases: {sorted(ALIASES)})"
        )
    return key


def small_preset(name: str) -> dict:
    """The small configuration of model ``name`` (a copy)."""
    return dict(SMALL_PRESETS[canonical_name(name)])


def build(
    name: str,
    num_classes: int,
    preset: str = "full",
    seed=None,
    materialize: bool = True,
    **config,
):
    """Build model ``name`` with ``num_classes`` outputs.

    Args:
        name: one of :func:`names` (or an alias such as "segnet-basic").
        num_classes: number of output score channels.
        preset: "full" (the paper's configuration) or "small" (:data:`SMALL_PRESETS`).
        seed: int, NumPy Generator or None (fresh entropy): the same seed gives the same initial
            weights and dropout seeds.
        materialize: False skips the random initialisation (weights are allocated but their
            values are undefined, see :func:`uninitialised`): for counting parameters of the
            full-size networks in milliseconds, or before loading weights.
        **config: options of the model class (``width``, ``fc_channels``, ``depth``, ...);
            they override the preset.

    The returned model has ``model.config == {"name", "num_classes", "config"}`` where
    ``config`` is the complete set of architecture options that were applied (preset merged
    with overrides; not the seed).
    """
    key = canonical_name(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)):
        raise TypeError(f"num_classes must be a positive integer, got {num_classes!r}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    num_classes = int(num_classes)  # a NumPy integer too; model.config stays JSON-serialisable
    if preset not in ("full", "small"):
        raise ValueError(f"preset must be 'full' or 'small', got {preset!r}")
    builder, cls = _BUILDERS[key]
    options = dict(SMALL_PRESETS[key]) if preset == "small" else {}
    options.update(config)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self",)]
    # the builder fixes these (FCN's variant, DeepLab v2's backbone, U-Net's padding)
    fixed = ("num_classes", "variant", "seed", "backbone", "padding")
    accepted = [p for p in accepted if p not in fixed]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise TypeError(
            f"build({name!r}): unknown option(s) {unknown}; {cls.__name__} accepts {accepted}"
        )
    if materialize:
        model = builder(num_classes, seed=seed, **options)
    else:
        with uninitialised():
            model = builder(num_classes, seed=seed, **options)
    model.config = {"name": key, "num_classes": num_classes, "config": options}
    return model

"""FCN-32s, FCN-16s and FCN-8s (Long, Shelhamer & Darrell, CVPR 2015), as the reference Caffe
code (shelhamer/fcn.berkeleyvision.org, ``voc-fcn*/net.py``) defines them.

The network
-----------
VGG16 with conv1_1 padded by 100, Caffe (ceil) pools, fc6 as a 7x7 conv and fc7 as a 1x1 conv
(ReLU + dropout 0.5 after both), then::

    score_fr     = conv1x1(fc7)  -> num_classes                           stride 32
    FCN-32s:  out = crop(upscore(score_fr), offset 19)                    upscore: k64 s32
    FCN-16s:  fuse_pool4 = upscore2(score_fr) + crop(score_pool4(pool4), offset 5)     k4 s2
              out = crop(upscore16(fuse_pool4), offset 27)                              k32 s16
    FCN-8s:   fuse_pool4 as above
              fuse_pool3 = upscore_pool4(fuse_pool4) + crop(score_pool3(pool3), offset 9)  k4 s2
              out = crop(upscore8(fuse_pool3), offset 31)                                 k16 s8

Every ``upscore*`` is a transposed convolution (no bias) initialised to bilinear interpolation
(``bilinear_kernel``: factor = (k+1)//2, center = factor - 0.5 for even k, weight
(1 - |i - center|/factor)(1 - |j - center|/factor)) written only on the diagonal W[c, c], so
class c's scores are interpolated from class c alone. ``learn_upsampling`` chooses:

* ``False`` (default; the reference code): all upsampling fixed. The kernels are then *buffers*,
  saved in the state dict but not Parameters, so ``parameters()``, the optimiser, weight decay and
  the parameter count never see them.
* ``"2x"`` (the paper, section 4.2): the 2x layers (upscore2, upscore_pool4) are learned from the
  bilinear start, the final 8x/16x/32x one stays fixed.
* ``True``: all learned.

``score_fr``, ``score_pool4`` and ``score_pool3`` are zero-initialised (the reference code's Caffe
default filler for the new layers): at the start the skip branches add exactly nothing, so
FCN-16s begins as the FCN-32s it is fine-tuned from. (A consequence worth knowing: on the first
step only the score layers receive a non-zero gradient, since d loss / d fc7 = W_score^T dy = 0.)

``at_once=True`` is the "at-once" FCN-8s (voc-fcn8s-atonce): pool4 is multiplied by a fixed 0.01
and pool3 by 0.0001 before scoring them, to keep the skip scores' scale comparable to score_fr's
while all layers train together from the start.

Why conv1_1 has padding 100
---------------------------
fc6 is a 7x7 valid convolution on pool5, which is the input divided by 32: without padding, an
image of 192 pixels or less gives pool5 smaller than 7x7 and fc6 has no output at all, and in
general the upsampled score map would be *smaller* than the image (each valid convolution eats a
border). Padding 100 pixels on each side of conv1_1 makes the score map large enough to cover
the image for every input size: pool5 is ceil((H + 198) / 32) >= 7 for H >= 1, and after the
final upsampling the map is at least H + 38 (32s), H + 54 (16s), H + 62 (8s) long, so there is
always room for the crop below. The price is compute spent on the padding; the gain is that FCN
takes any image size and returns scores of exactly that size.

Why the crop offsets are 19, (5, 27) and (5, 9, 31)
---------------------------------------------------
Follow one coordinate through the layers (Caffe's ``coord_map``). A conv or pool with kernel k,
stride s, padding p maps output position o to the *centre* of its window in the input,
``i = s*o - p + (k - 1)/2``; a transposed conv maps input position i to the centre of its
output footprint, ``o = s*i - p + (k - 1)/2``. Then, with x the image coordinate:

    conv1_1 (k3 s1 p100):  x = c1 - 99             other convs (k3 p1): identity
    each pool (k2 s2 p0):  i = 2*o + 0.5           five pools compose to  c1 = 32*p5 + 15.5
    fc6 (k7 p0):           p5 = f + 3              fc7, score_fr (k1): identity

    so a score_fr position f sits at x = 32*(f + 3) + 15.5 - 99 = 32*f + 12.5

FCN-32s, upscore k64 s32:  u = 32*f + 31.5   =>  x = u - 31.5 + 12.5 = u - 19.
  Output pixel x lives at upscore position x + 19: **crop at offset 19**.

FCN-16s: pool4 position p4 sits at p4 = 2*p5 + 0.5 = 2*f + 6.5; upscore2 (k4 s2) puts f at
  v = 2*f + 1.5, so p4 = v + 5: **score_pool4 is cropped at offset 5** to line up with upscore2.
  Image coordinate of p4: x = 16*p4 + 7.5 - 99 = 16*v - 11.5; upscore16 (k32 s16):
  u = 16*v + 15.5, so x = u - 27: **final crop at offset 27**.

FCN-8s: upscore_pool4 (k4 s2) puts v at w = 2*v + 1.5; pool3 p3 = 2*p4 + 0.5 = 2*v + 10.5 = w + 9:
  **score_pool3 is cropped at offset 9**. Image coordinate x = 8*p3 + 3.5 - 99 = 8*w - 23.5;
  upscore8 (k16 s8): u = 8*w + 7.5, so x = u - 31: **final crop at offset 31**.

The offsets are the same for every input size (they only depend on the layer geometry), which is
why the network can be written with constants; the crop sizes are taken from the input (final) or
from the upsampled map (skips). The tests check the alignment numerically.

Other paddings and fc6 sizes (the small configuration)
------------------------------------------------------
Redo the algebra with conv1_1 padding P (``x = c1 - P + 1``) and a K x K fc6
(``p5 = f + (K - 1)/2``): a score_fr position sits at x = 32*f + 16*K - P + 0.5, and the offsets
become ``out = 31 + P - 16K`` (32s), ``39 + P - 16K`` (16s), ``43 + P - 16K`` (8s),
``pool4 = K - 2``, ``pool3 = 2K - 5`` (:func:`fcn_offsets`). fc6 has an output for every input
size when ``P >= 16K - 15`` (the paper: K = 7 needs 97; it uses 100). The skips add one more
condition: with ceil pools, 4 x pool5 can exceed pool3's length by up to 3, and the pool3 crop
(offset 2K - 5, length 4 x (pool5 - K + 1) + 6) then fits inside pool3's score map for every size
only if K >= 4 (K = 3 fails for about half of all sizes, 40 among them). The tests try every size
from 1 to 140 pixels.

The 2-core configuration keeps the design but shrinks it: K = 4 and P = 49 = 16*4 - 15, so every
size still works, with offsets 16 (32s), (2, 24) (16s) and (2, 3, 28) (8s). At 40x40 conv1 then
runs on 136x136 pixels instead of 238x238, a third of the work in the layers that dominate FCN's
cost.

Parameter count (21 classes): VGG16 convs 14,714,688 + fc6 102,764,544 + fc7 16,781,312 +
score_fr 86,037 + score_pool4 10,773 + score_pool3 5,397 = 134,362,751 ("134M"); learning the
upsampling adds 21*21*(16 + 16 + 256) = 127,008 more (the "127k" of the fixed deconvolutions).
"""

from __future__ import annotations

import numpy as np

from minisegnet import functional as F
from minisegnet import nn
from minisegnet.models.common import check_input, make_rng, scaled, spatial_size
from minisegnet.models.vgg import VGG16
from minisegnet.tensor import Tensor, array_module

__all__ = [
    "FCN",
    "Crop",
    "Scale",
    "FixedConvTranspose2d",
    "bilinear_upsampler",
    "FCN_OFFSETS",
    "fcn_offsets",
]

# Crop offsets of the reference code, derived in the module docstring.
FCN_OFFSETS = {
    "32s": {"out": 19},
    "16s": {"pool4": 5, "out": 27},
    "8s": {"pool4": 5, "pool3": 9, "out": 31},
}


def fcn_offsets(variant: str, first_padding: int = 100, fc_kernel: int = 7) -> dict:
    """The crop offsets for conv1_1 padding P and a K x K fc6 (module docstring, last section).

    out = 31 + P - 16K (32s), 39 + P - 16K (16s), 43 + P - 16K (8s); pool4 = K - 2;
    pool3 = 2K - 5. P = 100, K = 7 gives :data:`FCN_OFFSETS`. A negative offset would mean the
    skip or score map starts *inside* the image: that geometry cannot be cropped, so it is an error.
    """
    P, K = int(first_padding), int(fc_kernel)
    base = {"32s": 31, "16s": 39, "8s": 43}[variant]
    out = base + P - 16 * K
    offsets = {"out": out}
    if variant in ("16s", "8s"):
        offsets["pool4"] = K - 2
    if variant == "8s":
        offsets["pool3"] = 2 * K - 5
    bad = {name: value for name, value in offsets.items() if value < 0}
    if bad:
        raise ValueError(
            f"FCN-{variant}: first_padding={P} and fc_kernel={K} give negative crop offsets {bad}; "
            f"FCN-16s needs fc_kernel >= 2, FCN-8s fc_kernel >= 3, and the final crop needs "
            f"first_padding >= {16 * K - base} with fc_kernel={K}"
        )
    return offsets


class Crop(nn.Module):
    """Caffe's Crop layer on H and W: ``x[:, :, offset:offset + H, offset:offset + W]``.

    ``forward(x, size)`` with ``size = (H, W)`` of the reference blob. Cropping is slicing, so the
    gradient flows back into the cropped window and is zero on the discarded border.
    """

    def __init__(self, offset: int):
        super().__init__()
        self.offset = int(offset)

    def forward(self, x, size):
        H, W = int(size[0]), int(size[1])
        o = self.offset
        h, w = spatial_size(x)
        if o + H > h or o + W > w:
            raise ValueError(
                f"Crop: cannot take a {H}x{W} window at offset {o} from a {h}x{w} map "
                "(the map must be at least offset + size in each direction)"
            )
        return x[:, :, o : o + H, o : o + W]  # (N, C, H, W)

    def extra_repr(self) -> str:
        return f"offset={self.offset}"


class Scale(nn.Module):
    """Multiply by a fixed constant (Caffe ``Scale`` with lr_mult 0): the at-once skip scaling."""

    def __init__(self, factor: float):
        super().__init__()
        self.factor = float(factor)

    def forward(self, x):
        return x * self.factor

    def extra_repr(self) -> str:
        return f"factor={self.factor}"


class FixedConvTranspose2d(nn.Module):
    """A transposed convolution whose weight is fixed: kept as a buffer, not a Parameter.

    Why a separate module rather than ``requires_grad=False`` on an ``nn.ConvTranspose2d``: a
    Parameter, even one that does not require grad, is listed by ``parameters()`` and would be
    counted, weight-decayed and handed to optimisers. A buffer is saved and loaded under the same
    name and shape (``upscore.weight``, (C, C, k, k)), so fixed and learned FCNs exchange state
    dicts, but it is not learned.

    The arithmetic is ``F.conv_transpose2d``. When the weight is diagonal (W[c, d] = 0 for
    c != d, always true for the bilinear kernels unless learned weights were loaded), class c's
    output depends on class c's input only, so the layer runs as ``groups=C`` with the (C, 1, k, k)
    diagonal: the same sums without the C*(C-1) products by zero, C times fewer multiply-adds
    (21x for VOC). Any other weight is used as it is. The check is redone whenever the buffer
    is replaced (``load_state_dict``, ``.to()``).
    """

    def __init__(self, weight: np.ndarray, stride: int, padding: int = 0):
        super().__init__()
        self.register_buffer("weight", np.ascontiguousarray(weight, dtype=np.float32))
        self.stride = int(stride)
        self.padding = int(padding)
        self.in_channels, self.out_channels = int(weight.shape[0]), int(weight.shape[1])
        self.kernel_size = (int(weight.shape[2]), int(weight.shape[3]))
        self._plan = (None, None)  # (weight array it was made for, diagonal weight or None)

    def _diagonal(self):
        """The (C, 1, k, k) diagonal of the weight if every off-diagonal slice is 0, else None."""
        w = self.weight  # (C, C, k, k)
        if self._plan[0] is not w:
            diagonal = None
            if w.shape[0] == w.shape[1]:
                xp = array_module(w)
                c = xp.arange(w.shape[0])
                diag = w[c, c]  # (C, k, k)
                if float(xp.abs(w).sum()) == float(xp.abs(diag).sum()):
                    diagonal = xp.ascontiguousarray(diag[:, None])  # (C, 1, k, k)
            self._plan = (w, diagonal)
        return self._plan[1]

    def forward(self, x):
        diagonal = self._diagonal()
        if diagonal is not None:
            weight = Tensor.from_array(diagonal)  # no gradient: a constant of the graph
            groups = self.in_channels
        else:
            weight, groups = Tensor.from_array(self.weight), 1
        return F.conv_transpose2d(
            x, weight, None, stride=self.stride, padding=self.padding, groups=groups
        )

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, fixed=True"
        )


def bilinear_upsampler(channels: int, factor: int, learnable: bool, seed=None) -> nn.Module:
    """The FCN upsampling layer: kernel 2*factor, stride factor, no bias, bilinear diagonal.

    Learnable: an ``nn.ConvTranspose2d`` whose weight Parameter starts bilinear (``nn.init
    .bilinear_``). Fixed: :class:`FixedConvTranspose2d` holding the same array as a buffer.
    No padding: the reference code crops instead (see the offsets above).
    """
    k = 2 * factor
    if learnable:
        layer = nn.ConvTranspose2d(channels, channels, k, stride=factor, bias=False, seed=seed)
        nn.init.bilinear_(layer.weight)
        return layer
    weight = Tensor(np.zeros((channels, channels, k, k), np.float32))
    nn.init.bilinear_(weight)  # (C, C, k, k), the kernel on the diagonal only
    return FixedConvTranspose2d(weight.numpy(), stride=factor)


def _zero_init(conv) -> None:
    nn.init.zeros_(conv.weight)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class FCN(nn.Module):
    """FCN-32s / FCN-16s / FCN-8s on VGG16 (see the module docstring for the whole story).

    Args:
        num_classes: score channels (21 on PASCAL VOC: 20 classes + background).
        variant: "32s", "16s" or "8s".
        width: channel multiplier of the VGG16 convs (1 = paper).
        fc_channels: channels of fc6 and fc7 (4096 in the paper; small variants use fewer).
        fc_kernel: size of fc6's square kernel (7 in the paper; the small preset uses 4).
        first_padding: padding of conv1_1 (100 in the paper; the small preset uses 49). With
            ``fc_kernel`` it sets the crop offsets (:func:`fcn_offsets`).
        learn_upsampling: False (all fixed, reference code), "2x" (paper) or True (all learned).
        at_once: scale pool4 by 0.01 and pool3 by 0.0001 before scoring (at-once FCN-8s).
        dropout: after fc6 and fc7 (0.5 as in VGG).
        in_channels: image channels.
        seed: int, NumPy Generator or None; the random stream of the initialisation.

    ``forward(x)`` maps (N, in_channels, H, W) to scores (N, num_classes, H, W) for any H, W >= 1.
    """

    input_multiple = 1  # any frame size: the padded first convolution and the crops

    def __init__(
        self,
        num_classes: int = 21,
        variant: str = "8s",
        width: float = 1.0,
        fc_channels: int = 4096,
        fc_kernel: int = 7,
        first_padding: int = 100,
        learn_upsampling: bool | str = False,
        at_once: bool = False,
        dropout: float = 0.5,
        in_channels: int = 3,
        seed=None,
    ):
        super().__init__()
        rng = make_rng(seed)
        if variant not in FCN_OFFSETS:
            raise ValueError(f"FCN: variant must be one of '32s', '16s', '8s', got {variant!r}")
        if learn_upsampling not in (False, True, "2x"):
            raise ValueError(
                f"FCN: learn_upsampling must be False, True or '2x', got {learn_upsampling!r}"
            )
        self.num_classes, self.variant, self.in_channels = num_classes, variant, in_channels
        self.learn_upsampling, self.at_once = learn_upsampling, at_once
        offsets = fcn_offsets(variant, first_padding, fc_kernel)
        learn_2x = learn_upsampling in (True, "2x")
        learn_final = learn_upsampling is True

        self.encoder = VGG16(
            width=width,
            in_channels=in_channels,
            first_padding=first_padding,
            ceil_mode=True,
            fc_channels=fc_channels,
            fc_kernel=fc_kernel,
            fc_dropout=dropout,
            seed=rng,
        )
        self.score_fr = nn.Conv2d(fc_channels, num_classes, 1, seed=rng)
        _zero_init(self.score_fr)
        if variant == "32s":
            self.upscore = bilinear_upsampler(num_classes, 32, learn_final, rng)
        else:
            self.upscore2 = bilinear_upsampler(num_classes, 2, learn_2x, rng)
            if at_once:
                self.scale_pool4 = Scale(0.01)
            self.score_pool4 = nn.Conv2d(scaled(512, width), num_classes, 1, seed=rng)
            _zero_init(self.score_pool4)
            self.crop_pool4 = Crop(offsets["pool4"])  # Caffe: score_pool4c
        if variant == "16s":
            self.upscore16 = bilinear_upsampler(num_classes, 16, learn_final, rng)
        if variant == "8s":
            self.upscore_pool4 = bilinear_upsampler(num_classes, 2, learn_2x, rng)
            if at_once:
                self.scale_pool3 = Scale(1e-4)
            self.score_pool3 = nn.Conv2d(scaled(256, width), num_classes, 1, seed=rng)
            _zero_init(self.score_pool3)
            self.crop_pool3 = Crop(offsets["pool3"])  # Caffe: score_pool3c
            self.upscore8 = bilinear_upsampler(num_classes, 8, learn_final, rng)
        self.crop = Crop(offsets["out"])  # Caffe: score = crop(upscore*, data)

    def forward(self, x):
        H, W = check_input(
            f"FCN-{self.variant}", x, self.in_channels, self.encoder.min_input_size()
        )
        features = self.encoder(x)
        score = self.score_fr(features.fc7)  # (N, K, h, w) at stride 32
        if self.variant == "32s":
            return self.crop(self.upscore(score), (H, W))  # (N, K, H, W)

        up2 = self.upscore2(score)  # (N, K, 2h+2, 2w+2)
        pool4 = features.pools[3]
        if self.at_once:
            pool4 = self.scale_pool4(pool4)
        fuse_pool4 = up2 + self.crop_pool4(self.score_pool4(pool4), spatial_size(up2))
        if self.variant == "16s":
            return self.crop(self.upscore16(fuse_pool4), (H, W))  # (N, K, H, W)

        up4 = self.upscore_pool4(fuse_pool4)  # (N, K, 2h'+2, 2w'+2)
        pool3 = features.pools[2]
        if self.at_once:
            pool3 = self.scale_pool3(pool3)
        fuse_pool3 = up4 + self.crop_pool3(self.score_pool3(pool3), spatial_size(up4))
        return self.crop(self.upscore8(fuse_pool3), (H, W))  # (N, K, H, W)

    def extra_repr(self) -> str:
        return (
            f"variant={self.variant!r}, num_classes={self.num_classes}, "
            f"learn_upsampling={self.learn_upsampling!r}, at_once={self.at_once}, "
            f"fc_kernel={self.encoder.fc_kernel}, first_padding={self.encoder.first_padding}"
        )

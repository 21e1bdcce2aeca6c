"""U-Net (Ronneberger, Fischer & Brox, MICCAI 2015): the original valid-padding network with
copy-and-crop skips and the overlap-tile rule, and the padded variant most code uses today.

The network (paper, figure 1)
-----------------------------
Contracting path, level l = 1..4 with C_l = 64, 128, 256, 512 channels::

    enc{l}_conv1, enc{l}_conv2   3x3 "valid" (no padding) + ReLU: each removes 2 pixels
    pool{l}                      2x2 max pool, stride 2
    enc5 (bottom)                two 3x3 valid convs to 1024 channels + ReLU, dropout 0.5
                                 ("drop-out layers at the end of the contracting path")

Expansive path, level l = 4..1::

    up{l}      2x2 up-convolution (transposed conv, stride 2) halving the channels: 2C_l -> C_l
    crop       the copy of enc{l}'s output is centre-cropped to the up-convolution's size
               ("copy and crop": the valid convolutions made it larger)
    cat        [cropped copy, upsampled]: 2C_l channels
    dec{l}_conv1, dec{l}_conv2   3x3 valid + ReLU, to C_l
    score      1x1 conv to the classes

Convolutions: 10 (contracting) + 4 up-convolutions + 8 (expansive) + 1 (score) = **23**.

Parameter count, for the paper's 1-channel input and 2 classes (k*k*Cin*Cout + Cout each)::

    contracting  640 + 36,928 | 73,856 + 147,584 | 295,168 + 590,080 |
                 1,180,160 + 2,359,808 | 4,719,616 + 9,438,208                  = 18,842,048
    level 4      up 2,097,664 + conv 4,719,104 + conv 2,359,808
    level 3      up   524,544 + conv 1,179,904 + conv   590,080
    level 2      up   131,200 + conv   295,040 + conv   147,584
    level 1      up    32,832 + conv    73,792 + conv    36,928                 = 12,188,480
    score        64*2 + 2                                                      =        130
    total                                                                      = 31,030,658

(an RGB input adds 2*9*64 = 1,152: 31,031,810). The same for the padded variant (padding
changes no weight shape).

The overlap-tile rule
---------------------
Follow one side's length through the valid network: each conv pair removes 4, each pool halves
(and must see an even length, or the 2x2 windows would drop a row and the skips would not line up),
each up-convolution doubles. With b the length at the bottom after its two convs::

    input  H = 16 b + 124        (572 for b = 28)
    output O = 16 b - 60         (388)        so  H - O = 184 = 2 * 92

and b >= 4 for the output to exist: the valid inputs are 188, 204, 220, ..., 572, ... (step 16).
Output pixel i is centred on input pixel i + 92: the network sees at least 92 pixels of context
on every side of what it labels (its receptive field, about 200 pixels, is wider still), and a
shift of the input by 16 pixels (four pools) shifts the output by exactly 16. To label a whole image, the paper mirrors the image across its border to
supply that context (and tiles larger images, each tile's context overlapping its neighbours':
"overlap-tile"). ``forward`` does exactly this for one tile: it picks the smallest valid output
O >= H (and W), mirror-pads the image by 92 pixels on the top/left and 92 + O - H on the
bottom/right, runs the valid network and keeps the top-left H x W of its output. So the model
takes any image size and returns scores of that size, as the rest of the library expects.
``mirror_pad=False`` runs the valid network on the input as given: it must then be a valid size
(a clear error names the nearest ones) and the output is smaller than the input.

The padded variant (``padding="same"``): 3x3 convs pad 1, so nothing is cropped; each
up-convolution's output is zero-padded at the bottom/right to its skip's size when a pooled side
was odd. Inputs must be at least 16 pixels (four 2x2 pools).
"""

from __future__ import annotations

import numpy as np

from minisegnet import functional as F
from minisegnet import nn
from minisegnet.functional import cat
from minisegnet.models.common import check_input, dropout_seed, make_rng, scaled, spatial_size

__all__ = ["UNet", "valid_input_size", "valid_output_size", "nearest_valid_sizes", "mirror_index"]

UNET_CHANNELS = (64, 128, 256, 512, 1024)
BORDER = 92  # context pixels per side of the valid network: (H - O) / 2
MIN_BOTTOM = 4  # smallest bottom length b with an output (16*4 - 60 = 4)


def valid_input_size(b: int) -> int:
    """Input length whose bottom length (after its two convs) is ``b``: 16 b + 124."""
    return 16 * b + 124


def valid_output_size(input_size: int) -> int:
    """Output length of the valid network for a valid input length: input - 184."""
    return input_size - 2 * BORDER


def nearest_valid_sizes(size: int) -> tuple[int | None, int]:
    """The largest valid input length <= ``size`` (None if there is none) and the smallest >= it."""
    b_low = (size - 124) // 16
    low = valid_input_size(b_low) if b_low >= MIN_BOTTOM else None
    b_high = max(MIN_BOTTOM, -(-(size - 124) // 16))
    return low, valid_input_size(b_high)


def mirror_index(length: int, before: int, after: int) -> np.ndarray:
    """Indices into a side of ``length`` that mirror it ``before`` / ``after`` pixels outwards.

    Reflection without repeating the edge (..., 2, 1, 0, 1, 2, ...), continued periodically
    (period 2*(length-1)) when the padding is longer than the side itself.
    """
    i = np.arange(-before, length + after)
    if length == 1:
        return np.zeros_like(i)
    period = 2 * (length - 1)
    i = np.mod(i, period)
    return np.where(i < length, i, period - i)


def _mirror(x, axis: int, index: np.ndarray):
    """``x`` gathered along ``axis`` (2 or 3) at ``index`` (a :func:`mirror_index`), made of
    slices: each run of consecutive indices is one (possibly reversed) slice, and the runs are
    concatenated. Why not ``x[..., index]``: a fancy index gives a non-contiguous array, which the
    GPU kernels refuse, while ``cat`` writes a fresh contiguous one; the gradient of each slice
    flows back to its source pixels."""
    pieces, k = [], 0
    while k < len(index):
        start = int(index[k])
        step = int(index[k + 1] - index[k]) if k + 1 < len(index) else 1
        step = step if step in (1, -1) else 1  # a side of 1 pixel: index is all zeros
        end = k
        while end + 1 < len(index) and index[end + 1] - index[end] == step:
            end += 1
        stop = int(index[end]) + step
        window = slice(start, None if stop < 0 else stop, step)
        pieces.append(x[:, :, window] if axis == 2 else x[:, :, :, window])
        k = end + 1
    return cat(pieces, dim=axis)


def _centre_crop(x, size):
    """x[:, :, top:top+h, left:left+w] around the centre (the copy-and-crop of the skips)."""
    h, w = size
    H, W = spatial_size(x)
    top, left = (H - h) // 2, (W - w) // 2
    return x[:, :, top : top + h, left : left + w]


class UNet(nn.Module):
    """U-Net (module docstring).

    Args:
        num_classes: 2 in the paper (cell / background).
        padding: "valid" (the paper) or "same" (padded variant).
        width: channel multiplier (64 ... 1024 scaled).
        dropout: at the end of the contracting path (0.5; 0 = none).
        mirror_pad: "valid" only: mirror-pad any image to the overlap-tile size and return its
            own size (True), or require a valid input size and return the smaller map (False).
        in_channels: image channels (1 in the paper; 3 here by default, for RGB data).
        seed: int, NumPy Generator or None.

    ``forward(x)``: (N, in_channels, H, W) -> (N, K, H, W), or (N, K, H - 184, W - 184) for
    ``padding="valid", mirror_pad=False``.
    """

    def __init__(self, num_classes=2, padding="valid", width=1.0, dropout=0.5, mirror_pad=True,
                 in_channels=3, seed=None):  # fmt: skip
        super().__init__()
        rng = make_rng(seed)
        if padding not in ("valid", "same"):
            raise ValueError(f"UNet: padding must be 'valid' or 'same', got {padding!r}")
        self.num_classes, self.in_channels = num_classes, in_channels
        self.padding, self.mirror_pad = padding, bool(mirror_pad)
        p = 0 if padding == "valid" else 1
        ch = [scaled(c, width) for c in UNET_CHANNELS]
        c_in = in_channels
        for level in range(1, 6):
            c = ch[level - 1]
            name = f"enc{level}"
            setattr(self, f"{name}_conv1", nn.Conv2d(c_in, c, 3, padding=p, seed=rng))
            setattr(self, f"{name}_relu1", nn.ReLU())
            setattr(self, f"{name}_conv2", nn.Conv2d(c, c, 3, padding=p, seed=rng))
            setattr(self, f"{name}_relu2", nn.ReLU())
            if level < 5:
                setattr(self, f"pool{level}", nn.MaxPool2d(2, stride=2))
            c_in = c
        self.drop = nn.Dropout(dropout, seed=dropout_seed(rng)) if dropout else None
        for level in range(4, 0, -1):
            c = ch[level - 1]
            setattr(self, f"up{level}", nn.ConvTranspose2d(c_in, c, 2, stride=2, seed=rng))
            setattr(self, f"dec{level}_conv1", nn.Conv2d(2 * c, c, 3, padding=p, seed=rng))
            setattr(self, f"dec{level}_relu1", nn.ReLU())
            setattr(self, f"dec{level}_conv2", nn.Conv2d(c, c, 3, padding=p, seed=rng))
            setattr(self, f"dec{level}_relu2", nn.ReLU())
            c_in = c
        self.score = nn.Conv2d(c_in, num_classes, 1, seed=rng)

    # ------------------------------------------------------------------ sizes
    def min_input_size(self) -> int:
        """188 for the valid network run as given, 16 for the padded one, 1 with mirror padding."""
        if self.padding == "same":
            return 16
        return 1 if self.mirror_pad else valid_input_size(MIN_BOTTOM)

    def _check_valid(self, H: int, W: int) -> None:
        bad = [(side, n) for side, n in (("height", H), ("width", W))
               if n < valid_input_size(MIN_BOTTOM) or (n - 124) % 16]  # fmt: skip
        if bad:
            side, n = bad[0]
            low, high = nearest_valid_sizes(n)
            around = f"{low} or {high}" if low is not None else f"{high}"
            raise ValueError(
                f"UNet (valid padding, mirror_pad=False): input {side} {n} is not an overlap-tile "
                f"size; valid sizes are 16*b + 124 for b >= {MIN_BOTTOM} (188, 204, 220, ..., "
                f"572, ...), the nearest are {around}; got input {H}x{W}"
            )

    # ------------------------------------------------------------------ forward
    def _level(self, name, x):
        x = getattr(self, f"{name}_relu1")(getattr(self, f"{name}_conv1")(x))
        return getattr(self, f"{name}_relu2")(getattr(self, f"{name}_conv2")(x))

    def _network(self, x):
        """The U itself on a size it accepts: (N, C, H, W) -> (N, K, H', W')."""
        skips = []
        for level in range(1, 5):
            x = self._level(f"enc{level}", x)  # (N, C_l, h, w)
            skips.append(x)
            x = getattr(self, f"pool{level}")(x)  # (N, C_l, h/2, w/2)
        x = self._level("enc5", x)  # (N, 16 C_1, b, b)
        if self.drop is not None:
            x = self.drop(x)
        for level in range(4, 0, -1):
            up = getattr(self, f"up{level}")(x)  # (N, C_l, 2h, 2w)
            skip = skips[level - 1]
            if self.padding == "valid":
                skip = _centre_crop(skip, spatial_size(up))  # copy and crop
            else:
                (h, w), (hs, ws) = spatial_size(up), spatial_size(skip)
                up = F.pad(up, (0, ws - w, 0, hs - h))  # an odd side pooled down: pad back
            x = self._level(f"dec{level}", cat([skip, up], dim=1))  # (N, C_l, ., .)
        return self.score(x)  # (N, K, ., .)

    def forward(self, x):
        # the valid network's own size check below names the valid sizes, not just the minimum
        H, W = check_input("UNet", x, self.in_channels, 16 if self.padding == "same" else 1)
        if self.padding == "same" or not self.mirror_pad:
            if self.padding == "valid":
                self._check_valid(H, W)
            return self._network(x)
        # Overlap-tile for one tile: mirror the image out to the smallest valid size covering it.
        tile = [nearest_valid_sizes(n + 2 * BORDER)[1] for n in (H, W)]
        x = _mirror(x, 2, mirror_index(H, BORDER, tile[0] - H - BORDER))  # (N, C, tile_H, W)
        x = _mirror(x, 3, mirror_index(W, BORDER, tile[1] - W - BORDER))  # (N, C, tile_H, tile_W)
        return self._network(x)[:, :, :H, :W]  # (N, K, H, W)

    def extra_repr(self) -> str:
        return (
            f"num_classes={self.num_classes}, padding={self.padding!r}, "
            f"mirror_pad={self.mirror_pad}"
        )

"""``Upsample``: resizing as a layer, shaped like ``torch.nn.Upsample`` (the math is in
``minisegnet/ops/interpolate.py``).

Shapes: (N, C, H, W) -> (N, C, Ho, Wo), (Ho, Wo) = ``size`` or floor((H, W) * scale_factor).
The default mode is "nearest", as in PyTorch; PSPNet uses mode="bilinear", align_corners=False.
"""

from __future__ import annotations

from minisegnet import functional as F
from minisegnet.nn.module import Module
from minisegnet.ops.geometry import check_resize_options

__all__ = ["Upsample"]


class Upsample(Module):
    def __init__(self, size=None, scale_factor=None, mode="nearest", align_corners=None):
        super().__init__()
        check_resize_options("Upsample", size, scale_factor, mode, align_corners)
        self.size, self.scale_factor = size, scale_factor
        self.mode, self.align_corners = mode, align_corners

    def forward(self, x):
        return F.interpolate(x, self.size, self.scale_factor, self.mode, self.align_corners)

    def extra_repr(self) -> str:
        what = f"size={self.size}" if self.size is not None else f"scale_factor={self.scale_factor}"
        corners = "" if self.align_corners is None else f", align_corners={self.align_corners}"
        return f"{what}, mode={self.mode!r}{corners}"

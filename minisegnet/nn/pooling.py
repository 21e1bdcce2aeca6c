"""Pooling layers as modules, shaped like ``torch.nn`` (the math lives in ``minisegnet/ops/``).

    MaxPool2d          ops/pooling.py       (with ``return_indices=True`` also the switches)
    MaxUnpool2d        ops/unpooling.py     (SegNet / DeconvNet decoders)
    AvgPool2d          ops/avg_pooling.py
    AdaptiveAvgPool2d  ops/avg_pooling.py   (PSPNet's pyramid bins)

Shapes: (N, C, H, W) -> (N, C, Ho, Wo), Ho = floor or ceil((H + 2*pH - kH) / sH) + 1 (see
``ops/pooling.py`` for the ceil-mode rule); unpooling maps back, by default to
(Hp - 1)*sH - 2*pH + kH, or to ``output_size``.
"""

from __future__ import annotations

from minisegnet import functional as F
from minisegnet.nn.module import Module
from minisegnet.ops.geometry import pool_geometry

__all__ = ["MaxPool2d", "MaxUnpool2d", "AvgPool2d", "AdaptiveAvgPool2d"]


class MaxPool2d(Module):
    """Max pooling; ``forward(x)`` returns ``y`` or, with ``return_indices``, ``(y, indices)``
    where ``indices`` is a :class:`~minisegnet.ops.pooling.PoolIndices` (1 byte per value)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, return_indices=False):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.return_indices = bool(ceil_mode), bool(return_indices)
        pool_geometry("MaxPool2d", kernel_size, stride, padding)  # fail now, not at first use

    def forward(self, x):
        return F.max_pool2d(
            x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.return_indices
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"ceil_mode={self.ceil_mode}, return_indices={self.return_indices}"
        )


class MaxUnpool2d(Module):
    """Max unpooling with the switches of a :class:`MaxPool2d`:
    ``forward(x, indices, output_size=None)``; pass the encoder's size for odd sizes."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        pool_geometry("MaxUnpool2d", kernel_size, stride, padding)

    def forward(self, x, indices, output_size=None):
        return F.max_unpool2d(x, indices, self.kernel_size, self.stride, self.padding, output_size)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class AvgPool2d(Module):
    def __init__(
        self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True
    ):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.ceil_mode, self.count_include_pad = bool(ceil_mode), bool(count_include_pad)
        pool_geometry("AvgPool2d", kernel_size, stride, padding)

    def forward(self, x):
        return F.avg_pool2d(
            x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"ceil_mode={self.ceil_mode}, count_include_pad={self.count_include_pad}"
        )


class AdaptiveAvgPool2d(Module):
    """Average over ``output_size`` bins (an int, or a pair whose None entries keep the input's
    size); bin i spans floor(i*H/out) .. ceil((i+1)*H/out)."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self) -> str:
        return f"output_size={self.output_size}"

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


class _Pool2d(Module):
    """What the windowed layers share: a window geometry checked when the layer is built (an
    error then, not at the first forward) and shown by ``repr`` with the layer's options."""

    def __init__(self, kernel_size, stride, padding, **options):
        super().__init__()
        pool_geometry(type(self).__name__, kernel_size, stride, padding)
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        for name, value in options.items():
            setattr(self, name, bool(value))
        self._options = tuple(options)

    def extra_repr(self) -> str:
        names = ("kernel_size", "stride", "padding") + self._options
        return ", ".join(f"{name}={getattr(self, name)}" for name in names)


class MaxPool2d(_Pool2d):
    """Max pooling; ``forward(x)`` returns ``y`` or, with ``return_indices``, ``(y, indices)``
    where ``indices`` is a :class:`~minisegnet.ops.pooling.PoolIndices` (1 byte per value)."""

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, return_indices=False):
        super().__init__(
            kernel_size, stride, padding, ceil_mode=ceil_mode, return_indices=return_indices
        )

    def forward(self, x):
        return F.max_pool2d(
            x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.return_indices
        )


class MaxUnpool2d(_Pool2d):
    """Max unpooling with the switches of a :class:`MaxPool2d`:
    ``forward(x, indices, output_size=None)``; pass the encoder's size for odd sizes."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__(kernel_size, stride, padding)

    def forward(self, x, indices, output_size=None):
        return F.max_unpool2d(x, indices, self.kernel_size, self.stride, self.padding, output_size)


class AvgPool2d(_Pool2d):
    def __init__(
        self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True
    ):
        super().__init__(
            kernel_size, stride, padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad
        )

    def forward(self, x):
        return F.avg_pool2d(
            x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad
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

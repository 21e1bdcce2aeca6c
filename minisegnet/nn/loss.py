"""Loss modules."""

from __future__ import annotations

from minisegnet import functional as F
from minisegnet.nn.module import Module


class CrossEntropyLoss(Module):
    """Module form of :func:`minisegnet.functional.cross_entropy` (weights, ignore_index)."""

    def __init__(self, weight=None, ignore_index: int = 255, reduction: str = "mean"):
        super().__init__()
        self.register_buffer("weight", weight)
        self.ignore_index, self.reduction = ignore_index, reduction

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.weight, self.ignore_index, self.reduction)

"""Activation layers as modules (the functions live in ``minisegnet.functional``)."""

from __future__ import annotations

from minisegnet import functional as F
from minisegnet.nn.module import Module


class ReLU(Module):
    def __init__(self, inplace: bool = False):
        super().__init__()

    def forward(self, x):
        return F.relu(x)


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)

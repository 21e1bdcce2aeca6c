"""Layers and containers, shaped like ``torch.nn``."""

from minisegnet.nn.activation import ReLU, Sigmoid, Tanh
from minisegnet.nn.linear import Linear
from minisegnet.nn.loss import CrossEntropyLoss
from minisegnet.nn.module import Identity, Module, ModuleList, Sequential, StateDictError
from minisegnet.nn.parameter import Parameter

__all__ = [
    "Module", "Parameter", "Sequential", "ModuleList", "Identity", "StateDictError",
    "Linear", "ReLU", "Sigmoid", "Tanh", "CrossEntropyLoss",
]

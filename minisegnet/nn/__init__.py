"""Layers and containers, shaped like ``torch.nn``."""

from minisegnet.nn import init
from minisegnet.nn.activation import ReLU, Sigmoid, Tanh
from minisegnet.nn.balance import balance_init_
from minisegnet.nn.conv import Conv2d, ConvTranspose2d
from minisegnet.nn.crf import DenseCRF
from minisegnet.nn.dropout import Dropout, Dropout2d
from minisegnet.nn.linear import Linear
from minisegnet.nn.loss import CrossEntropyLoss
from minisegnet.nn.module import Identity, Module, ModuleList, Sequential, StateDictError
from minisegnet.nn.normalization import BatchNorm1d, BatchNorm2d, LocalResponseNorm
from minisegnet.nn.parameter import Parameter
from minisegnet.nn.pooling import AdaptiveAvgPool2d, AvgPool2d, MaxPool2d, MaxUnpool2d
from minisegnet.nn.upsample import Upsample

__all__ = [
    "Module",
    "Parameter",
    "Sequential",
    "ModuleList",
    "Identity",
    "StateDictError",
    "Linear",
    "ReLU",
    "Sigmoid",
    "Tanh",
    "CrossEntropyLoss",
]
__all__ += [
    "BatchNorm1d", "BatchNorm2d", "LocalResponseNorm", "Dropout", "Dropout2d",
]  # fmt: skip
__all__ += ["MaxPool2d", "MaxUnpool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Upsample"]
__all__ += ["Conv2d", "ConvTranspose2d", "init", "balance_init_", "DenseCRF"]

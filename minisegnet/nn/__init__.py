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

# fmt: off
__all__ = [
    "Module", "Parameter", "StateDictError", "init",                 # building blocks
    "Sequential", "ModuleList", "Identity",                          # containers
    "Linear", "Conv2d", "ConvTranspose2d", "balance_init_",          # weighted layers
    "ReLU", "Sigmoid", "Tanh",                                       # activations
    "BatchNorm1d", "BatchNorm2d", "LocalResponseNorm",               # normalisation
    "Dropout", "Dropout2d",                                          # dropout
    "MaxPool2d", "MaxUnpool2d", "AvgPool2d", "AdaptiveAvgPool2d",    # pooling
    "Upsample", "DenseCRF",                                          # resizing, refinement
    "CrossEntropyLoss",                                              # losses
]
# fmt: on

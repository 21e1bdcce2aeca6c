"""Convolution layers, shaped like ``torch.nn`` (the math lives in ``ops/conv.py`` and
``ops/conv_transpose.py``).

    Conv2d            x (N, C, H, W) -> (N, O, Ho, Wo)
                      Ho = floor((H + 2*padding - dilation*(kh - 1) - 1) / stride) + 1
                      weight (O, C/groups, kh, kw), bias (O,)
    ConvTranspose2d   x (N, C, H, W) -> (N, O, Ho, Wo)
                      Ho = (H - 1)*stride - 2*padding + dilation*(kh - 1) + output_padding + 1
                      weight (C, O/groups, kh, kw), bias (O,)

Default initialisation (differs from PyTorch's uniform default, on purpose): weights He/Kaiming
normal, w ~ N(0, 2 / fan_in), so a stack of conv + ReLU layers keeps its activation scale;
biases zero. fan_in is the number of products summed into one output value:

    Conv2d            fan_in = C/groups * kh * kw
                      (= ``init.kaiming_normal_(weight, mode="fan_in", nonlinearity="relu")``)
    ConvTranspose2d   fan_in = C/groups * kh * kw / (sh * sw)
                      each input pixel is spread over kh x kw outputs, s apart, so an output
                      receives kh*kw / (sh*sw) taps per input channel on average

PyTorch (and Caffe's MSRA filler) take a transposed convolution's fan from its weight shape
(C, O/groups, kh, kw) as if it were a convolution's, O/groups * kh * kw: the output channels.
For DeconvNet's channel-reducing deconvolutions (512 -> 256) that gives a sqrt 2 larger std
than the layer's real fan-in, and its small preset, trained from scratch, learned measurably
slower with it (see ``minisegnet/models/deconvnet.py``). Pass ``seed`` (an int or a NumPy
Generator) for reproducible weights; re-initialise with ``minisegnet.nn.init`` (``bilinear_``
for FCN's upsampling layers, ``zeros_`` for its score layers).
"""

from __future__ import annotations

import math

import numpy as np

from minisegnet import functional as F
from minisegnet.nn import init
from minisegnet.nn.module import Module
from minisegnet.nn.parameter import Parameter
from minisegnet.ops.geometry import conv_geometry, pair

__all__ = ["Conv2d", "ConvTranspose2d"]


def _check_channels(layer: str, in_channels, out_channels, groups):
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{layer}: {name} must be an int >= 1, got {value!r}")
        if value % groups:
            raise ValueError(f"{layer}: {name} ({value}) must be divisible by groups={groups}")


def _kernel(layer: str, kernel_size):
    kernel = pair(layer, "kernel_size", kernel_size)
    if min(kernel) < 1:
        raise ValueError(f"{layer}: kernel_size must be >= 1, got {kernel}")
    return kernel


class _ConvNd(Module):
    """What Conv2d and ConvTranspose2d share: geometry, parameters, initialisation, repr. A
    subclass gives its weight's shape and its fan-in (see the module docstring)."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                 bias, seed, dtype):  # fmt: skip
        super().__init__()
        layer = type(self).__name__
        stride, padding, dilation, groups = conv_geometry(layer, stride, padding, dilation, groups)
        _check_channels(layer, in_channels, out_channels, groups)
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _kernel(layer, kernel_size)
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        dtype = np.dtype(np.float32 if dtype is None else dtype)
        self.weight = Parameter(np.zeros(self._weight_shape(), dtype), dtype=dtype)
        # He normal over the products summed into each output (see the module docstring)
        std = init.calculate_gain("relu") / math.sqrt(self._fan_in())
        init.normal_(self.weight, 0.0, std, seed=seed)
        self.bias = Parameter(np.zeros(self.out_channels, dtype), dtype=dtype) if bias else None

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if getattr(self, "output_padding", (0, 0)) != (0, 0):
            text += f", output_padding={self.output_padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.groups != 1:
            text += f", groups={self.groups}"
        if self.bias is None:
            text += ", bias=False"
        return text


class Conv2d(_ConvNd):
    """2-D convolution layer; see the module docstring for shapes and initialisation."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 dilation=1, groups: int = 1, bias: bool = True, seed=None, dtype=None):  # fmt: skip
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, seed, dtype)  # fmt: skip

    def _weight_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    def _fan_in(self) -> float:
        """C/groups * kh * kw."""
        return self.in_channels // self.groups * self.kernel_size[0] * self.kernel_size[1]

    def forward(self, x):
        return F.conv2d(
            x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )


class ConvTranspose2d(_ConvNd):
    """2-D transposed convolution layer (FCN's upsampling, DeconvNet's fc6-deconv).

    ``forward(x, output_size=None)``: ``output_size`` ((H, W) or (N, C, H, W)) picks, among the
    sizes that convolve back to x's, the one wanted (PyTorch's rule); it overrides
    ``output_padding`` for that call.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 output_padding=0, groups: int = 1, bias: bool = True, dilation=1, seed=None,
                 dtype=None):  # fmt: skip
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, seed, dtype)  # fmt: skip
        self.output_padding = pair("ConvTranspose2d", "output_padding", output_padding)
        for i in (0, 1):
            if not 0 <= self.output_padding[i] < max(self.stride[i], self.dilation[i]):
                raise ValueError(
                    "ConvTranspose2d: output_padding must satisfy 0 <= output_padding < "
                    f"max(stride, dilation), got output_padding={self.output_padding}, "
                    f"stride={self.stride}, dilation={self.dilation}"
                )

    def _weight_shape(self) -> tuple[int, ...]:
        return (self.in_channels, self.out_channels // self.groups, *self.kernel_size)

    def _fan_in(self) -> float:
        """C/groups * kh * kw / (sh * sw): the taps each output receives per input channel."""
        kh, kw = self.kernel_size
        return self.in_channels // self.groups * kh * kw / (self.stride[0] * self.stride[1])

    def _output_padding(self, x, output_size):
        if output_size is None:
            return self.output_padding
        size = tuple(int(s) for s in output_size)
        if len(size) == 4:
            size = size[2:]
        if len(size) != 2:
            raise ValueError(
                f"ConvTranspose2d: output_size must be (H, W) or (N, C, H, W), got {output_size!r}"
            )
        result = []
        for i in (0, 1):
            smallest = (
                (x.shape[2 + i] - 1) * self.stride[i] - 2 * self.padding[i]
                + self.dilation[i] * (self.kernel_size[i] - 1) + 1
            )  # fmt: skip
            largest = smallest + max(self.stride[i], self.dilation[i]) - 1
            if not smallest <= size[i] <= largest:
                raise ValueError(
                    f"ConvTranspose2d: output_size {size} is not reachable from input size "
                    f"{tuple(x.shape[2:])}: along axis {i} it must lie in [{smallest}, {largest}]"
                )
            result.append(size[i] - smallest)
        return tuple(result)

    def forward(self, x, output_size=None):
        return F.conv_transpose2d(
            x, self.weight, self.bias, self.stride, self.padding,
            self._output_padding(x, output_size), self.groups, self.dilation,
        )  # fmt: skip

"""Weight initialisers, named like ``torch.nn.init``; each fills a tensor in place and returns it.

    init.kaiming_normal_(conv.weight, nonlinearity="relu", seed=0)
    init.zeros_(conv.bias)
    init.bilinear_(upscore.weight)           # FCN's fixed (or starting) upsampling kernel

Randomness: every random initialiser takes ``seed`` (an int, a ``numpy.random.Generator``, or
None for fresh entropy), so a model built with seeds is reproducible bit for bit. Pass one
Generator to several calls to draw consecutive, different values from one stream.

Fans follow PyTorch: for a weight of shape (d0, d1, k...) the receptive field r is prod(k...),
fan_in = d1 * r and fan_out = d0 * r, read off the shape alone. (For a transposed convolution,
whose weight is (in, out/groups, kh, kw), that "fan_in" is out/groups * kh * kw, which is not
the number of inputs of an output value; ``nn.ConvTranspose2d`` therefore computes its own
fan-in for its default initialisation, see ``nn/conv.py``. These functions keep PyTorch's
rule, so a call written for PyTorch gives the same statistics here.)

He / Kaiming normal (He et al., 2015): w ~ N(0, std^2), std = gain / sqrt(fan), gain = sqrt(2)
for ReLU, so the variance of the activations stays about constant from layer to layer.

Bilinear (FCN, Long et al. 2015; shelhamer/fcn.berkeleyvision.org surgery.upsample_filt):

    factor = (k + 1) // 2
    center = factor - 1          if k is odd
             factor - 0.5        if k is even
    w[i, j] = (1 - |i - center| / factor) * (1 - |j - center| / factor)

written only on the diagonal W[c, c] of a (C, C, k, k) transposed-convolution weight, so every
class map is upsampled on its own (filling every slice would mix the classes). With kernel 2f,
stride f and padding f // 2 (f even; (f - 1) // 2 and kernel 2f - 1 for f odd) the transposed
convolution is bilinear interpolation by f (align_corners=False) away from the borders.
"""

from __future__ import annotations

import math
import threading
from contextlib import contextmanager

import numpy as np

from minisegnet.tensor import Tensor

__all__ = [
    "skip_random_init",
    "calculate_gain",
    "kaiming_normal_",
    "normal_",
    "zeros_",
    "constant_",
    "bilinear_kernel",
    "bilinear_",
]


_skip = threading.local()


@contextmanager
def skip_random_init():
    """Inside the block (in this thread), the random initialisers leave tensors unwritten.

    Layers allocate their weights with ``np.empty`` and then fill them with
    :func:`kaiming_normal_` or :func:`normal_`; inside this block those calls return the tensor
    as it is, so the arrays stay unwritten (the operating system does not even back them with
    memory until written) and their values are *undefined*. For counting the parameters of a
    full-size network, inspecting shapes, or building a model whose weights are loaded right
    after. Deterministic initialisers (zeros, constants, the bilinear kernel) still run.
    """
    _skip.depth = getattr(_skip, "depth", 0) + 1
    try:
        yield
    finally:
        _skip.depth -= 1


def _skipping() -> bool:
    return getattr(_skip, "depth", 0) > 0


def _check_tensor(name: str, tensor) -> Tensor:
    if not isinstance(tensor, Tensor):
        raise TypeError(
            f"{name}: expected a minisegnet Tensor or Parameter, got {type(tensor).__name__}"
        )
    if tensor.dtype.kind != "f":
        raise TypeError(f"{name}: the tensor must be floating point, got dtype {tensor.dtype}")
    return tensor


def _fill(tensor: Tensor, values) -> Tensor:
    """Write host values into the tensor's array in place (same dtype, same device)."""
    tensor.data[...] = tensor.xp.asarray(values, dtype=tensor.dtype)
    return tensor


def calculate_gain(nonlinearity: str, param=None) -> float:
    """The gain PyTorch recommends for a nonlinearity (std multiplier of the initialisation)."""
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid")  # fmt: skip
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        if isinstance(slope, bool) or not isinstance(slope, (int, float)):
            raise ValueError(f"calculate_gain: negative_slope must be a number, got {slope!r}")
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(
        f"calculate_gain: unknown nonlinearity {nonlinearity!r}; expected one of "
        f"{list(linear) + ['tanh', 'relu', 'leaky_relu', 'selu']}"
    )


def fans(shape) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight shape, PyTorch's convention (see the module docstring)."""
    if len(shape) < 2:
        raise ValueError(
            f"fan in and fan out need a tensor with at least 2 dimensions, got shape {tuple(shape)}"
        )
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return int(shape[1]) * receptive, int(shape[0]) * receptive


def kaiming_normal_(tensor, a=0, mode: str = "fan_in", nonlinearity: str = "relu", seed=None):
    """Fill with N(0, std^2), std = gain / sqrt(fan); ``mode`` "fan_in" (default, preserves the
    forward variance) or "fan_out" (the backward's). ``a`` is the leaky-ReLU slope.

    The default is "relu" (gain sqrt 2); PyTorch's default, "leaky_relu" with a=0, is the same.
    """
    _check_tensor("kaiming_normal_", tensor)
    if _skipping():
        return tensor
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming_normal_: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = fans(tensor.shape)
    fan = fan_in if mode == "fan_in" else fan_out
    if fan == 0:
        raise ValueError(
            f"kaiming_normal_: cannot initialise an empty tensor of shape {tensor.shape}"
        )
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    rng = np.random.default_rng(seed)
    return _fill(tensor, rng.normal(0.0, std, size=tensor.shape))


def normal_(tensor, mean: float = 0.0, std: float = 1.0, seed=None):
    """Fill with N(mean, std^2)."""
    _check_tensor("normal_", tensor)
    if _skipping():
        return tensor
    if std < 0:
        raise ValueError(f"normal_: std must be >= 0, got {std}")
    rng = np.random.default_rng(seed)
    return _fill(tensor, rng.normal(mean, std, size=tensor.shape))


def zeros_(tensor):
    """Fill with 0 (FCN's newly added score layers start here)."""
    _check_tensor("zeros_", tensor)
    return _fill(tensor, 0.0)


def constant_(tensor, value: float):
    """Fill with ``value``."""
    _check_tensor("constant_", tensor)
    return _fill(tensor, float(value))


def _bilinear_1d(k: int) -> np.ndarray:
    factor = (k + 1) // 2
    center = factor - 1 if k % 2 == 1 else factor - 0.5
    return 1 - np.abs(np.arange(k) - center) / factor


def bilinear_kernel(k) -> np.ndarray:
    """The 2-D bilinear upsampling kernel of size k (or (kh, kw)), float64.

    bilinear_kernel(4) = outer([0.25, 0.75, 0.75, 0.25], same);
    bilinear_kernel(3) = outer([0.5, 1, 0.5], same).
    """
    if isinstance(k, (tuple, list)):
        if len(k) != 2:
            raise ValueError(f"bilinear_kernel: k must be an int or (kh, kw), got {k!r}")
        kh, kw = k
    else:
        kh = kw = k
    for v in (kh, kw):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"bilinear_kernel: kernel sizes must be ints >= 1, got {k!r}")
    return np.outer(_bilinear_1d(int(kh)), _bilinear_1d(int(kw)))


def bilinear_(weight):
    """Fill a transposed-convolution weight with the bilinear kernel, class by class.

    weight (C, C, kh, kw): W[c, c] = bilinear_kernel, every W[c, d] with c != d is 0.
    weight (C, 1, kh, kw) (groups=C, one channel per group): every W[c, 0] is the kernel.
    """
    _check_tensor("bilinear_", weight)
    shape = weight.shape
    if len(shape) != 4 or (shape[0] != shape[1] and shape[1] != 1):
        raise ValueError(
            "bilinear_: weight must be (C, C, kh, kw) (or (C, 1, kh, kw) for groups=C), "
            f"got shape {shape}"
        )
    values = np.zeros(shape)
    kernel = bilinear_kernel(shape[2:])
    if shape[1] == 1:
        values[:, 0] = kernel
    else:
        channels = np.arange(shape[0])
        values[channels, channels] = kernel
    return _fill(weight, values)

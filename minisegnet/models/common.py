"""Small pieces every network file uses: the width multiplier, layer chains, shape checks.

Design choices made here, once for all models:

* **Width multiplier.** Every channel count of a paper network is written as the paper's number
  times ``width`` (``scaled(64, 0.125) == 8``). ``width=1`` is the paper network; ``width=0.125``
  keeps the architecture (same layers, kernels, strides, paddings, crops, switches) with 1/64 of
  the multiply-adds of the convolutions, which is what lets a network train on two CPU cores. The
  class count is never scaled.
* **Flat, paper-named layers.** Layers are attributes with the names of the reference prototxt /
  code (``conv1_1``, ``bn1_1``, ``relu1_1``, ``pool1``, ``score_pool4``, ``conv5_3_D``), so the
  state-dict keys (``encoder.conv1_1.weight``) can be read against the papers' layer tables, and
  the lessons can capture any of them by name. A forward pass walks a list of those names
  (:func:`run_chain`) instead of hiding them in anonymous ``Sequential`` indices.
* **One random stream per model.** Every model takes ``seed`` (an int, a NumPy Generator, or None
  for fresh entropy) and hands one Generator to all its layers in construction order, so
  ``build(name, k, seed=0)`` gives the same weights (and dropout seeds) every time.
* **Building without initialising** (:func:`uninitialised`, ``build(..., materialize=False)``): a
  full DeconvNet has 252M weights, and drawing 252M normal numbers (and writing 1 GB) takes tens of
  seconds here, although counting parameters or loading a checkpoint needs none of them.
* **One ReLU module per use.** ReLU has no parameters, so one instance could be reused; separate
  instances give every activation its own name for :func:`minisegnet.models.capture` and its own
  row in :func:`minisegnet.models.summary`.
"""

from __future__ import annotations

import numpy as np

from minisegnet import nn
from minisegnet.tensor import Tensor


def scaled(channels: int, width: float) -> int:
    """``channels * width`` rounded, at least 1: the channel count of a width-scaled network."""
    if not isinstance(width, (int, float, np.integer, np.floating)) or isinstance(width, bool):
        raise TypeError(f"width must be a positive number, got {width!r}")
    if not width > 0:
        raise ValueError(f"width must be a positive number, got {width!r}")
    return max(1, int(round(channels * width)))


def run_chain(module, names, x):
    """Call ``module.<name>`` for each name in order, feeding each the previous output."""
    for name in names:
        x = getattr(module, name)(x)
    return x


def check_input(model_name: str, x, in_channels: int, min_size: int = 1) -> tuple[int, int]:
    """Raise a clear error unless ``x`` is a Tensor (N, in_channels, H, W) at least ``min_size``
    high and wide (the network's own minimum, so a too-small image is reported in the network's
    words rather than by the first pooling layer that cannot fit a window); return (H, W)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{model_name}: input must be a minisegnet Tensor, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(
            f"{model_name}: input must have shape (N, {in_channels}, H, W), got {x.shape}"
        )
    H, W = x.shape[2], x.shape[3]
    if H < min_size or W < min_size:
        raise ValueError(
            f"{model_name}: input height and width must be at least {min_size} pixels for this "
            f"configuration (every pooling stage needs a full window), got {H}x{W}"
        )
    return H, W


def pooled_size(size: int, times: int, ceil_mode: bool) -> int:
    """Size after ``times`` 2x2 stride-2 max pools (floor or Caffe's ceil rounding); 0 when a
    pool gets fewer than 2 rows (no window fits it, in ceil mode too: PyTorch's rule)."""
    for _ in range(times):
        if size < 2:
            return 0
        size = (size + 1) // 2 if ceil_mode else size // 2
    return size


def min_pooled_input(times: int, ceil_mode: bool, need: int = 1, grow: int = 0) -> int:
    """Smallest input size that is still at least ``need`` after ``times`` 2x2 stride-2 pools,
    when the layers before the first pool add ``grow`` rows (a padded first convolution)."""
    size = 1
    while pooled_size(size + grow, times, ceil_mode) < need:
        size += 1
    return size


def spatial_size(x) -> tuple[int, int]:
    """(H, W) of an (N, C, H, W) tensor."""
    return int(x.shape[2]), int(x.shape[3])


def make_rng(seed) -> np.random.Generator:
    """A Generator from an int, a Generator (returned as is) or None (fresh entropy)."""
    return np.random.default_rng(seed)


def dropout_seed(rng: np.random.Generator) -> int:
    """An integer seed for a dropout layer, drawn from the model's stream."""
    return int(rng.integers(0, 2**63 - 1))


def uninitialised():
    """Build layers without their random initialisation (values undefined), inside a ``with``.

    This is :func:`minisegnet.nn.init.skip_random_init`: the random initialisers leave the
    freshly allocated weights unwritten, so a full-size network builds in milliseconds. For
    counting parameters, inspecting shapes, or loading weights right after (``io.load_model``).
    """
    from minisegnet.nn import init

    return init.skip_random_init()


class Layers:
    """The layer constructors that the builders shared by several networks call, all drawing
    their initial weights from one random stream ``rng``, in call order.

    :func:`minisegnet.models.vgg.add_vgg16_layers` and :func:`add_unpooling_decoder` take one
    of these instead of naming layer classes, so ``benchmarks/torch_models.py`` builds the
    PyTorch twins with the very same code and tables by handing them PyTorch's constructors:
    same names, same order, same shapes, and no copy of the architecture that could drift.
    """

    def __init__(self, rng):
        self.rng = rng

    def conv(self, c_in: int, c_out: int, kernel: int, padding: int = 0):
        return nn.Conv2d(c_in, c_out, kernel, padding=padding, seed=self.rng)

    def conv_transpose(self, c_in: int, c_out: int, kernel: int, padding: int = 0):
        return nn.ConvTranspose2d(c_in, c_out, kernel, padding=padding, seed=self.rng)

    def batch_norm(self, channels: int):
        return nn.BatchNorm2d(channels)

    def relu(self):
        return nn.ReLU()

    def max_pool(self, ceil_mode: bool, return_indices: bool):
        """2x2, stride 2."""
        return nn.MaxPool2d(2, stride=2, ceil_mode=ceil_mode, return_indices=return_indices)

    def max_unpool(self):
        """2x2, stride 2."""
        return nn.MaxUnpool2d(2, stride=2)

    def dropout(self, p: float):
        return nn.Dropout(p, seed=dropout_seed(self.rng))


def add_unpooling_decoder(module, layers, stages, channels: int, transposed: bool, prefix: str):
    """Add the mirrored decoder of SegNet and DeconvNet to ``module``; returns (output channels,
    ``decoder_names``), the latter ``[(stage, [layer names in order]), ...]`` for
    :func:`unpooling_decode`.

    ``stages``: deepest first, ``(stage, ((conv name, bn name, relu name, channels out), ...))``.
    Each stage gets an unpooling ``<prefix><stage>`` (2x2, stride 2: the encoder's switches)
    and, per entry, a 3x3 convolution with padding 1 (transposed for DeconvNet) from
    ``channels``, a batch norm and a ReLU under the given names. ``layers``: a :class:`Layers`.
    """
    conv = layers.conv_transpose if transposed else layers.conv
    decoder_names = []
    for stage, entries in stages:
        setattr(module, f"{prefix}{stage}", layers.max_unpool())
        names = []
        for conv_name, bn_name, relu_name, c_out in entries:
            setattr(module, conv_name, conv(channels, c_out, 3, padding=1))
            setattr(module, bn_name, layers.batch_norm(c_out))
            setattr(module, relu_name, layers.relu())
            names += [conv_name, bn_name, relu_name]
            channels = c_out
        decoder_names.append((stage, names))
    return channels, decoder_names


def unpooling_decode(module, y, features, prefix: str):
    """The decoder of :func:`add_unpooling_decoder` on ``y``: each stage (deepest first) unpools
    to the size that entered the encoder's matching pool, putting every value back at its
    switch (sparse), then runs its convolutions. ``features``: the encoder's ``switches`` and
    ``sizes`` (:class:`~minisegnet.models.vgg.VGGFeatures`)."""
    for stage, names in module.decoder_names:
        unpool = getattr(module, f"{prefix}{stage}")
        y = unpool(y, features.switches[stage - 1], output_size=features.sizes[stage - 1])
        y = run_chain(module, names, y)  # (N, C, H_stage, W_stage)
    return y

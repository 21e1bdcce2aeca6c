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

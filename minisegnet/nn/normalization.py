"""Normalisation layers: batch norm (with running statistics) and local response norm.

BatchNorm2d(C): x (N, C, H, W) -> y (N, C, H, W); BatchNorm1d(C): x (N, C) or (N, C, L).
Parameters weight (C,) = 1 and bias (C,) = 0 when ``affine``; buffers running_mean (C,) = 0,
running_var (C,) = 1 and num_batches_tracked () = 0 when ``track_running_stats``.

    training:   normalise with the batch's statistics over (N, H, W); update the running ones:
                running = (1 - momentum) * running + momentum * batch   (unbiased batch var);
                momentum=None means a cumulative average, momentum = 1 / num_batches_tracked
    evaluation: normalise with running_mean and running_var (if tracked, else the batch's)

LocalResponseNorm(size, alpha, beta, k): x (N, C, *) -> same shape; see ``ops/lrn.py``.
The math and the kernels are in ``minisegnet/ops/batch_norm.py`` and ``ops/lrn.py``.
"""

from __future__ import annotations

import numpy as np

from minisegnet import functional as F
from minisegnet.nn.module import Module
from minisegnet.nn.parameter import Parameter


class _BatchNorm(Module):
    _ranks: tuple[int, ...] = (4,)
    _layout = "(N, C, H, W)"

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype=np.float32,
    ):
        super().__init__()
        name = type(self).__name__
        if isinstance(num_features, bool) or not isinstance(num_features, (int, np.integer)):
            raise TypeError(f"{name}: num_features must be an integer, got {num_features!r}")
        if num_features < 1:
            raise ValueError(f"{name}: num_features must be >= 1, got {num_features}")
        if momentum is not None and not 0.0 <= float(momentum) <= 1.0:
            raise ValueError(f"{name}: momentum must be in [0, 1] or None, got {momentum}")
        if not float(eps) > 0:
            raise ValueError(f"{name}: eps must be > 0, got {eps}")
        self.num_features = int(num_features)
        self.eps, self.momentum = float(eps), momentum
        self.affine, self.track_running_stats = bool(affine), bool(track_running_stats)
        c = self.num_features
        if self.affine:
            self.weight = Parameter(np.ones(c, dtype))
            self.bias = Parameter(np.zeros(c, dtype))
        else:
            self.weight = None
            self.bias = None
        if self.track_running_stats:
            self.register_buffer("running_mean", np.zeros(c, dtype))
            self.register_buffer("running_var", np.ones(c, dtype))
            self.register_buffer("num_batches_tracked", np.array(0, np.int64))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def forward(self, x):
        name = type(self).__name__
        if x.ndim not in self._ranks:
            raise ValueError(f"{name}: expected a {self._layout} input, got shape {x.shape}")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{name}: expected {self.num_features} channels (num_features) in axis 1, "
                f"got input of shape {x.shape}"
            )
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked[...] += 1  # in place: the buffer stays registered
            if self.momentum is None:  # cumulative moving average
                momentum = 1.0 / int(self.num_batches_tracked)
        use_batch_stats = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return F.batch_norm(
            x,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            training=use_batch_stats,
            momentum=momentum,
            eps=self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}"
        )


class BatchNorm2d(_BatchNorm):
    """Batch norm over (N, H, W) for each channel of an (N, C, H, W) input."""

    _ranks = (4,)
    _layout = "4-d (N, C, H, W)"


class BatchNorm1d(_BatchNorm):
    """Batch norm over N (and L) for each feature of an (N, C) or (N, C, L) input."""

    _ranks = (2, 3)
    _layout = "2-d (N, C) or 3-d (N, C, L)"


class LocalResponseNorm(Module):
    """Normalise each value by the energy of its neighbours across channels (SegNet-Basic's
    input layer: size 5, alpha 1e-4, beta 0.75, k 1)."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0):
        super().__init__()
        self.size = F.check_lrn_size("LocalResponseNorm", size)
        self.alpha, self.beta, self.k = float(alpha), float(beta), float(k)

    def forward(self, x):
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def extra_repr(self) -> str:
        return f"{self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}"

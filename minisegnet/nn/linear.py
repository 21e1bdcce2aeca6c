"""``Linear``: y = x @ W^T + b, for the toy examples and lessons (the networks use 1x1 convs).

Shapes: x (N, in_features) -> y (N, out_features); W (out_features, in_features); b (out_features,)
Initialisation: He/Kaiming uniform-free version: W ~ N(0, 2 / in_features), b = 0.
"""

from __future__ import annotations

import numpy as np

from minisegnet.nn.module import Module
from minisegnet.nn.parameter import Parameter


class Linear(Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True, seed=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        rng = np.random.default_rng(seed)
        std = np.sqrt(2.0 / in_features)
        self.weight = Parameter(rng.normal(0, std, (out_features, in_features)).astype(np.float32))
        self.bias = Parameter(np.zeros(out_features, np.float32)) if bias else None

    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(
                f"Linear: input must have {self.in_features} features in its last axis, "
                f"got shape {x.shape}"
            )
        y = x @ self.weight.T
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        has_bias = self.bias is not None
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={has_bias}"

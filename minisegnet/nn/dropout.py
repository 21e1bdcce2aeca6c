"""Dropout layers with reproducible masks.

Dropout(p):    zero each element with probability p while training, scale the rest by 1/(1-p)
Dropout2d(p):  zero whole channel planes (n, c) of an (N, C, H, W) input instead
Evaluation (``model.eval()``): the identity.

Reproducibility. Each layer holds two buffers: ``seed`` (its base seed, uint64) and ``step``
(how many masks it has drawn, int64). Call number ``step`` uses the seed
``derive_seed(seed, step)`` (see ``minisegnet/ops/dropout.py``), and the mask is a hash of that
seed and the element index, the same on every backend. So two models built with the same seeds
draw the same masks, and since both buffers are in ``state_dict()``, a run resumed from a
checkpoint continues with the masks it would have drawn. ``seed=None`` takes a base seed from
NumPy's global generator (``np.random.seed`` before building the model makes it repeatable).
"""

from __future__ import annotations

import numpy as np

from minisegnet import functional as F
from minisegnet.nn.module import Module
from minisegnet.ops.dropout import derive_seed, random_seed


class _DropoutNd(Module):
    def __init__(self, p: float = 0.5, inplace: bool = False, seed: int | None = None):
        super().__init__()
        try:
            self.p = F.check_dropout_p(p)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{type(self).__name__}: {error}") from None
        self.inplace = inplace  # accepted for PyTorch compatibility; ops never write in place
        base = random_seed() if seed is None else F.check_dropout_seed(seed)
        self.register_buffer("seed", np.array(base, np.uint64))
        self.register_buffer("step", np.array(0, np.int64))

    def next_seed(self) -> int:
        """The seed of this call's mask; advances the counter."""
        seed = derive_seed(int(self.seed), int(self.step))
        self.step[...] += 1  # in place: the buffer stays registered
        return seed

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Dropout(_DropoutNd):
    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        return F.dropout(x, self.p, training=True, seed=self.next_seed())


class Dropout2d(_DropoutNd):
    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        return F.dropout2d(x, self.p, training=True, seed=self.next_seed())

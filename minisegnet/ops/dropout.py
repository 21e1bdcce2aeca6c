"""Dropout: zero random elements (or whole channels) while training, rescale the rest.

    y = x * mask,     mask = keep / (1 - p),     keep ~ Bernoulli(1 - p)

so that E[y] = x and evaluation (no dropout) needs no rescaling. ``dropout2d`` draws one ``keep``
per channel plane (n, c) and applies it to every pixel of the plane (Tompson et al. 2015), which
is what works for convolutional features whose neighbouring pixels are strongly correlated.

Shapes:  dropout    x (N, ...)        -> y same shape,  mask same shape as x
         dropout2d  x (N, C, H, W)    -> y same shape,  mask (N, C, 1, 1), broadcast over H, W
Backward: dx = dy * mask (the same mask; it is saved by forward).

Random numbers: a counter-based hash, not a stateful generator
--------------------------------------------------------------
Element i (its linear index in row-major order; with ``per_channel`` the plane index n*C + c)
is kept when a hash of (seed, i) lands above p. The hash is SplitMix64's output function, on
unsigned 64-bit integers with wrap-around arithmetic:

    z = seed + (i + 1) * 0x9E3779B97F4A7C15
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
    z = (z ^ (z >> 27)) * 0x94D049BB133111EB
    z = z ^ (z >> 31)
    u = (z >> 40) * 2**-24          # 24 random bits as a float64 in [0, 1)
    keep = u >= p                   # compared in float64 on every backend

Because each element's bit depends only on (seed, i), every backend (NumPy, Numba, CUDA) computes
the identical mask in parallel without sharing a generator state, and a mask can always be
rebuilt from its seed. ``p = 1`` drops everything (mask 0, not 0/0).

Seeds: ``F.dropout(x, p, seed=s)`` is reproducible; ``seed=None`` draws a seed from NumPy's global
generator (so ``np.random.seed`` makes a script repeatable). The ``nn.Dropout`` layers keep a base
seed and a call counter as buffers and use ``derive_seed(seed, step)`` for call number ``step``,
so a resumed training run continues with exactly the masks it would have drawn.

Worked example (seed 0, p = 0.5, four elements): u = [0.8833, 0.4315, 0.0264, 0.9709], hence
keep = [1, 0, 0, 1] and mask = [2, 0, 0, 2].
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from minisegnet import backend
from minisegnet.autograd import Function

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_MASK64 = (1 << 64) - 1


# --------------------------------------------------------------------------- seeds
def hash64(seed: int, i: int) -> int:
    """The contract's hash of counter ``i`` under ``seed``, in plain Python integers (the
    definition the array versions are tested against)."""
    z = (seed + (i + 1) * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def derive_seed(seed: int, step: int) -> int:
    """The seed of call number ``step`` of a layer whose base seed is ``seed``: one more hash, so
    successive calls draw unrelated masks."""
    return hash64(seed64(seed), int(step))


def random_seed() -> int:
    """A fresh seed from NumPy's global generator (``np.random.seed`` makes it repeatable)."""
    return int(np.random.randint(0, 2**63 - 1, dtype=np.int64))


def seed64(seed: int) -> int:
    """Seeds are integers, taken modulo 2**64 (``functional`` checks that they are integers)."""
    return int(seed) & _MASK64


def mask_shape(shape, per_channel: bool) -> tuple[int, ...]:
    """Shape of the mask: ``shape`` itself, or (N, C, 1, ..., 1) with ``per_channel``."""
    shape = tuple(int(s) for s in shape)
    if per_channel:
        return shape[:2] + (1,) * (len(shape) - 2)
    return shape


def _scale(p: float) -> float:
    return 0.0 if p >= 1.0 else 1.0 / (1.0 - p)


# --------------------------------------------------------------------------- reference
def dropout_mask_ref(shape, p, seed, per_channel):
    """The mask, float32, of shape ``mask_shape(shape, per_channel)``: 0 or 1/(1-p).

    Vectorised NumPy: the whole counter range at once (uint64 arrays wrap on overflow)."""
    out_shape = mask_shape(shape, per_channel)
    count = int(np.prod(out_shape))
    i = np.arange(count, dtype=np.uint64)
    z = np.uint64(seed64(seed)) + (i + np.uint64(1)) * _GOLDEN
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(40)).astype(np.float64) * 2.0**-24  # in [0, 1)
    keep = u >= p
    return (keep * _scale(p)).astype(np.float32).reshape(out_shape)


# --------------------------------------------------------------------------- Numba
@njit(parallel=True, cache=True)
def _dropout_mask_kernel(seed, p, scale, mask):
    """mask (count,) float32; one independent element per counter i."""
    for i in prange(mask.size):
        z = seed + np.uint64(i + 1) * _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _MIX1
        z = (z ^ (z >> np.uint64(27))) * _MIX2
        z = z ^ (z >> np.uint64(31))
        u = np.float64(z >> np.uint64(40)) * 5.9604644775390625e-08  # 2**-24
        mask[i] = np.float32(scale) if u >= p else np.float32(0.0)


def dropout_mask_numba(shape, p, seed, per_channel):
    out_shape = mask_shape(shape, per_channel)
    mask = np.empty(int(np.prod(out_shape)), np.float32)
    _dropout_mask_kernel(np.uint64(seed64(seed)), float(p), _scale(p), mask)
    return mask.reshape(out_shape)


# --------------------------------------------------------------------------- Function
def dropout_mask(shape, p, seed, per_channel=False):
    """The mask the current backend draws (also for lessons and tests); see
    ``dropout_mask_ref``."""
    make_mask = backend.pick(
        "dropout",
        numpy=dropout_mask_ref,
        numba=dropout_mask_numba,
        cuda=backend.lazy("minisegnet.cuda.normalization", "dropout_mask"),
    )
    return make_mask(tuple(shape), float(p), seed64(seed), per_channel)


class Dropout(Function):
    """y = x * mask; dx = dy * mask. ``seed`` fixes the mask (see the module docstring). The
    arguments are checked by ``minisegnet.functional.dropout`` and ``dropout2d``."""

    def forward(self, x, p, seed, per_channel=False):
        mask = dropout_mask(x.shape, p, seed, per_channel)  # float32 0 or 1/(1-p)
        if mask.dtype != x.dtype:  # float64 tensors: rebuild the scale exactly in float64
            mask = (mask != 0).astype(x.dtype) * x.dtype.type(_scale(p))
        self.save(mask=mask)
        return x * mask

    def backward(self, dy):
        return dy * self.saved.mask


__all__ = [
    "hash64",
    "derive_seed",
    "random_seed",
    "seed64",
    "mask_shape",
    "dropout_mask_ref",
    "dropout_mask_numba",
    "dropout_mask",
    "Dropout",
]

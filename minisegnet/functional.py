"""The public op namespace, named and shaped like ``torch.nn.functional``.

    import minisegnet.functional as F
    loss = F.cross_entropy(F.relu(x @ w), target)

Each function here checks its arguments, then calls one ``Function`` from ``minisegnet/ops/``
(where the math, the reference code and the kernels live). Layer ops (convolution, pooling,
interpolation, normalisation) are added here as their op files land.
"""

from __future__ import annotations

import numpy as np

from minisegnet.ops import elementwise, loss, shape
from minisegnet.tensor import Tensor, cat

__all__ = [
    "relu", "sigmoid", "tanh", "exp", "log", "sqrt", "pad", "cat", "cross_entropy",
]


def _require_tensor(name: str, value) -> Tensor:
    if not isinstance(value, Tensor):
        raise TypeError(f"{name} must be a minisegnet Tensor, got {type(value).__name__}")
    return value


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    """max(input, 0), elementwise. ``inplace`` is accepted for PyTorch compatibility and ignored
    (every op here returns a new array)."""
    return elementwise.ReLU.apply(_require_tensor("input", input))


def sigmoid(input: Tensor) -> Tensor:
    return elementwise.Sigmoid.apply(_require_tensor("input", input))


def tanh(input: Tensor) -> Tensor:
    return elementwise.Tanh.apply(_require_tensor("input", input))


def exp(input: Tensor) -> Tensor:
    return elementwise.Exp.apply(_require_tensor("input", input))


def log(input: Tensor) -> Tensor:
    return elementwise.Log.apply(_require_tensor("input", input))


def sqrt(input: Tensor) -> Tensor:
    return elementwise.Sqrt.apply(_require_tensor("input", input))


def pad(input: Tensor, pad, mode: str = "constant", value: float = 0.0) -> Tensor:
    """Pad with a constant; ``pad`` lists (before, after) pairs starting from the last axis."""
    if mode != "constant":
        raise ValueError(f"pad: only mode='constant' is implemented, got mode={mode!r}")
    return shape.Pad.apply(_require_tensor("input", input), pad=tuple(int(p) for p in pad), value=value)


def _raw(name: str, value, integer: bool = False):
    """The array behind a tensor or array-like argument that carries no gradient."""
    if isinstance(value, Tensor):
        return value.data
    array = np.asarray(value)
    if integer and array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    return array


def cross_entropy(
    input: Tensor, target, weight=None, ignore_index: int = 255, reduction: str = "mean"
) -> Tensor:
    """Softmax cross-entropy of logits ``input`` (N, C[, H, W]) against labels ``target``
    (N[, H, W]); see ``minisegnet/ops/loss.py`` for the formula and the weighted mean."""
    _require_tensor("input", input)
    target = _raw("target", target)
    xp = input.xp
    target = xp.asarray(target)
    if weight is not None:
        weight = xp.asarray(_raw("weight", weight), dtype=input.dtype)
    return loss.CrossEntropy.apply(
        input, target, weight=weight, ignore_index=ignore_index, reduction=reduction
    )


cat = cat

"""CRF as RNN (Zheng et al. 2015): the dense CRF's mean-field iterations as differentiable
layers, so the CRF's weights can be trained end to end with the network below it.

One iteration, for the pixels' energies E (N, L) (N = H*W pixels, L classes), starting from
E_0 = -logits (the network's unary, ``minisegnet/ops/crf.py``):

    Q   = softmax(-E)                                  (N, L)
    M_m = Filter_m(Q)                                  a Gaussian filter per kernel (appearance,
                                                       smoothness), normalised: a fixed matrix
                                                       K_m given the image
    E   = U + (w1 M_1 + w2 M_2) mu^T                   mu (L, L): label compatibility

The output is -E (N, C, H, W), logits for ``cross_entropy``. Trainable: w1, w2 (scalars) and
mu (initialised to Potts, 1 - I). The kernel widths theta are fixed: they define the lattice.

Backward of the filter: Filter is linear, v -> K v, so dv = K^T dM. K^T is the same filter
transposed: the exact Gaussian matrix (with its symmetric normalisation) is symmetric; the
lattice's S^T B_d..B_0 S transposes to S^T B_0..B_d S, the same blurs in reverse order
(``Lattice.filter(..., transpose=True)``). Everything else is softmax, matmul, add and multiply,
whose backwards exist already.

Shapes: logits (N, L, H, W) float32/float64 tensor; images (N, H, W, 3) uint8 or float array
(not differentiated). ``method``: "exact" (tiny images, gradient checks), "lattice".
"""

from __future__ import annotations

import numpy as np

from minisegnet import functional as F
from minisegnet.autograd import Function
from minisegnet.functional import cat
from minisegnet.nn.module import Module
from minisegnet.nn.parameter import Parameter
from minisegnet.ops import crf as crf_ops
from minisegnet.tensor import Tensor

__all__ = ["DenseCRF", "GaussianMessage"]


class GaussianMessage(Function):
    """v (N, C) -> message(v), a linear map given by ``message`` (``crf_ops.make_filter``);
    backward: message(dy, transpose=True)."""

    def forward(self, v, message):
        self.save(message=message)
        return message(v)

    def backward(self, dy):
        return self.saved.message(np.ascontiguousarray(dy), transpose=True)


class DenseCRF(Module):
    """The fully connected CRF as a layer: ``crf(logits, images) -> refined logits``.

    ``num_classes`` L; ``w1, theta_alpha, theta_beta`` the appearance kernel, ``w2,
    theta_gamma`` the smoothness kernel; ``iterations`` mean-field steps; ``normalization`` as
    in ``crf_ops`` ("symmetric" or "none"); ``method`` "lattice" or "exact"."""

    def __init__(
        self,
        num_classes: int,
        w1: float = 10.0,
        theta_alpha: float = 80.0,
        theta_beta: float = 13.0,
        w2: float = 3.0,
        theta_gamma: float = 3.0,
        iterations: int = 5,
        normalization: str = "symmetric",
        method: str = "lattice",
        dtype=np.float32,
    ):
        super().__init__()
        if not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
            raise ValueError(f"DenseCRF: num_classes must be an int >= 1, got {num_classes!r}")
        if method not in ("exact", "lattice"):
            raise ValueError(f"DenseCRF: method must be 'exact' or 'lattice', got {method!r}")
        self.params = crf_ops.CRFParams(
            w1, theta_alpha, theta_beta, w2, theta_gamma, iterations, normalization
        )
        self.num_classes = int(num_classes)
        self.method = method
        self.w1 = Parameter(np.array(w1, dtype), dtype=dtype)
        self.w2 = Parameter(np.array(w2, dtype), dtype=dtype)
        self.compatibility = Parameter((1.0 - np.eye(num_classes)).astype(dtype), dtype=dtype)

    def extra_repr(self) -> str:
        p = self.params
        return (
            f"{self.num_classes}, theta_alpha={p.theta_alpha}, theta_beta={p.theta_beta}, "
            f"theta_gamma={p.theta_gamma}, iterations={p.iterations}, method={self.method!r}"
        )

    def forward(self, logits: Tensor, images) -> Tensor:
        if not isinstance(logits, Tensor):
            raise TypeError(f"DenseCRF: logits must be a Tensor, got {type(logits).__name__}")
        if logits.ndim != 4 or logits.shape[1] != self.num_classes:
            raise ValueError(
                f"DenseCRF: logits must have shape (N, {self.num_classes}, H, W), got "
                f"{tuple(logits.shape)}"
            )
        images = np.asarray(images) if not isinstance(images, np.ndarray) else images
        if images.ndim != 4 or images.shape[0] != logits.shape[0]:
            raise ValueError(
                f"DenseCRF: images must have shape (N, H, W, 3) with N = {logits.shape[0]}, "
                f"got {images.shape}"
            )
        n, L, h, w = logits.shape
        outs = []
        for b in range(n):
            crf_ops.check_inputs(
                images[b], np.zeros((L, h, w), np.float32), f"DenseCRF: images[{b}]"
            )
            outs.append(self._one(logits[b : b + 1], images[b]))
        return outs[0] if n == 1 else cat(outs, dim=0)

    def _one(self, logits, image):
        """(1, L, H, W) logits of one image -> (1, L, H, W) refined logits."""
        _, L, h, w = logits.shape
        dtype = np.float64 if self.method == "exact" else np.float32
        messages = [
            crf_ops.make_filter(f, self.method, self.params.normalization)
            for f in crf_ops.crf_features(image, self.params, dtype)
        ]
        unary = logits.reshape(L, h * w).T  # -U: (N, L)
        energy = unary
        for _ in range(self.params.iterations):
            q = F.softmax(energy, dim=1)
            m = self.w1 * GaussianMessage.apply(q, messages[0]) + self.w2 * GaussianMessage.apply(
                q, messages[1]
            )
            energy = unary - m @ self.compatibility.T
        return energy.T.reshape(1, L, h, w)

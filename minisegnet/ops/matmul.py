"""Matrix product ``y = a @ b`` (batched, NumPy's broadcasting rules for the leading axes).

    da = dy @ b^T          db = a^T @ dy

with 1-D operands treated as NumPy does (a vector on the left is a row, on the right a column),
and the gradient summed back over broadcast batch axes.
"""

from __future__ import annotations

from minisegnet.autograd import Function
from minisegnet.ops.broadcast import unbroadcast


class MatMul(Function):
    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("matmul: both operands must have at least one axis (got a scalar)")
        k_a = a.shape[-1]
        k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
        if k_a != k_b:
            raise ValueError(
                f"matmul: the inner sizes differ: a has shape {a.shape}, b has shape {b.shape} "
                f"({k_a} != {k_b})"
            )
        self.save(a=a, b=b)
        return a @ b

    def backward(self, dy):
        a, b = self.saved.a, self.saved.b
        a2 = a[None, :] if a.ndim == 1 else a  # (.., M, K)
        b2 = b[:, None] if b.ndim == 1 else b  # (.., K, P)
        dy2 = dy
        if a.ndim == 1:
            dy2 = dy2[..., None, :]
        if b.ndim == 1:
            dy2 = dy2[..., None]
        da = dy2 @ b2.swapaxes(-1, -2)
        db = a2.swapaxes(-1, -2) @ dy2
        if a.ndim == 1:
            da = da[..., 0, :]
        if b.ndim == 1:
            db = db[..., 0]
        return unbroadcast(da, a.shape), unbroadcast(db, b.shape)

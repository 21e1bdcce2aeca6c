"""Softmax cross-entropy over the class axis, with class weights and an ignore label.

For logits z of shape (N, C) or (N, C, H, W) and integer targets t of shape (N,) or (N, H, W),
at every position p (a sample, or a pixel) whose target is not ``ignore_index``:

    log p[p, c] = z[p, c] - logsumexp_c' z[p, c']         (stable: subtract the max first)
    loss[p]     = -w[t_p] * log p[p, t_p]

    reduction="mean":  sum_p loss[p] / sum_p w[t_p]       (PyTorch's weighted mean)
    reduction="sum":   sum_p loss[p]
    reduction="none":  loss, shape of t, 0 at ignored positions

Ignored positions are left out of the sum *and* the normaliser. If every position is ignored,
the mean is 0/0; we return 0 with a zero gradient rather than NaN (PyTorch returns NaN), since a
fully-ignored crop is a normal event when training on random crops.

Backward (per position, before the reduction's scale):

    dz[p, c] = w[t_p] * (softmax(z)[p, c] - [c == t_p])
"""

from __future__ import annotations

from minisegnet.autograd import Function
from minisegnet.tensor import array_module


def check_cross_entropy_args(logits, target, weight, ignore_index, reduction):
    """Validate shapes, dtypes and label values; raise errors that name the argument."""
    if logits.ndim not in (2, 4):
        raise ValueError(
            f"cross_entropy: input must be (N, C) or (N, C, H, W) logits, got shape {logits.shape}"
        )
    expected = (logits.shape[0],) + logits.shape[2:]
    if target.shape != expected:
        raise ValueError(
            f"cross_entropy: target must have shape {expected} for input of shape "
            f"{logits.shape}, got {target.shape}"
        )
    if target.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: target must hold integer class labels, got dtype {target.dtype}")
    if reduction not in ("mean", "sum", "none"):
        raise ValueError(f"cross_entropy: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    num_classes = logits.shape[1]
    if weight is not None and weight.shape != (num_classes,):
        raise ValueError(
            f"cross_entropy: weight must have shape ({num_classes},) (one per class), got {weight.shape}"
        )
    xp = array_module(target)
    bad = (target != ignore_index) & ((target < 0) | (target >= num_classes))
    if bool(bad.any()):
        values = sorted(set(int(v) for v in xp.unique(target[bad])[:10].tolist()))
        raise ValueError(
            f"cross_entropy: target holds values {values} that are neither a class in "
            f"[0, {num_classes}) nor ignore_index={ignore_index}"
        )


def _to_rows(logits):
    """(N, C, H, W) -> (N*H*W, C) so every position is one row; (N, C) stays."""
    if logits.ndim == 2:
        return logits
    n, c, h, w = logits.shape
    return logits.transpose(0, 2, 3, 1).reshape(-1, c)


def _from_rows(rows, shape):
    if len(shape) == 2:
        return rows
    n, c, h, w = shape
    return rows.reshape(n, h, w, c).transpose(0, 3, 1, 2)


def cross_entropy_forward_ref(logits, target, weight, ignore_index):
    """Returns (per-position loss, per-position weight, softmax rows) for the reference."""
    xp = array_module(logits)
    z = _to_rows(logits)  # (P, C)
    t = target.reshape(-1)  # (P,)
    valid = t != ignore_index
    t_safe = xp.where(valid, t, 0)
    z_max = z.max(axis=1, keepdims=True)
    e = xp.exp(z - z_max)
    sum_e = e.sum(axis=1, keepdims=True)
    log_p = z - z_max - xp.log(sum_e)  # (P, C)
    w_pos = (weight[t_safe] if weight is not None else xp.ones_like(t_safe, dtype=z.dtype)) * valid
    loss = -w_pos * log_p[xp.arange(z.shape[0]), t_safe]
    return loss.astype(z.dtype), w_pos.astype(z.dtype), e / sum_e


class CrossEntropy(Function):
    def forward(self, logits, target, weight=None, ignore_index=255, reduction="mean"):
        check_cross_entropy_args(logits, target, weight, ignore_index, reduction)
        loss, w_pos, softmax = cross_entropy_forward_ref(logits, target, weight, ignore_index)
        total_weight = w_pos.sum()
        self.save(
            softmax=softmax, target=target, w_pos=w_pos, shape=logits.shape,
            ignore_index=ignore_index, reduction=reduction, total_weight=total_weight,
        )
        if reduction == "none":
            return loss.reshape(target.shape)
        total = loss.sum()
        if reduction == "sum":
            return total.astype(logits.dtype)
        return (total / total_weight if total_weight > 0 else total * 0).astype(logits.dtype)

    def backward(self, dy):
        s = self.saved
        xp = array_module(s.softmax)
        t = s.target.reshape(-1)
        valid = t != s.ignore_index
        dz = s.softmax.copy()
        rows = xp.arange(dz.shape[0])
        dz[rows, xp.where(valid, t, 0)] -= 1
        dz *= s.w_pos[:, None]  # w_pos is 0 at ignored positions
        if s.reduction == "none":
            dz *= dy.reshape(-1)[:, None]
        elif s.reduction == "sum":
            dz *= dy
        else:
            scale = dy / s.total_weight if s.total_weight > 0 else dy * 0
            dz *= scale
        return _from_rows(dz, s.shape).astype(s.softmax.dtype)

"""Adam (Kingma and Ba, 2015) with optional L2 weight decay folded into the gradient.

g = g + wd * p
m = b1 * m + (1 - b1) * g             first moment
v = b2 * v + (1 - b2) * g^2           second moment
m_hat = m / (1 - b1^t),  v_hat = v / (1 - b2^t)     bias correction, t = step count (from 1)
p = p - lr * m_hat / (sqrt(v_hat) + eps)
"""

from __future__ import annotations

from minisegnet.optim.optimizer import Optimizer


class Adam(Optimizer):
    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"betas must be in [0, 1), got {betas}")
        super().__init__(params, lr, betas=(b1, b2), eps=eps, weight_decay=weight_decay)

    def _update(self, p, grad, group, state):
        lr, (b1, b2), eps, wd = (
            self.group_lr(group),
            group["betas"],
            group["eps"],
            group["weight_decay"],
        )
        if wd:
            grad = grad + wd * p.data
        t = state.get("t", 0) + 1
        state["t"] = t
        m = state["m"] = b1 * state["m"] + (1 - b1) * grad if "m" in state else (1 - b1) * grad
        v = state["v"] = (
            b2 * state["v"] + (1 - b2) * grad * grad if "v" in state else (1 - b2) * grad * grad
        )
        m_hat = m / (1 - b1**t)
        v_hat = v / (1 - b2**t)
        p.data = (p.data - lr * m_hat / (p.xp.sqrt(v_hat) + eps)).astype(p.dtype, copy=False)

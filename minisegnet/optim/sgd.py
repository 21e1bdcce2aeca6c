"""Stochastic gradient descent with momentum, Nesterov momentum and weight decay.

For each parameter p with gradient g, learning rate lr, momentum mu and weight decay wd
(PyTorch's formulation, which the Caffe solvers match up to the scaling of v):

    g = g + wd * p                      (L2 weight decay folded into the gradient)
    v = mu * v + g                      (v starts at g on the first step)
    p = p - lr * v                      plain momentum
    p = p - lr * (g + mu * v)           Nesterov momentum
"""

from __future__ import annotations

from minisegnet.optim.optimizer import Optimizer


class SGD(Optimizer):
    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ):
        if momentum < 0:
            raise ValueError(f"momentum must be >= 0, got {momentum}")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov=True needs a momentum > 0")
        super().__init__(
            params, lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov
        )

    def _update(self, p, grad, group, state):
        lr, mu, wd = self.group_lr(group), group["momentum"], group["weight_decay"]
        if wd:
            grad = grad + wd * p.data
        if mu:
            if "velocity" not in state:
                state["velocity"] = grad.copy()
            else:
                state["velocity"] = mu * state["velocity"] + grad
            v = state["velocity"]
            step = grad + mu * v if group["nesterov"] else v
        else:
            step = grad
        p.data = (p.data - lr * step).astype(p.dtype, copy=False)

"""The optimiser base class: parameter groups, each with its own learning-rate multiplier.

    opt = SGD([
        {"params": weights, "lr_mult": 1, "weight_decay": 5e-4},
        {"params": biases, "lr_mult": 2, "weight_decay": 0},      # the papers' 2x bias lr
    ], lr=0.01, momentum=0.9)

A group's effective learning rate is ``lr * lr_mult * schedule factor``. The schedule (see
``schedule.py``) sets ``opt.lr`` each iteration; the groups' multipliers stay as they are, so
PSPNet's head at 10x keeps its ratio to the backbone throughout training.

Where the state lives: with its parameter. ``model.to("cuda")`` moves the parameters; the
optimiser's per-parameter state (momentum buffers) follows them at the next ``step()`` (or at
once with ``opt.to("cuda")``), and ``load_state_dict`` puts it where the parameters are, so a
checkpoint written on one device resumes on the other.
"""

from __future__ import annotations

import numpy as np

from minisegnet.arrays import device_of, to_device, to_host
from minisegnet.nn.parameter import Parameter


class Optimizer:
    defaults: dict = {}

    def __init__(self, params, lr: float, **defaults):
        if not lr >= 0:
            raise ValueError(f"lr must be a non-negative number, got {lr!r}")
        self.lr = float(lr)
        self.base_lr = float(lr)
        self.defaults = {"lr_mult": 1.0, **defaults}
        params = list(params)
        if not params:
            raise ValueError("params: the optimiser was given no parameters")
        if not isinstance(params[0], dict):
            params = [{"params": params}]
        self.param_groups = []
        seen = set()
        for k, group in enumerate(params):
            group = {**self.defaults, **group}
            group["params"] = list(group["params"])
            for p in group["params"]:
                if not isinstance(p, Parameter) and not getattr(p, "requires_grad", False):
                    raise TypeError(
                        f"params: group {k} holds a {type(p).__name__} that does not require grad"
                    )
                if id(p) in seen:
                    raise ValueError(
                        f"params: a parameter appears in more than one group (group {k})"
                    )
                seen.add(id(p))
            self.param_groups.append(group)
        self.state: dict[int, dict] = {}  # per parameter, keyed by its position (stable for saving)
        self.steps = 0

    def _indexed_params(self):
        i = 0
        for group in self.param_groups:
            for p in group["params"]:
                yield i, group, p
                i += 1

    def group_lr(self, group) -> float:
        return self.lr * group["lr_mult"]

    def zero_grad(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self) -> None:
        for i, group, p in self._indexed_params():
            if p.grad is None:
                continue
            if p.grad.shape != p.shape:
                raise RuntimeError(f"parameter {i}: grad shape {p.grad.shape} != {p.shape}")
            state = self.state.setdefault(i, {})
            self._follow(state, device_of(p.data))
            self._update(p, p.grad, group, state)
        self.steps += 1

    @staticmethod
    def _follow(state: dict, device: str) -> None:
        """Move a parameter's state arrays to ``device`` (where the parameter now is)."""
        for k, v in state.items():
            if not np.isscalar(v) and device_of(v) != device:
                state[k] = to_device(v, device)

    def to(self, device: str) -> Optimizer:
        """Move every state array to ``device`` (``"cpu"`` or ``"cuda"``) now."""
        for state in self.state.values():
            self._follow(state, device)
        return self

    def _update(self, p, grad, group, state) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Optimiser state as host arrays and numbers, for checkpoints."""
        return {
            "lr": self.lr,
            "base_lr": self.base_lr,
            "steps": self.steps,
            "state": {
                str(i): {k: (v if np.isscalar(v) else to_host(v).copy()) for k, v in s.items()}
                for i, s in self.state.items()
            },
        }

    def load_state_dict(self, state: dict) -> None:
        n_params = sum(len(g["params"]) for g in self.param_groups)
        for key in state["state"]:
            if not 0 <= int(key) < n_params:
                raise ValueError(
                    f"optimizer state: entry {key} does not exist "
                    f"(the optimiser has {n_params} parameters)"
                )
        self.lr = float(state["lr"])
        self.base_lr = float(state["base_lr"])
        self.steps = int(state["steps"])
        params = [p for _, _, p in self._indexed_params()]
        self.state = {}
        for key, s in state["state"].items():
            p = params[int(key)]
            restored = {}
            for k, v in s.items():
                if np.isscalar(v):
                    restored[k] = v
                else:
                    v = np.asarray(v)
                    if v.shape != p.shape:
                        raise ValueError(
                            f"optimizer state: {k} of parameter {key} has shape {v.shape}, "
                            f"the parameter has {p.shape}"
                        )
                    restored[k] = p.xp.asarray(v, dtype=p.dtype)
            self.state[int(key)] = restored

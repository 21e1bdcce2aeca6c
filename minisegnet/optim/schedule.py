"""Learning-rate schedules. Call ``scheduler.step()`` once per iteration, after ``opt.step()``.

    poly      lr = base * (1 - it / max_iter) ** power          (power 0.9: DeepLab, PSPNet)
    step      lr = base * gamma ** floor(it / step_size)
    constant  lr = base
    warmup    for it < warmup_iters the factor above is scaled by (it + 1) / warmup_iters

``factor(it)`` is the pure function; ``step()`` applies it to the optimiser's ``lr`` (each
group multiplies that by its own ``lr_mult``).
"""

from __future__ import annotations

from minisegnet.optim.optimizer import Optimizer


class Schedule:
    def __init__(self, optimizer: Optimizer, warmup_iters: int = 0):
        if warmup_iters < 0:
            raise ValueError(f"warmup_iters must be >= 0, got {warmup_iters}")
        self.optimizer = optimizer
        self.warmup_iters = warmup_iters
        self.iteration = 0
        optimizer.lr = optimizer.base_lr * self.factor(0)

    def _base_factor(self, it: int) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def factor(self, it: int) -> float:
        f = self._base_factor(it)
        if it < self.warmup_iters:
            f *= (it + 1) / self.warmup_iters
        return f

    def step(self) -> float:
        self.iteration += 1
        self.optimizer.lr = self.optimizer.base_lr * self.factor(self.iteration)
        return self.optimizer.lr

    def state_dict(self) -> dict:
        return {"iteration": self.iteration}

    def load_state_dict(self, state: dict) -> None:
        self.iteration = int(state["iteration"])
        self.optimizer.lr = self.optimizer.base_lr * self.factor(self.iteration)


def _positive(name: str, value):
    """``value``, or a ValueError naming ``name`` when it is not > 0."""
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    return value


class PolyLR(Schedule):
    def __init__(self, optimizer, max_iter: int, power: float = 0.9, warmup_iters: int = 0):
        self.max_iter, self.power = _positive("max_iter", max_iter), power
        super().__init__(optimizer, warmup_iters)

    def _base_factor(self, it):
        return max(0.0, 1 - min(it, self.max_iter) / self.max_iter) ** self.power


class StepLR(Schedule):
    def __init__(self, optimizer, step_size: int, gamma: float = 0.1, warmup_iters: int = 0):
        self.step_size, self.gamma = _positive("step_size", step_size), gamma
        super().__init__(optimizer, warmup_iters)

    def _base_factor(self, it):
        return self.gamma ** (it // self.step_size)


class ConstantLR(Schedule):
    def _base_factor(self, it):
        return 1.0

"""Optimisers and learning-rate schedules."""

from minisegnet.optim.adam import Adam
from minisegnet.optim.optimizer import Optimizer
from minisegnet.optim.schedule import ConstantLR, PolyLR, Schedule, StepLR
from minisegnet.optim.sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "Schedule", "PolyLR", "StepLR", "ConstantLR"]

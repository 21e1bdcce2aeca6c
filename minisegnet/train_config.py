"""The options of a training run (:class:`TrainConfig`) and their checks.

Every field is a ``minisegnet train`` flag with the same name (``batch_size`` is
``--batch-size``); :meth:`TrainConfig.check` refuses a value that cannot work with a
:class:`~minisegnet.options.ConfigError` naming the flag, before any data is made or read.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

from minisegnet import backend as backends
from minisegnet.data import DataError, parse_data_spec
from minisegnet.data.class_weights import parse_class_weights
from minisegnet.options import ConfigError, check_input_scale, check_pixels

__all__ = ["TrainConfig", "ConfigError"]


def _check_builtin_memory(size: int, images: int) -> None:
    """ConfigError when the built-in data set (generated up front: 3 bytes of image and one of
    label per pixel) would take more than half of this machine's memory."""
    needed = images * size * size * 4
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # not every system reports it
        return
    if needed > physical // 2:
        raise ConfigError(
            f"--size {size} with {images} built-in images (--train-images + --val-images) needs "
            f"{needed / 2**30:.3g} GiB, more than half of this machine's "
            f"{physical / 2**30:.3g} GiB; use a smaller --size or fewer images"
        )


@dataclass
class TrainConfig:
    """Every option of a training run (the command line's flags, with the same names).

    The defaults are the ``minisegnet train`` run: SegNet-Basic (the SegNet paper's small
    network, at its small preset: 16 channels) on 8000 built-in 40x40 images for 6 epochs at
    lr 0.1, under five minutes on two CPU cores. Why these: measured on the 2-core machine,
    SegNet-Basic learns the built-in shapes fastest per second of the networks here (the
    VGG-based ones, at 1/8 width, train far more slowly from scratch unless their initial steps
    are balanced, and better at 64x64 with a warm-up: ``--size 64 --warmup-epochs 1
    --balance-init``; see ``benchmarks/results/accuracy.md``), and at
    40x40 it trains at about 220 images/s: the 48k training images of six epochs over 8000
    distinct ones (better than 600 seen 80 times) take about 3.5 minutes, leaving room for a
    slower machine. Measured: 0.81-0.82 validation mean
    IoU after 196-215 s. With its batch norm, lr 0.1 learned faster than 0.05 (0.82 against 0.79 mean
    IoU for the PyTorch twin after the same images); 0.15 was unstable, median-frequency class
    weights cost 0.09 mean IoU, batch 16 was no faster per image.
    """

    model: str = "segnet_basic"
    data: str = "builtin"
    backend: str = "numba"
    epochs: int = 6
    batch_size: int = 8
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    bias_lr_mult: float = 2.0
    poly_power: float = 0.9
    warmup_epochs: float = 0.0  # lr ramps linearly from ~0 to lr over this many epochs
    balance_init: bool = False  # nn.balance_init_ before the first step (see nn/balance.py)
    size: int = 40
    # Dataset folders: the scale the network works at (0.5: frames at half size, four times
    # fewer pixels; evaluation resizes by it and scores the resized-back scores at full
    # resolution) and the random-scale range of the training crops around it.
    input_scale: float = 1.0
    train_scale: tuple = (0.5, 2.0)
    optimizer: str = "sgd"  # "sgd" (momentum) or "adam"
    width: float | None = None  # None: the model's small preset
    class_weights: str | None = None  # None, "median", a FILE or a comma list of K numbers
    aux_weight: float = 0.4  # PSPNet's auxiliary loss
    seed: int = 0
    train_images: int = 8000  # built-in data only
    val_images: int = 200  # built-in data only
    preview_images: int = 6  # rows of predictions.png

    def check(self) -> TrainConfig:
        from minisegnet import models

        try:
            self.model = models.canonical_name(self.model)
        except ValueError:
            raise ConfigError(
                f"--model: unknown model {self.model!r}; valid models: "
                f"{', '.join(n.replace('_', '-') for n in models.names())}"
            ) from None
        if self.backend not in backends.names():
            raise ConfigError(
                f"--backend: unknown backend {self.backend!r}; valid backends: "
                f"{', '.join(backends.names())}"
            )
        parse_data_spec(self.data)  # raises DataError for a malformed spec
        positive_ints = ("epochs", "batch_size", "size", "train_images", "val_images")
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be a positive integer, got {value!r}"
                )
        if self.size < 16:
            raise ConfigError(f"--size must be at least 16 pixels, got {self.size}")
        check_pixels(self.size, self.size, f"--size {self.size}")
        if parse_data_spec(self.data)[0] == "builtin":
            _check_builtin_memory(self.size, self.train_images + self.val_images)
        if not (isinstance(self.seed, int) and self.seed >= 0):
            raise ConfigError(f"--seed must be a non-negative integer, got {self.seed!r}")
        for name in (
            "lr",
            "momentum",
            "weight_decay",
            "bias_lr_mult",
            "aux_weight",
            "warmup_epochs",
        ):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ConfigError(
                    f"--{name.replace('_', '-')} must be a finite number >= 0, got {value!r}"
                )
        if self.optimizer not in ("sgd", "adam"):
            raise ConfigError(f"--optimizer must be sgd or adam, got {self.optimizer!r}")
        self.input_scale = check_input_scale(self.input_scale)
        self.train_scale = check_train_scale(self.train_scale)
        if self.input_scale != 1 and parse_data_spec(self.data)[0] == "builtin":
            raise ConfigError(
                f"--input-scale {self.input_scale:g}: the built-in data is generated at --size; "
                "give --size instead (--input-scale is for dataset folders)"
            )
        if self.lr <= 0:
            raise ConfigError(f"--lr must be > 0, got {self.lr}")
        if self.warmup_epochs > self.epochs:
            raise ConfigError(
                f"--warmup-epochs {self.warmup_epochs:g} is longer than the run (--epochs "
                f"{self.epochs}): the run would end with the learning rate still ramping up "
                f"towards --lr {self.lr:g}; give at most --warmup-epochs {self.epochs}"
            )
        if not isinstance(self.balance_init, bool):
            raise ConfigError(f"--balance-init must be true or false, got {self.balance_init!r}")
        if self.width is not None and not (self.width > 0 and math.isfinite(self.width)):
            raise ConfigError(f"--width must be a positive number, got {self.width!r}")
        try:
            parse_class_weights(self.class_weights)
        except DataError as error:
            raise ConfigError(str(error)) from None
        if isinstance(self.class_weights, str) and self.class_weights.strip().lower() == "none":
            self.class_weights = None
        return self

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        config = cls(**{k: v for k, v in values.items() if k in names})
        if isinstance(config.train_scale, list):  # JSON has no tuples
            config.train_scale = tuple(config.train_scale)
        return config


def check_train_scale(value) -> tuple:
    """(low, high) with 0 < low <= high <= 8 from a pair or the text "LOW,HIGH"; a ConfigError
    naming --train-scale otherwise."""
    given = value
    if isinstance(value, str):
        value = value.split(",")
    try:
        low, high = (float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"--train-scale must be two numbers LOW,HIGH (e.g. 0.5,2), got {given!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high <= 8):
        raise ConfigError(f"--train-scale needs 0 < LOW <= HIGH <= 8, got {given!r}")
    return (low, high)

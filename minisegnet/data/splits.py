"""The one place where a run's options become datasets, transforms and loaders.

Training (``Trainer``), ``minisegnet evaluate`` and the run's own validation all open their
splits here, so a checkpoint is scored on the data it was trained on, generated or cropped the
same way. ``config`` is a :class:`minisegnet.train_config.TrainConfig` (only its fields
``data``, ``size``, ``seed``, ``batch_size``, ``train_images``, ``val_images``,
``input_scale`` and ``train_scale`` are read).

    train_set, val_set, train_loader, val_loader = training_loaders(config)
    test_set = open_split(config, "test", data="camvid:/data/CamVid")
"""

from __future__ import annotations

from minisegnet.data import open_dataset, parse_data_spec, transforms
from minisegnet.data.loader import DataLoader

__all__ = ["open_split", "split_transform", "training_loaders"]


def open_split(
    config, split: str, *, data: str | None = None, size: int | None = None, training=False
):
    """The ``split`` of ``data`` (default: the run's ``config.data``). The built-in data is
    generated from ``config.seed`` at ``size`` (default ``config.size``), with
    ``config.train_images`` images when it is opened for ``training`` and ``config.val_images``
    when it is opened to be scored (whichever the split); dataset folders are read as they are
    (the transforms crop)."""
    length = config.train_images if training else config.val_images
    return open_dataset(
        data or config.data, split, size=size or config.size, length=length, seed=config.seed
    )


def split_transform(
    data: str, train: bool, size: int | None, ignore_index: int = 255, scale=(0.5, 2.0)
):
    """What every image of ``data`` goes through before the network.

    Training: the built-in shapes are flipped (they are generated at the training size);
    dataset folders get the papers' augmentation, crops of ``size`` at a random scale in
    ``scale`` = (low, high) (:func:`transforms.train_transform`). Scoring: the built-in data as generated; folders
    resized to ``size`` and centre-cropped, or whole frames when ``size`` is None
    (:func:`transforms.eval_transform`). Both end with the ImageNet normalisation."""
    kind, _ = parse_data_spec(data)
    if train:
        if kind == "builtin":
            return transforms.Compose([transforms.RandomHorizontalFlip(), transforms.Normalize()])
        return transforms.train_transform(size, ignore_index, scale=tuple(scale))
    return transforms.eval_transform(None if kind == "builtin" else size, ignore_index)


def training_scale(config) -> tuple:
    """The random-scale range of a run's training crops, relative to the dataset's frames:
    ``config.train_scale`` around ``config.input_scale`` (the resolution the network works at;
    fields absent from older configs mean 1 and the papers' 0.5..2)."""
    low, high = getattr(config, "train_scale", (0.5, 2.0))
    s = getattr(config, "input_scale", 1.0)
    return (s * low, s * high)


def training_loaders(config):
    """(train set, validation set, train loader, validation loader) of a training run: batches
    of ``config.batch_size`` in a seeded shuffled order for training (the last, partial batch
    dropped when there is more than one), twice as large and in order for validation."""
    train_set = open_split(config, "train", training=True)
    val_set = open_split(config, "val")
    ignore = train_set.ignore_index
    train_loader = DataLoader(
        train_set,
        config.batch_size,
        split_transform(config.data, True, config.size, ignore, training_scale(config)),
        shuffle=True,
        seed=config.seed,
        drop_last=len(train_set) > config.batch_size,
    )
    val_loader = DataLoader(
        val_set,
        2 * config.batch_size,
        split_transform(config.data, False, config.size, ignore),
        shuffle=False,
        seed=config.seed,
    )
    return train_set, val_set, train_loader, val_loader

"""Datasets, transforms, batching and class statistics.

    from minisegnet import data
    train = data.open_dataset("builtin", "train", size=64)        # or "voc:/path/to/VOC2012"
    loader = data.DataLoader(train, batch_size=8, shuffle=True, seed=0,
                             transform=data.transforms.train_transform(64))
    weights = data.median_frequency_weights(data.dataset_labels(train), train.num_classes)

A dataset is anything with ``len(ds)``, ``ds[i] -> (image (H, W, 3) uint8, label (H, W))``,
``num_classes``, ``class_names``, ``palette`` ((K, 3) uint8) and ``ignore_index`` (255).
"""

from __future__ import annotations

from minisegnet.data import transforms
from minisegnet.data.class_weights import (
    class_pixel_counts,
    dataset_labels,
    median_frequency_weights,
)
from minisegnet.data.errors import DataError
from minisegnet.data.folders import FOLDER_DATASETS, CamVid, Cityscapes, VOCSegmentation
from minisegnet.data.imageio import read_image, read_label, write_image, write_label
from minisegnet.data.loader import DataLoader
from minisegnet.data.palette import colorize, overlay, voc_palette
from minisegnet.data.synthetic import SHAPE_CLASSES, SyntheticShapes

__all__ = [
    "open_dataset", "parse_data_spec", "DATA_KINDS", "DataError", "DataLoader", "transforms",
    "SyntheticShapes", "SHAPE_CLASSES", "VOCSegmentation", "CamVid", "Cityscapes",
    "median_frequency_weights", "class_pixel_counts", "dataset_labels",
    "read_image", "read_label", "write_image", "write_label", "colorize", "overlay", "voc_palette",
]  # fmt: skip

DATA_KINDS = ("builtin", "voc", "camvid", "cityscapes")


def parse_data_spec(spec: str) -> tuple[str, str | None]:
    """'builtin' -> ('builtin', None); 'voc:/data/VOC2012' -> ('voc', '/data/VOC2012')."""
    if not isinstance(spec, str) or not spec:
        raise DataError(
            f"--data: expected builtin, voc:PATH, camvid:PATH or cityscapes:PATH, got {spec!r}"
        )
    kind, sep, path = spec.partition(":")
    kind = kind.strip().lower()
    if kind in ("builtin", "built-in", "synthetic"):
        return "builtin", None
    if kind in FOLDER_DATASETS:
        if not sep or not path:
            raise DataError(f"--data {spec}: give the dataset folder as {kind}:PATH")
        return kind, path
    raise DataError(
        f"--data {spec}: unknown dataset kind {kind!r}; expected one of builtin, voc:PATH, "
        "camvid:PATH, cityscapes:PATH"
    )


def open_dataset(spec: str, split: str, size: int = 64, length: int | None = None, seed: int = 0):
    """The ``split`` of the dataset named by ``spec`` (see :func:`parse_data_spec`).

    For the built-in data ``size`` is the image side and ``length`` the number of images
    (default 600 for train, 150 otherwise); folder datasets ignore both (transforms crop)."""
    kind, path = parse_data_spec(spec)
    if kind == "builtin":
        if length is None:
            length = 600 if split == "train" else 150
        return SyntheticShapes(split, size=size, length=length, seed=seed)
    return FOLDER_DATASETS[kind](path, split)

"""Class weights by median frequency balancing (Eigen & Fergus 2015, used by SegNet).

    freq(c) = (pixels of class c) / (total pixels of the images in which c appears)
    a_c     = median over classes of freq / freq(c)

Rare classes get weights above 1, common ones (road, sky, background) below 1, so the loss does
not let the network ignore small classes. Note the denominator: only the images that contain c
count, which is what distinguishes this from plain inverse frequency. Ignored pixels (255) count
in no class and in no total. A class that never appears gets weight 0 (and the median is taken
over the classes that do appear).
"""

from __future__ import annotations

import numpy as np


def class_pixel_counts(labels, num_classes: int, ignore_index: int = 255):
    """(pixels of each class, total labelled pixels of the images containing each class) over an
    iterable of (H, W) label maps."""
    counts = np.zeros(num_classes, dtype=np.int64)
    image_totals = np.zeros(num_classes, dtype=np.int64)
    for label in labels:
        label = np.asarray(label).reshape(-1)
        valid = label[label != ignore_index].astype(np.int64)
        if len(valid) and (valid.min() < 0 or valid.max() >= num_classes):
            raise ValueError(
                f"label values {sorted(set(valid[(valid < 0) | (valid >= num_classes)].tolist()))[:10]} "
                f"are neither a class in [0, {num_classes}) nor ignore_index={ignore_index}"
            )
        c = np.bincount(valid, minlength=num_classes)
        counts += c
        image_totals += (c > 0) * len(valid)
    return counts, image_totals


def median_frequency_weights(labels, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """Median frequency balancing weights (num_classes,) float32 from an iterable of label maps
    (for a dataset: ``(label for _, label in dataset)``)."""
    counts, totals = class_pixel_counts(labels, num_classes, ignore_index)
    present = counts > 0
    if not present.any():
        raise ValueError("median_frequency_weights: no labelled pixel in the labels given")
    freq = np.zeros(num_classes, dtype=np.float64)
    freq[present] = counts[present] / totals[present]
    weights = np.zeros(num_classes, dtype=np.float64)
    weights[present] = np.median(freq[present]) / freq[present]
    return weights.astype(np.float32)


def dataset_labels(dataset):
    """The label maps of a dataset, one at a time (images are read too when the dataset has no
    separate label access; folder datasets provide ``label(i)``)."""
    get = getattr(dataset, "label", None)
    for i in range(len(dataset)):
        yield get(i) if get is not None else dataset[i][1]

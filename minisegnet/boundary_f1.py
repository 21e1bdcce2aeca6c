"""SegNet's boundary F1 score (BF): how well predicted class boundaries match the true ones.

From Csurka et al. (BMVC 2013), as the SegNet paper (Badrinarayanan et al., PAMI 2017, section 4)
uses it: for one image and one class c present in its ground truth,

    B_pred = boundary pixels of (pred == c)        B_true = boundary pixels of (target == c)
    precision = |{p in B_pred : dist(p, B_true) <= theta}| / |B_pred|
    recall    = |{p in B_true : dist(p, B_pred) <= theta}| / |B_true|
    F1_c      = 2 precision recall / (precision + recall)        (0 when both are 0)

with theta = 0.75% of the image diagonal (4.5 pixels on a 360x480 CamVid frame). The image's
score is the mean of F1_c over the classes present in its ground truth; the split's BF is the
mean of the image scores. Per class, ``bf_per_class`` averages F1_c over the images where the
class is present.

Conventions (ours, stated because the paper leaves them open):
* a boundary pixel of a mask is a pixel of the mask with a 4-neighbour outside it; the frame's
  edge is not a boundary (a class touching the border does not gain a contour there);
* the prediction on ignored ground truth (CamVid's void) is not scored, as in the confusion
  matrix: void pixels are outside the class mask in the prediction as in the truth, so a
  prediction equal to the truth on every labelled pixel scores BF 1 (what it does on void
  cannot move a boundary);
* if a class has no boundary in the truth or in the prediction (it fills the frame or is not
  predicted at all): both empty -> F1 1, exactly one empty -> F1 0.

"Within theta" is tested by dilating the other boundary with a disk of radius theta
(:func:`dilate_disk`): a pixel p is within theta of a set B exactly when p lies in the union of
the disks of radius theta centred on B's pixels.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["mask_boundary", "dilate_disk", "image_boundary_f1", "BoundaryF1Meter", "tolerance"]


def tolerance(height: int, width: int, fraction: float = 0.0075) -> float:
    """theta in pixels: ``fraction`` (SegNet: 0.75%) of the image diagonal."""
    return fraction * math.hypot(height, width)


def mask_boundary(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (H, W) bool: pixels of ``mask`` with a 4-neighbour outside it (the frame's
    edge counts as inside, so it is not a boundary)."""
    m = np.asarray(mask, dtype=bool)
    inner = m.copy()
    inner[1:, :] &= m[:-1, :]
    inner[:-1, :] &= m[1:, :]
    inner[:, 1:] &= m[:, :-1]
    inner[:, :-1] &= m[:, 1:]
    return m & ~inner


def _dilate_row(mask: np.ndarray, half: int) -> np.ndarray:
    """Each row's pixels within ``half`` columns of a True pixel (a window count via cumsum)."""
    if half == 0:
        return mask.copy()
    w = mask.shape[1]
    c = np.zeros((mask.shape[0], w + 1), dtype=np.int32)
    np.cumsum(mask, axis=1, out=c[:, 1:])
    x = np.arange(w)
    hi = np.minimum(x + half + 1, w)
    lo = np.maximum(x - half, 0)
    return (c[:, hi] - c[:, lo]) > 0


def dilate_disk(mask: np.ndarray, radius: float) -> np.ndarray:
    """(H, W) bool: pixels within Euclidean distance ``radius`` of a True pixel of ``mask``.

    The disk is split into rows: row offset dy covers columns |dx| <= floor(sqrt(r^2 - dy^2)),
    so the dilation is a union of row dilations (one cumulative sum each) shifted by dy."""
    m = np.asarray(mask, dtype=bool)
    r = int(math.floor(radius))
    h = m.shape[0]
    out = np.zeros_like(m)
    rows = {}
    for dy in range(-r, r + 1):
        half = int(math.floor(math.sqrt(max(radius * radius - dy * dy, 0.0)) + 1e-9))
        if half not in rows:
            rows[half] = _dilate_row(m, half)
        d = rows[half]
        # out[y] |= d[y + dy] (the pixel at y is within reach of a True pixel at y + dy)
        if dy >= 0:
            out[: h - dy] |= d[dy:]
        else:
            out[-dy:] |= d[: h + dy]
    return out


def image_boundary_f1(
    pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int = 255, theta=None
) -> np.ndarray:
    """(K,) float64: F1_c of one (H, W) image for each class present in ``target``, NaN for the
    others. ``theta`` defaults to :func:`tolerance` of the image's size."""
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape or pred.ndim != 2:
        raise ValueError(
            f"pred and target must be (H, W) maps of one shape, got {pred.shape} and {target.shape}"
        )
    if theta is None:
        theta = tolerance(*target.shape)
    scored = target != ignore_index
    f1 = np.full(num_classes, np.nan)
    for c in np.unique(target[scored]):
        c = int(c)
        true_b = mask_boundary(target == c)
        pred_b = mask_boundary((pred == c) & scored)
        n_true, n_pred = int(true_b.sum()), int(pred_b.sum())
        if n_true == 0 or n_pred == 0:
            f1[c] = 1.0 if n_true == n_pred else 0.0
            continue
        precision = (pred_b & dilate_disk(true_b, theta)).sum() / n_pred
        recall = (true_b & dilate_disk(pred_b, theta)).sum() / n_true
        s = precision + recall
        f1[c] = 0.0 if s == 0 else 2 * precision * recall / s
    return f1


class BoundaryF1Meter:
    """Accumulates BF over images: ``add(preds, targets)`` with (N, H, W) or (H, W) host
    arrays, then ``scores()`` -> ``{"bf": mean of image scores, "bf_per_class": (K,)}``."""

    def __init__(self, num_classes: int, ignore_index: int = 255, fraction: float = 0.0075):
        self.num_classes, self.ignore_index, self.fraction = num_classes, ignore_index, fraction
        self.image_scores: list[float] = []
        self.class_sum = np.zeros(num_classes)
        self.class_count = np.zeros(num_classes, dtype=np.int64)

    def add(self, preds, targets) -> None:
        preds, targets = np.asarray(preds), np.asarray(targets)
        if preds.ndim == 2:
            preds, targets = preds[None], targets[None]
        for p, t in zip(preds, targets):
            f1 = image_boundary_f1(
                p, t, self.num_classes, self.ignore_index, tolerance(*t.shape, self.fraction)
            )
            present = ~np.isnan(f1)
            if present.any():
                self.image_scores.append(float(f1[present].mean()))
                self.class_sum[present] += f1[present]
                self.class_count[present] += 1

    def scores(self) -> dict:
        with np.errstate(invalid="ignore", divide="ignore"):
            per_class = np.where(self.class_count > 0, self.class_sum / self.class_count, np.nan)
        bf = float(np.mean(self.image_scores)) if self.image_scores else float("nan")
        return {"bf": bf, "bf_per_class": per_class}

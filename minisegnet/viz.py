"""Pictures of a training run, written to PNG files (no display needed).

plot_curves(history, "curves.png")       training loss and validation mIoU per epoch
plot_predictions(images, labels, preds, palette, "predictions.png")
                                         one row per image: image | truth | prediction,
                                         the label maps drawn as colour overlays
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from minisegnet.data.palette import overlay

# Figures are built with matplotlib's object API (``Figure``), not pyplot: no window opens, it
# works on machines without a display, and it leaves pyplot's backend alone, so a notebook that
# trains a network keeps showing its own inline plots afterwards.


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=100)  # a Figure saves through the Agg canvas; nothing to close
    tmp.replace(path)
    return path


def plot_curves(history, path) -> Path:
    """``history``: a list of epoch records with ``epoch``, ``train_loss`` and ``val`` (a dict
    with ``miou``, ``pixel_acc``; ``val_loss`` optional)."""
    epochs = [h["epoch"] for h in history]
    fig = Figure(figsize=(10, 4))
    ax_loss, ax_iou = fig.subplots(1, 2)
    ax_loss.plot(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    ax_loss.set_xlabel("epoch")
    ax_loss.set_ylabel("cross-entropy loss")
    ax_loss.set_title("training loss")
    ax_loss.grid(alpha=0.3)
    ax_iou.plot(epochs, [h["val"]["miou"] for h in history], marker="o", label="mean IoU")
    ax_iou.plot(epochs, [h["val"]["pixel_acc"] for h in history], marker=".", label="pixel acc")
    ax_iou.set_xlabel("epoch")
    ax_iou.set_ylim(0, 1)
    ax_iou.set_title("validation")
    ax_iou.grid(alpha=0.3)
    ax_iou.legend(loc="lower right")
    fig.tight_layout()
    return _save(fig, path)


def plot_predictions(
    images,
    labels,
    preds,
    palette,
    path,
    class_names=None,
    ignore_index: int = 255,
    alpha: float = 0.6,
) -> Path:
    """A grid: one row per image with the image, the truth overlay and the prediction overlay.

    ``images`` (N, H, W, 3) uint8 or float in [0, 1]; ``labels``, ``preds`` (N, H, W) ints.
    """
    n = len(images)
    fig = Figure(figsize=(7.5, 2.5 * n))
    axes = fig.subplots(n, 3, squeeze=False)
    for i in range(n):
        panels = (
            (images[i], "image"),
            (overlay(images[i], labels[i], palette, alpha, ignore_index), "truth"),
            (overlay(images[i], preds[i], palette, alpha, ignore_index), "prediction"),
        )
        for ax, (picture, title) in zip(axes[i], panels):
            ax.imshow(picture, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title)
    if class_names is not None:
        colours = np.asarray(palette)[: len(class_names)] / 255.0
        handles = [Rectangle((0, 0), 1, 1, color=c) for c in colours]
        fig.legend(
            handles,
            list(class_names),
            loc="lower center",
            ncol=min(len(class_names), 6),
            fontsize="small",
            frameon=False,
        )
        fig.tight_layout(rect=(0, 0.04 + 0.02 * (len(class_names) // 7), 1, 1))
    else:
        fig.tight_layout()
    return _save(fig, path)

"""Pictures of a prediction that say what the colours mean.

    with_legend(picture, classes, palette, names)   the picture with a legend strip below it
    legend_strip(width, classes, palette, names)    the strip alone: a colour swatch and the
                                                    class name per entry, wrapped into rows
    side_by_side(image, pred, palette, names, path) a figure: image | prediction | overlay,
                                                    with the legend under the three panels

Used by ``minisegnet predict``: ``<name>_overlay.png`` gets the strip (so the overlay is taller
than the image by the strip's height), ``<name>_figure.png`` is the side-by-side figure. The
mask ``<name>_mask.png`` stays data: its pixel values are the class indices, so a legend drawn
into it would be read as classes; it carries the class names as a PNG text entry instead
(``classes``: "0=sky, 1=building, ..."), and the figure shows it with its legend.

The legend lists the classes that occur in the prediction, in class order: the colours one
can see on the picture. Drawn with Pillow's built-in font: no font file needed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from minisegnet.data.palette import colorize, overlay

__all__ = ["legend_strip", "with_legend", "side_by_side", "classes_text", "write_prediction"]

_PAD, _SWATCH, _GAP = 4, 10, 10


def classes_text(names) -> str:
    """'0=sky, 1=building, ...': the class of each mask value."""
    return ", ".join(f"{k}={n}" for k, n in enumerate(names))


def legend_strip(width: int, classes, palette, names) -> np.ndarray:
    """(h, width, 3) uint8: white strip, one swatch + name per class in ``classes``, wrapped
    into as many rows as ``width`` needs (one entry per row at least)."""
    font = ImageFont.load_default()
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = max(_SWATCH, int(font.getbbox("Ag")[3])) + _PAD
    rows, x = [[]], _PAD
    for c in classes:
        w = _SWATCH + 3 + int(draw.textlength(str(names[c]), font=font)) + _GAP
        if x + w > width and rows[-1]:
            rows.append([])
            x = _PAD
        rows[-1].append((c, x))
        x += w
    strip = Image.new("RGB", (width, line_h * len(rows) + _PAD), "white")
    draw = ImageDraw.Draw(strip)
    for r, row in enumerate(rows):
        y = _PAD + r * line_h
        for c, x in row:
            colour = tuple(int(v) for v in np.asarray(palette)[c])
            draw.rectangle([x, y, x + _SWATCH - 1, y + _SWATCH - 1], fill=colour, outline="black")
            draw.text((x + _SWATCH + 3, y - 1), str(names[c]), fill="black", font=font)
    return np.asarray(strip)


def with_legend(picture, classes, palette, names) -> np.ndarray:
    """``picture`` (H, W, 3) uint8 with :func:`legend_strip` below it."""
    picture = np.asarray(picture, dtype=np.uint8)
    strip = legend_strip(picture.shape[1], classes, palette, names)
    return np.concatenate([picture, strip], axis=0)


def present_classes(pred, num_classes: int) -> list[int]:
    counts = np.bincount(np.asarray(pred).reshape(-1), minlength=num_classes)
    return [int(c) for c in np.flatnonzero(counts[:num_classes])]


def side_by_side(image, pred, palette, names, path, alpha: float = 0.5) -> Path:
    """Save image | prediction (colours) | overlay in one row, legend below; returns ``path``."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from minisegnet.viz import _save

    image = np.asarray(image)
    h, w = image.shape[:2]
    fig = Figure(figsize=(3 * 3.2, 3.2 * h / w + 0.8))
    axes = fig.subplots(1, 3)
    panels = (
        (image, "image"),
        (colorize(pred, palette), "prediction"),
        (overlay(image, pred, palette, alpha), "overlay"),
    )
    for ax, (picture, title) in zip(axes, panels):
        ax.imshow(picture, interpolation="nearest")
        ax.set_title(title)
        ax.set_xticks([])
        ax.set_yticks([])
    shown = present_classes(pred, len(names))
    colours = np.asarray(palette)[shown] / 255.0
    fig.legend(
        [Rectangle((0, 0), 1, 1, color=c) for c in colours],
        [names[c] for c in shown],
        loc="lower center",
        ncol=min(len(shown), 6) or 1,
        fontsize="small",
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.06 + 0.04 * (len(shown) // 7), 1, 1))
    return _save(fig, path)


def write_prediction(out, stem: str, image, pred, palette, names, alpha: float = 0.5) -> dict:
    """``predict``'s three files for one image in folder ``out``: ``mask`` (palette PNG of the
    class indices, names as text), ``overlay`` (with the legend strip), ``figure``
    (side by side). Returns {kind: path}."""
    from minisegnet.data.imageio import write_image, write_label

    out = Path(out)
    paths = {k: out / f"{stem}_{k}.png" for k in ("mask", "overlay", "figure")}
    pred = np.asarray(pred)
    write_label(paths["mask"], pred.astype(np.uint8), palette, {"classes": classes_text(names)})
    blended = overlay(image, pred, palette, alpha)
    shown = present_classes(pred, len(names))
    write_image(paths["overlay"], with_legend(blended, shown, palette, names))
    side_by_side(image, pred, palette, names, paths["figure"], alpha)
    return paths

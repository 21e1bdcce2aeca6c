"""Colour palettes for label maps, and drawing label maps as colours or as overlays.

A palette is a (K, 3) uint8 array: row k is the RGB colour of class k. The ignore label (255)
is drawn in its own colour (white by default, as in the VOC ground truth borders).

    voc_palette(n)          the Pascal VOC palette (class k's bits spread over R, G and B)
    CAMVID_PALETTE          SegNet tutorial colours for the 11 CamVid classes
    CITYSCAPES_PALETTE      the official colours of the 19 Cityscapes train ids
    colorize(label, pal)    (H, W) labels -> (H, W, 3) uint8 colours
    overlay(image, label)   the colours blended over an image (ignored pixels left as they are)
"""

from __future__ import annotations

import numpy as np

IGNORE_COLOR = (255, 255, 255)


def voc_palette(n: int = 256) -> np.ndarray:
    """The Pascal VOC colour map: bit j of class k goes to bit 7-j//3 of channel j%3.

    Class 0 is black, 1 dark red (128, 0, 0), 2 dark green, 3 olive, ..., 255 (224, 224, 192).
    """
    palette = np.zeros((n, 3), dtype=np.uint8)
    for k in range(n):
        c, r, g, b = k, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[k] = (r, g, b)
    return palette


CAMVID_PALETTE = np.array(
    [
        (128, 128, 128),  # sky
        (128, 0, 0),  # building
        (192, 192, 128),  # pole
        (128, 64, 128),  # road
        (60, 40, 222),  # pavement
        (128, 128, 0),  # tree
        (192, 128, 128),  # sign / symbol
        (64, 64, 128),  # fence
        (64, 0, 128),  # car
        (64, 64, 0),  # pedestrian
        (0, 128, 192),  # bicyclist
    ],
    dtype=np.uint8,
)

CITYSCAPES_PALETTE = np.array(
    [
        (128, 64, 128),  # road
        (244, 35, 232),  # sidewalk
        (70, 70, 70),  # building
        (102, 102, 156),  # wall
        (190, 153, 153),  # fence
        (153, 153, 153),  # pole
        (250, 170, 30),  # traffic light
        (220, 220, 0),  # traffic sign
        (107, 142, 35),  # vegetation
        (152, 251, 152),  # terrain
        (70, 130, 180),  # sky
        (220, 20, 60),  # person
        (255, 0, 0),  # rider
        (0, 0, 142),  # car
        (0, 0, 70),  # truck
        (0, 60, 100),  # bus
        (0, 80, 100),  # train
        (0, 0, 230),  # motorcycle
        (119, 11, 32),  # bicycle
    ],
    dtype=np.uint8,
)


def full_palette(palette: np.ndarray, ignore_color=IGNORE_COLOR) -> np.ndarray:
    """A 256-entry palette (what a palette PNG stores): the classes, then ``ignore_color``."""
    palette = np.asarray(palette, dtype=np.uint8)
    if palette.ndim != 2 or palette.shape[1] != 3 or len(palette) > 255:
        raise ValueError(f"palette must have shape (K, 3) with K <= 255, got {palette.shape}")
    out = np.zeros((256, 3), dtype=np.uint8)
    out[: len(palette)] = palette
    out[len(palette) :] = ignore_color
    return out


def colorize(label, palette, ignore_color=IGNORE_COLOR) -> np.ndarray:
    """(H, W) integer labels -> (H, W, 3) uint8 colours; any value >= len(palette) (the ignore
    label) gets ``ignore_color``."""
    label = np.asarray(label)
    if label.dtype.kind not in "iu":
        raise TypeError(f"colorize: label must hold integers, got dtype {label.dtype}")
    table = full_palette(palette, ignore_color)
    return table[np.clip(label, 0, 255).astype(np.intp)]


def overlay(image, label, palette, alpha: float = 0.5, ignore_index: int = 255) -> np.ndarray:
    """The label colours blended over ``image`` ((H, W, 3) uint8 or float in [0, 1]) with weight
    ``alpha``; ignored pixels show the image unchanged. Returns (H, W, 3) uint8."""
    image = np.asarray(image)
    label = np.asarray(label)
    if image.shape[:2] != label.shape:
        raise ValueError(f"overlay: image {image.shape[:2]} and label {label.shape} sizes differ")
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    colours = colorize(label, palette).astype(np.float32)
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colours
    keep = (label == ignore_index)[..., None]
    return np.where(keep, image, blended.round()).astype(np.uint8)

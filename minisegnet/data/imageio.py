"""Reading and writing images and label maps with Pillow.

read_image(path)   -> (H, W, 3) uint8 RGB (grey and RGBA images are converted)
read_label(path)   -> (H, W) uint8 class indices. Palette PNGs (VOC) hold the indices
                      directly; grey PNGs (CamVid, Cityscapes) too. Colour (RGB) label
                      images are refused: their colours would have to be mapped back to
                      classes, which this loader does not guess.
write_image(path, image)                 (H, W, 3) uint8 or float in [0, 1] -> PNG/JPEG
write_label(path, label, palette=None)   palette PNG: the pixel values are the class
                                         indices, and viewers show the palette's colours
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from minisegnet.data.errors import DataError
from minisegnet.data.palette import full_palette


def _open(path, what: str) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist")
    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DataError(f"{what} {path} cannot be read as an image ({error})") from None
    return image


def read_image(path) -> np.ndarray:
    """(H, W, 3) uint8 RGB."""
    image = _open(path, "image")
    if image.mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8).copy()


def read_label(path) -> np.ndarray:
    """(H, W) uint8 class indices from a palette ("P") or grey ("L"/"I") image."""
    image = _open(path, "label")
    if image.mode in ("P", "L"):
        return np.asarray(image, dtype=np.uint8).copy()
    if image.mode in ("I", "I;16", "I;16B", "I;16L"):
        array = np.asarray(image)
        if array.min() < 0 or array.max() > 255:
            raise DataError(
                f"label {path} holds values outside 0..255 (min {array.min()}, max {array.max()})"
            )
        return array.astype(np.uint8)
    raise DataError(
        f"label {path} is a {image.mode} image; expected class indices in a palette (P) or "
        "grey (L) PNG, not colours"
    )


def write_image(path, image) -> None:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)


def write_label(path, label, palette=None) -> None:
    """Save (H, W) labels (values 0..255) as a palette PNG (or grey without a palette)."""
    label = np.asarray(label)
    if label.dtype.kind not in "iu" or label.min(initial=0) < 0 or label.max(initial=0) > 255:
        raise ValueError(f"write_label: label must hold integers in 0..255, got {label.dtype}")
    image = Image.fromarray(label.astype(np.uint8))  # mode "L"
    if palette is not None:
        image.putpalette(full_palette(palette).reshape(-1).tolist())  # "L" -> "P", same values
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    image.save(path)

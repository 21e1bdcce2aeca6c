"""Reading and writing images and label maps with Pillow.

read_image(path)   -> (H, W, 3) uint8 RGB (grey and RGBA images are converted; 16-bit images
                      are scaled to 8 bits, value * 255 / 65535; float images must hold
                      values in [0, 1] and are scaled by 255; anything else is refused)
read_label(path)   -> (H, W) uint8 class indices. Palette PNGs (VOC) hold the indices
                      directly; grey PNGs (CamVid, Cityscapes) too. Colour (RGB) label
                      images are refused: their colours would have to be mapped back to
                      classes, which this loader does not guess.
write_image(path, image)                 (H, W, 3) uint8 or float in [0, 1] -> PNG/JPEG
write_label(path, label, palette=None)   palette PNG: the pixel values are the class
                                         indices, and viewers show the palette's colours

Images larger than ``MAX_IMAGE_PIXELS`` (width x height) are refused before their pixels are
decoded, with a message of their own: a 20000 x 20000 PNG is 1.2 GB of RGB bytes and far more in
a network's float32 activations, and a small file can claim such a size in its header (a
"decompression bomb"). Raise the limit (``imageio.MAX_IMAGE_PIXELS = ...``) for larger images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from minisegnet.data.errors import DataError
from minisegnet.data.palette import full_palette

MAX_IMAGE_PIXELS = 8192 * 8192  # 67 megapixels: 200 MB as RGB bytes


def _too_large(what: str, path, width: int, height: int) -> DataError:
    return DataError(
        f"{what} {path} is {width}x{height} pixels ({width * height / 1e6:.3g} megapixels), "
        f"larger than the limit of {MAX_IMAGE_PIXELS / 1e6:.3g} megapixels "
        "(minisegnet.data.imageio.MAX_IMAGE_PIXELS); downscale it first"
    )


def _open(path, what: str) -> Image.Image:
    import warnings

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{what} {path} does not exist")
    try:
        with warnings.catch_warnings():  # Pillow warns above its own limit; ours is lower
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise _too_large(what, path, image.width, image.height)
        image.load()
    except Image.DecompressionBombError:  # Pillow's check runs inside open(), before ours
        raise _too_large(what, path, *_header_size(path)) from None
    except (UnidentifiedImageError, OSError, SyntaxError) as error:
        raise DataError(f"{what} {path} cannot be read as an image ({error})") from None
    return image


def _header_size(path) -> tuple[int, int]:
    """(width, height) from the header alone, with Pillow's decompression-bomb check off."""
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with Image.open(path) as image:
            return image.size
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def read_image(path) -> np.ndarray:
    """(H, W, 3) uint8 RGB.

    8-bit images (RGB, grey, palette, RGBA: alpha dropped, ...) are converted by Pillow. 16-bit
    grey images (PNG "I;16", or "I" holding 0..65535) are scaled, value * 255 / 65535 rounded,
    not clipped (clipping would saturate almost every pixel); Pillow itself reads 16-bit RGB
    PNGs as 8-bit RGB by keeping the high byte (within 1 of the same scaling). Float images ("F") must hold
    values in [0, 1] and are scaled by 255; other ranges, and 32-bit integers beyond 16 bits,
    are refused with a DataError, since their meaning cannot be guessed.
    """
    image = _open(path, "image")
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise DataError(
                f"image {path} is a 32-bit integer image holding {values.min()}..{values.max()}; "
                "expected 8-bit or 16-bit (0..65535) pixels"
            )
        grey = np.round(values * (255 / 65535)).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if image.mode == "F":
        values = np.asarray(image, dtype=np.float64)
        if values.size and not (
            np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1
        ):
            raise DataError(
                f"image {path} is a float image holding {np.nanmin(values):g}..{np.nanmax(values):g}; "
                "expected values in [0, 1] (they are scaled by 255)"
            )
        grey = np.round(values * 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
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


def write_label(path, label, palette=None, text: dict | None = None) -> None:
    """Save (H, W) labels (values 0..255) as a palette PNG (or grey without a palette);
    ``text``: PNG text entries (e.g. the class names), which leave the pixel values alone."""
    label = np.asarray(label)
    if label.dtype.kind not in "iu" or label.min(initial=0) < 0 or label.max(initial=0) > 255:
        raise ValueError(f"write_label: label must hold integers in 0..255, got {label.dtype}")
    image = Image.fromarray(label.astype(np.uint8))  # mode "L"
    if palette is not None:
        image.putpalette(full_palette(palette).reshape(-1).tolist())  # "L" -> "P", same values
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    info = None
    if text:
        from PIL.PngImagePlugin import PngInfo

        info = PngInfo()
        for key, value in text.items():
            info.add_text(key, value)
    image.save(path, pnginfo=info)

"""Joint image + label transforms for training and evaluation.

Every transform is a callable ``t(image, label, rng) -> (image, label)``:

    image  (H, W, 3) uint8, or float32 in [0, 1] once a transform has resampled it
    label  (H, W) integer class indices (the ignore value included)
    rng    a ``numpy.random.Generator``; the loader gives each sample its own, derived from
           (seed, epoch, index), so augmentation does not depend on thread timing or on
           where a resumed run restarted

The rule that matters: images are resampled bilinearly, **label maps always with nearest
neighbour**, so a label map only ever holds values it held before (or the ignore value where the
transform invents pixels: padding, rotated-in corners). Interpolating labels would invent classes
on boundaries (halfway between class 2 and class 4 is not class 3).

Sampling convention (half-pixel centres, as ``align_corners=False``): output pixel (oy, ox) of an
output of size (Ho, Wo) made from an input of size (H, W) reads the input at

    sy = (oy + 0.5) * H / Ho - 0.5,    sx = (ox + 0.5) * W / Wo - 0.5

bilinear: the four pixels around (sy, sx), edge-clamped; nearest: (floor(sy + 0.5), floor(sx + 0.5)).

    Compose([RandomScale(0.5, 2.0), RandomCrop(321), RandomHorizontalFlip(),
             RandomRotation(10), ColorJitter(0.2, 0.2, 0.2), Normalize()])
"""

from __future__ import annotations

import math

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def to_float(image) -> np.ndarray:
    """(H, W, 3) uint8 -> float32 in [0, 1]; float images are passed through as float32."""
    image = np.asarray(image)
    if image.dtype == np.uint8:
        return image.astype(np.float32) / 255.0
    return image.astype(np.float32, copy=False)


# --------------------------------------------------------------------------- sampling


def _bilinear(image, sy, sx, fill=None):
    """Sample (H, W, C) ``image`` at float coordinates sy, sx (same shape, (Ho, Wo)).

    Coordinates outside [-0.5, H - 0.5] x [-0.5, W - 0.5] give ``fill`` when it is not None,
    otherwise the edge is clamped."""
    h, w = image.shape[:2]
    y0 = np.floor(sy).astype(np.intp)
    x0 = np.floor(sx).astype(np.intp)
    fy = (sy - y0).astype(np.float32)[..., None]
    fx = (sx - x0).astype(np.float32)[..., None]
    y0c, y1c = np.clip(y0, 0, h - 1), np.clip(y0 + 1, 0, h - 1)
    x0c, x1c = np.clip(x0, 0, w - 1), np.clip(x0 + 1, 0, w - 1)
    top = image[y0c, x0c] * (1 - fx) + image[y0c, x1c] * fx
    bottom = image[y1c, x0c] * (1 - fx) + image[y1c, x1c] * fx
    out = top * (1 - fy) + bottom * fy
    if fill is not None:
        outside = (sy < -0.5) | (sy > h - 0.5) | (sx < -0.5) | (sx > w - 0.5)
        out[outside] = fill
    return out.astype(np.float32, copy=False)


def _nearest(label, sy, sx, fill):
    """Sample (H, W) ``label`` at the nearest pixel of sy, sx; outside the image: ``fill``."""
    h, w = label.shape
    iy = np.floor(sy + 0.5).astype(np.intp)
    ix = np.floor(sx + 0.5).astype(np.intp)
    inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
    out = label[np.clip(iy, 0, h - 1), np.clip(ix, 0, w - 1)]
    if fill is not None:
        out = np.where(inside, out, np.asarray(fill, dtype=label.dtype))
    return out


def resize(image, label, height: int, width: int):
    """Resize to (height, width): image bilinear, label nearest. Either may be None."""
    src = image if image is not None else label
    h, w = src.shape[:2]
    sy = (np.arange(height, dtype=np.float64) + 0.5) * h / height - 0.5
    sx = (np.arange(width, dtype=np.float64) + 0.5) * w / width - 0.5
    sy, sx = np.meshgrid(sy, sx, indexing="ij")
    out_image = None if image is None else _bilinear(to_float(image), sy, sx)
    out_label = None if label is None else _nearest(np.asarray(label), sy, sx, fill=None)
    return out_image, out_label


def pad_to(image, label, height: int, width: int, ignore_index: int = 255, fill: float = 0.0):
    """Pad bottom and right up to at least (height, width): image with ``fill``, label with
    ``ignore_index`` (padding is not a class)."""
    h, w = label.shape
    ph, pw = max(height - h, 0), max(width - w, 0)
    if ph == 0 and pw == 0:
        return image, label
    image = np.pad(to_float(image), ((0, ph), (0, pw), (0, 0)), constant_values=fill)
    label = np.pad(np.asarray(label), ((0, ph), (0, pw)), constant_values=ignore_index)
    return image, label


def _check_pair(image, label):
    if np.asarray(image).shape[:2] != np.asarray(label).shape:
        raise ValueError(
            f"image size {np.asarray(image).shape[:2]} and label size "
            f"{np.asarray(label).shape} differ"
        )


# --------------------------------------------------------------------------- transforms


class Compose:
    def __init__(self, transforms):
        self.transforms = list(transforms)

    def __call__(self, image, label, rng):
        _check_pair(image, label)
        for t in self.transforms:
            image, label = t(image, label, rng)
        return image, label

    def __repr__(self):
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


def _scale(image, label, factor: float):
    """Both sides times ``factor`` (rounded, at least 1); unchanged when that keeps the size."""
    h, w = label.shape
    height, width = max(1, round(h * factor)), max(1, round(w * factor))
    if (height, width) == (h, w):
        return image, label
    return resize(image, label, height, width)


class Resize:
    """``Resize(s)``: shorter side to s, aspect kept; ``Resize((h, w))``: exactly (h, w)."""

    def __init__(self, size):
        self.size = size

    def __call__(self, image, label, rng=None):
        if isinstance(self.size, (tuple, list)):
            height, width = self.size
            if (height, width) == label.shape:
                return image, label
            return resize(image, label, height, width)
        return _scale(image, label, self.size / min(label.shape))

    def __repr__(self):
        return f"Resize({self.size})"


class RandomScale:
    """Scale both sides by one factor drawn uniformly from [low, high] (the papers' 0.5..2)."""

    def __init__(self, low: float = 0.5, high: float = 2.0):
        if not 0 < low <= high:
            raise ValueError(f"RandomScale: need 0 < low <= high, got low={low}, high={high}")
        self.low, self.high = low, high

    def __call__(self, image, label, rng):
        return _scale(image, label, rng.uniform(self.low, self.high))

    def __repr__(self):
        return f"RandomScale({self.low}, {self.high})"


class RandomCrop:
    """A random (size x size) window; smaller images are first padded (label with the ignore
    value, image with 0) so that every crop has the requested size."""

    def __init__(self, size, ignore_index: int = 255):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.ignore_index = ignore_index

    def __call__(self, image, label, rng):
        ch, cw = self.size
        image, label = pad_to(image, label, ch, cw, self.ignore_index)
        h, w = label.shape
        y = int(rng.integers(0, h - ch + 1))
        x = int(rng.integers(0, w - cw + 1))
        return image[y : y + ch, x : x + cw], label[y : y + ch, x : x + cw]

    def __repr__(self):
        return f"RandomCrop({self.size})"


class ScaledCrop:
    """``RandomScale(low, high)`` then ``RandomCrop(size)``, computing only the crop's pixels.

    Same random draws, same output (to float rounding) as the two steps in a row, but instead
    of resampling the whole frame at scale s and throwing most of it away, the crop window is
    chosen in the scaled frame's coordinates and only its size x size pixels are sampled from
    the original: output pixel (oy, ox) of a window at (y, x) in the (Hs, Ws) scaled frame
    reads the original at ((y + oy + 0.5) H / Hs - 0.5, (x + ox + 0.5) W / Ws - 0.5), the
    half-pixel convention of :func:`resize`. Window pixels beyond the scaled frame (it was
    smaller than the crop) are 0 in the image and the ignore value in the label, as
    ``RandomCrop``'s padding makes them. Measured on a 360x480 CamVid frame, crop 128, scale
    0.5..2 (busy 2-core machine): see ``benchmarks/results/camvid_median_sgd_lr0.02_40ep.md``.
    """

    def __init__(self, size, low: float = 0.5, high: float = 2.0, ignore_index: int = 255):
        if not 0 < low <= high:
            raise ValueError(f"ScaledCrop: need 0 < low <= high, got low={low}, high={high}")
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.low, self.high, self.ignore_index = low, high, ignore_index

    def __call__(self, image, label, rng):
        s = rng.uniform(self.low, self.high)
        h, w = label.shape
        hs, ws = max(1, round(h * s)), max(1, round(w * s))  # as RandomScale rounds
        ch, cw = self.size
        y = int(rng.integers(0, max(hs, ch) - ch + 1))  # as RandomCrop draws on the padded frame
        x = int(rng.integers(0, max(ws, cw) - cw + 1))
        oy = np.arange(y, y + ch, dtype=np.float64)
        ox = np.arange(x, x + cw, dtype=np.float64)
        sy, sx = np.meshgrid((oy + 0.5) * h / hs - 0.5, (ox + 0.5) * w / ws - 0.5, indexing="ij")
        outside = (oy[:, None] >= hs) | (ox[None, :] >= ws)  # the padding RandomCrop would add
        out_image = _bilinear(to_float(image), sy, sx)
        out_label = _nearest(np.asarray(label), sy, sx, fill=None)
        if outside.any():
            out_image[outside] = 0.0
            out_label = np.where(outside, np.asarray(self.ignore_index, out_label.dtype), out_label)
        return out_image, out_label

    def __repr__(self):
        return f"ScaledCrop({self.size}, {self.low}, {self.high})"


class CenterCrop:
    """The central (size x size) window, padded with 0 / the ignore value when smaller."""

    def __init__(self, size, ignore_index: int = 255):
        self.size = (size, size) if isinstance(size, int) else tuple(size)
        self.ignore_index = ignore_index

    def __call__(self, image, label, rng=None):
        ch, cw = self.size
        h, w = label.shape
        if h < ch or w < cw:  # pad evenly on both sides
            ph, pw = max(ch - h, 0), max(cw - w, 0)
            image = np.pad(
                to_float(image), ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0))
            )
            label = np.pad(
                np.asarray(label),
                ((ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)),
                constant_values=self.ignore_index,
            )
            h, w = label.shape
        y, x = (h - ch) // 2, (w - cw) // 2
        return image[y : y + ch, x : x + cw], label[y : y + ch, x : x + cw]

    def __repr__(self):
        return f"CenterCrop({self.size})"


class RandomHorizontalFlip:
    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, image, label, rng):
        if rng.random() < self.p:
            return image[:, ::-1], label[:, ::-1]
        return image, label

    def __repr__(self):
        return f"RandomHorizontalFlip({self.p})"


class RandomRotation:
    """Rotate about the image centre by an angle drawn uniformly from [-degrees, degrees];
    the output keeps the input size, and corners rotated in from outside are 0 in the image and
    the ignore value in the label."""

    def __init__(self, degrees: float = 10.0, ignore_index: int = 255):
        self.degrees, self.ignore_index = degrees, ignore_index

    def __call__(self, image, label, rng):
        angle = math.radians(rng.uniform(-self.degrees, self.degrees))
        if angle == 0:
            return image, label
        h, w = label.shape
        cy, cx = (h - 1) / 2, (w - 1) / 2
        oy, ox = np.meshgrid(
            np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij"
        )
        c, s = math.cos(angle), math.sin(angle)
        # inverse rotation: where in the input each output pixel comes from
        sy = cy + c * (oy - cy) - s * (ox - cx)
        sx = cx + s * (oy - cy) + c * (ox - cx)
        out_image = _bilinear(to_float(image), sy, sx, fill=0.0)
        out_label = _nearest(np.asarray(label), sy, sx, fill=self.ignore_index)
        return out_image, out_label

    def __repr__(self):
        return f"RandomRotation({self.degrees})"


class ColorJitter:
    """Random brightness, contrast and saturation factors, each uniform in [1 - a, 1 + a]; the
    label is untouched."""

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2):
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation

    def __call__(self, image, label, rng):
        image = to_float(image)
        b = rng.uniform(1 - self.brightness, 1 + self.brightness)
        c = rng.uniform(1 - self.contrast, 1 + self.contrast)
        s = rng.uniform(1 - self.saturation, 1 + self.saturation)
        image = image * b
        grey = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (H, W)
        image = (image - grey.mean()) * c + grey.mean()
        grey = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        image = (image - grey[..., None]) * s + grey[..., None]
        return np.clip(image, 0, 1).astype(np.float32), label

    def __repr__(self):
        return f"ColorJitter({self.brightness}, {self.contrast}, {self.saturation})"


class Normalize:
    """(H, W, 3) in [0, 1] -> (3, H, W) float32, (x - mean) / std per channel; labels -> int64
    (what the loss indexes with)."""

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    def __call__(self, image, label, rng=None):
        image = (to_float(image) - self.mean) / self.std
        return np.ascontiguousarray(image.transpose(2, 0, 1)), np.asarray(label, dtype=np.int64)

    def __repr__(self):
        return f"Normalize(mean={self.mean.tolist()}, std={self.std.tolist()})"


def train_transform(
    size: int,
    ignore_index: int = 255,
    scale=(0.5, 2.0),
    rotation: float = 10.0,
    jitter: float = 0.2,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
) -> Compose:
    """The PSPNet-style augmentation for real datasets: scale and crop ``size`` (one step,
    :class:`ScaledCrop`), flip, rotate,
    colour jitter, normalise. ``scale=None``, ``rotation=0`` or ``jitter=0`` leave a step out."""
    # ScaledCrop = RandomScale + RandomCrop without resampling the pixels the crop drops
    steps = [
        RandomCrop(size, ignore_index) if scale is None else ScaledCrop(size, *scale, ignore_index)
    ]
    steps.append(RandomHorizontalFlip())
    if rotation:
        steps.append(RandomRotation(rotation, ignore_index))
    if jitter:
        steps.append(ColorJitter(jitter, jitter, jitter))
    steps.append(Normalize(mean, std))
    return Compose(steps)


def eval_transform(
    size: int | None, ignore_index: int = 255, mean=IMAGENET_MEAN, std=IMAGENET_STD
) -> Compose:
    """For evaluation: shorter side to ``size`` and a central ``size`` x ``size`` crop (so images
    of different shapes batch together), normalise. ``size=None`` keeps images as they are."""
    steps = [] if size is None else [Resize(size), CenterCrop(size, ignore_index)]
    return Compose(steps + [Normalize(mean, std)])

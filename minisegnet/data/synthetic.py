"""The built-in dataset: textured shapes on textured, cluttered backgrounds, from a seed.

Nothing to download: ``SyntheticShapes("train", size=64, length=600, seed=0)`` draws the same
images and label maps on every machine (NumPy's PCG64 generator, seeded per split and chunk).

Classes (``SHAPE_CLASSES``)::

    0 background   everything else, including the clutter drawn on it
    1 disk         a filled ellipse (aspect 0.85 to 1)
    2 ring         an elliptic annulus: its hole shows whatever lies behind it
    3 square       a filled rectangle of about the disk's area
    4 cross        a plus sign (two bars)

What it takes to segment them
-----------------------------
* Colour says nothing about the class: every object draws its colour from the same
  distribution, and its texture (flat, a ramp, low-frequency blotches) from the same set.
* Figure and ground differ in texture statistics, not in colour: backgrounds are fine stripes,
  checks or grain (6 to 14 cycles per image side) in random colours, objects are smooth, and an
  object's base colour is at least ``MIN_CONTRAST`` away from the background's. A network finds
  objects from local texture contrast, but must fill their interiors and respect holes.
* The class needs shape, seen from far away (context): the middle of a large disk looks exactly
  like the middle of a large square, a ring's middle is background. Sizes (radius 0.18 to 0.30
  of the side), rotations, aspect ratios and positions vary; of one or two objects, the second
  is placed away from the first where it can be, so they overlap now and then (occlusion: the
  later one is on top) without hiding each other, and objects are cut by the image edge at times.
* Clutter (thin lines and small blobs in object-like colours, up to two per image) must be
  labelled background: telling it from objects again needs shape. Gaussian noise of a random
  strength covers each image.

Why these settings. The quality targets ask every network to learn this from scratch within
minutes on two CPU cores. Measured with the small presets (PyTorch twins, same recipe), a first
version with five shape classes (a triangle too), up to four smaller objects, flat backgrounds
and more clutter was still near 0.2 mean IoU after 30k training images: with flat backgrounds
finding an object is an "inside the outline?" problem that CNNs learn slowly, and the triangle
was confused with squares and crosses at these sizes. This version keeps the properties that
make the networks differ (boundary detail, holes, thin arms, occlusion, shape classification)
and is learnable in the time given; ``RADIUS``, ``OBJECTS``, ``CLUTTER`` and the texture settings
below make it harder.

Generation is vectorised over chunks of 64 images (NumPy array arithmetic over every pixel of
the chunk per object slot): 500 images of 64x64 take well under a second.

Geometry: pixel (y, x) has centre coordinates ((y + 0.5) / S, (x + 0.5) / S) in [0, 1]. An
object with centre (cy, cx), radius r, aspect a and angle t sees the pixel in its own frame as

    u = ( cos t * (x - cx) + sin t * (y - cy)) / r
    v = (-sin t * (x - cx) + cos t * (y - cy)) / (a * r)

and is a fixed region of the (u, v) plane (the unit disk, the square |u|, |v| <= 0.85, ...).
"""

from __future__ import annotations

import numpy as np

from minisegnet.data.palette import voc_palette

SHAPE_CLASSES = ("background", "disk", "ring", "square", "cross")
NUM_CLASSES = len(SHAPE_CLASSES)
PALETTE = voc_palette(NUM_CLASSES)

_SPLIT_IDS = {"train": 0, "val": 1, "test": 2}

# Generation parameters (relative to the image side S).
RADIUS = (0.18, 0.30)  # object radius / S
ASPECT = (0.85, 1.0)  # minor / major axis
OBJECTS = (1, 2)  # objects per image, inclusive
CENTRE = (0.25, 0.75)  # range of object centres (fraction of the side)
PLACEMENT_TRIES = 4  # candidate centres per object (the one farthest from the others is kept)
CLUTTER = (0, 2)  # background clutter items per image, inclusive
NOISE = (0.0, 0.03)  # standard deviation of the Gaussian pixel noise (images in [0, 1])
RING_HOLE = (0.45, 0.62)  # ring: inner radius / outer radius
CROSS_ARM = 0.34  # cross: half the width of an arm / its half-length
MIN_CONTRAST = 0.4  # least RGB distance between an object's base colour and the background's
# Texture kinds: 0 flat, 1 stripes, 2 checks, 3 ramp, 4 blotches, 5 grain; contrast: the
# standard deviation of a texture's second colour around its first.
BACKGROUND_TEXTURES, BACKGROUND_CONTRAST, BACKGROUND_FREQ = (1, 2, 5), 0.25, (6, 14)
OBJECT_TEXTURES, OBJECT_CONTRAST = (0, 3, 4), 0.25
_CHUNK = 64  # images generated at a time (bounds the memory used)


# --------------------------------------------------------------------------- shapes
# Each takes the object-frame coordinates u, v (arrays of one shape) and the per-pixel hole
# ratio (for the ring) and returns the boolean inside mask.


def _disk(u, v, hole):
    return u * u + v * v <= 1.0


def _ring(u, v, hole):
    r2 = u * u + v * v
    return (r2 <= 1.0) & (r2 >= hole * hole)


def _square(u, v, hole):
    return (np.abs(u) <= 0.85) & (np.abs(v) <= 0.85)  # 0.85: about the disk's area


def _cross(u, v, hole):
    au, av = np.abs(u), np.abs(v)
    return ((au <= CROSS_ARM) & (av <= 1.0)) | ((av <= CROSS_ARM) & (au <= 1.0))


_SHAPES = {1: _disk, 2: _ring, 3: _square, 4: _cross}


# --------------------------------------------------------------------------- textures


def _texture(rng, n, yy, xx, kinds, contrast, freq_range=(3, 10)):
    """n random textures: (n, S, S, 3) float32 colours in [0, 1] and each one's base colour.

    A texture mixes two colours c1, c2 with a pattern p in [0, 1]: 0 flat (p = 0), 1 stripes,
    2 checks (``freq_range`` cycles per image side), 3 a linear ramp, 4 blotches (a sum of
    three random plane waves of 1 to 4 cycles), 5 grain (p uniform at random per pixel).
    """
    f32 = np.float32
    kind = np.asarray(kinds)[rng.integers(0, len(kinds), n)]  # (n,)
    c1 = rng.random((n, 3), dtype=f32)
    c2 = np.clip(c1 + rng.normal(0, contrast, (n, 3)).astype(f32), 0, 1)
    theta = rng.uniform(0, np.pi, n).astype(f32)[:, None, None]
    freq = rng.uniform(*freq_range, n).astype(f32)[:, None, None]
    phase = rng.uniform(0, 2 * np.pi, n).astype(f32)[:, None, None]
    waves = rng.uniform(0, 1, (3, 3, n)).astype(f32)[..., None, None]  # blotch parameters
    pattern = np.zeros((n,) + np.broadcast_shapes(yy.shape, xx.shape)[1:], dtype=f32)
    for k in (1, 2, 3, 4, 5):  # each pattern computed only for the images that use it
        sel = np.flatnonzero(kind == k)
        if not len(sel):
            continue
        t, f, ph = theta[sel], freq[sel], phase[sel]
        along = np.cos(t) * xx + np.sin(t) * yy  # (m, S, S)
        if k == 1:  # stripes
            p = 0.5 + 0.5 * np.sin(2 * np.pi * f * along + ph)
        elif k == 2:  # checks
            across = -np.sin(t) * xx + np.cos(t) * yy
            p = np.sin(2 * np.pi * f * along + ph) * np.sin(2 * np.pi * f * across) > 0
        elif k == 3:  # ramp from 0 to 1 across the image
            low = along.min(axis=(1, 2), keepdims=True)
            p = (along - low) / np.maximum(along.max(axis=(1, 2), keepdims=True) - low, 1e-6)
        elif k == 5:  # grain
            p = rng.random((len(sel),) + pattern.shape[1:], dtype=f32)
        else:  # blotches: three plane waves of low frequency
            p = 0.5
            for w in range(3):
                wt, wf, wp = (
                    2 * np.pi * waves[w, 0, sel],
                    1 + 3 * waves[w, 1, sel],
                    2 * np.pi * waves[w, 2, sel],
                )
                p = p + np.sin(2 * np.pi * wf * (np.cos(wt) * xx + np.sin(wt) * yy) + wp) / 6
        pattern[sel] = p
    colours = c1[:, None, None, :] + (c2 - c1)[:, None, None, :] * pattern[..., None]
    return colours, c1


def _contrasting(rng, base):
    """Colours at least MIN_CONTRAST (RGB distance) away from each row of ``base`` (n, 3)."""
    n = len(base)
    colour = rng.random((n, 3), dtype=np.float32)
    d = colour - base
    norm = np.linalg.norm(d, axis=1, keepdims=True)
    direction = np.where(norm > 1e-3, d / np.maximum(norm, 1e-6), np.float32(1 / np.sqrt(3)))
    pushed = base + direction * np.maximum(norm, MIN_CONTRAST + rng.uniform(0, 0.3, (n, 1)))
    pushed = np.where(norm < MIN_CONTRAST, pushed, colour)
    # Clipping can bring a colour back near the base; mirror it to the other side then.
    clipped = np.clip(pushed, 0, 1)
    mirrored = np.clip(base - direction * MIN_CONTRAST * 1.5, 0, 1)
    close = np.linalg.norm(clipped - base, axis=1, keepdims=True) < MIN_CONTRAST * 0.8
    return np.where(close, mirrored, clipped).astype(np.float32)


# --------------------------------------------------------------------------- clutter


def _uniform(rng, low, high, size):
    return rng.uniform(low, high, size).astype(np.float32)


def _segment_mask(yy, xx, a, b, width):
    """Pixels within width/2 of the segment a-b; a, b (n, 2) as (y, x); width (n,)."""
    ay, ax = a[:, 0, None, None], a[:, 1, None, None]
    dy, dx = (b - a)[:, 0, None, None], (b - a)[:, 1, None, None]
    length2 = np.maximum(dy * dy + dx * dx, 1e-9)
    t = np.clip(((yy - ay) * dy + (xx - ax) * dx) / length2, 0, 1)
    py, px = ay + t * dy - yy, ax + t * dx - xx
    return py * py + px * px <= (width[:, None, None] / 2) ** 2


def _clutter(rng, n, yy, xx):
    """One clutter item per image: a thin line (60%) or a small blob. (n, S, S) mask."""
    is_line = rng.random(n) < 0.6
    a = _uniform(rng, 0, 1, (n, 2))
    angle = _uniform(rng, 0, 2 * np.pi, n)
    length = _uniform(rng, 0.15, 0.5, n)
    b = a + length[:, None] * np.stack([np.sin(angle), np.cos(angle)], axis=1)
    width = _uniform(rng, 0.012, 0.03, n)
    radius = _uniform(rng, 0.02, 0.05, n)[:, None, None]
    line = _segment_mask(yy, xx, a, b, width)
    blob = (yy - a[:, 0, None, None]) ** 2 + (xx - a[:, 1, None, None]) ** 2 <= radius**2
    return np.where(is_line[:, None, None], line, blob)


# --------------------------------------------------------------------------- generation


def generate(n: int, size: int = 64, seed: int = 0, stream: int = 0):
    """``n`` images and label maps of ``size`` x ``size`` pixels, determined by ``seed`` and
    ``stream`` (the split: 0 train, 1 val, 2 test).

    Returns (images (n, S, S, 3) uint8, labels (n, S, S) uint8 with values 0..NUM_CLASSES-1).
    """
    if not (isinstance(n, (int, np.integer)) and n >= 0):
        raise ValueError(f"n must be a non-negative integer, got {n!r}")
    if not (isinstance(seed, (int, np.integer)) and seed >= 0):
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not (isinstance(size, (int, np.integer)) and size >= 8):
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    labels = np.empty((n, size, size), dtype=np.uint8)
    coords = (np.arange(size, dtype=np.float32) + 0.5) / size
    yy, xx = coords[None, :, None], coords[None, None, :]  # broadcast to (n, S, S)
    # One independent stream per chunk of _CHUNK images: image i is a pure function of
    # (seed, stream, i), whatever n is.
    for start in range(0, n, _CHUNK):
        rng = np.random.default_rng([seed, stream, start // _CHUNK])
        img, lab = _generate_chunk(rng, _CHUNK, yy, xx)
        m = min(_CHUNK, n - start)
        images[start : start + m] = img[:m]
        labels[start : start + m] = lab[:m]
    return images, labels


def _generate_chunk(rng, n, yy, xx):
    image, bg_base = _texture(
        rng, n, yy, xx, BACKGROUND_TEXTURES, BACKGROUND_CONTRAST, BACKGROUND_FREQ
    )
    label = np.zeros(image.shape[:3], dtype=np.uint8)  # (n, S, S)

    n_clutter = rng.integers(CLUTTER[0], CLUTTER[1] + 1, n)
    for k in range(CLUTTER[1]):
        mask = _clutter(rng, n, yy, xx) & (k < n_clutter)[:, None, None]
        colour = _contrasting(rng, bg_base)
        image = np.where(mask[..., None], colour[:, None, None, :], image)

    n_objects = rng.integers(OBJECTS[0], OBJECTS[1] + 1, n)
    placed = []  # (cy, cx, radius) of the objects drawn so far
    for k in range(OBJECTS[1]):
        present = k < n_objects
        cls = rng.integers(1, NUM_CLASSES, n)
        radius = _uniform(rng, *RADIUS, n)
        # PLACEMENT_TRIES candidate centres; keep the one farthest (edge to edge) from the
        # objects already there: objects overlap now and then, but rarely hide each other.
        ty = _uniform(rng, *CENTRE, (PLACEMENT_TRIES, n))
        tx = _uniform(rng, *CENTRE, (PLACEMENT_TRIES, n))
        gap = np.full((PLACEMENT_TRIES, n), np.inf, dtype=np.float32)
        for py, px, pr in placed:
            gap = np.minimum(gap, np.hypot(ty - py, tx - px) - pr - radius)
        best = gap.argmax(axis=0)
        cy, cx = ty[best, np.arange(n)], tx[best, np.arange(n)]
        placed.append((cy, cx, radius))
        aspect = _uniform(rng, *ASPECT, n)
        theta = _uniform(rng, 0, 2 * np.pi, n)
        hole = _uniform(rng, *RING_HOLE, n)
        tex, tex_base = _texture(rng, n, yy, xx, OBJECT_TEXTURES, OBJECT_CONTRAST)
        # Shift the object's texture so its base colour contrasts with the background's.
        base = _contrasting(rng, bg_base)
        tex = np.clip(tex + (base - tex_base)[:, None, None, :], 0, 1)

        inside = np.zeros(label.shape, dtype=bool)  # (n, S, S)
        for class_id, shape in _SHAPES.items():
            sel = np.flatnonzero(present & (cls == class_id))
            if not len(sel):
                continue
            c, s = np.cos(theta[sel])[:, None, None], np.sin(theta[sel])[:, None, None]
            dx, dy = xx - cx[sel, None, None], yy - cy[sel, None, None]
            r = radius[sel, None, None]
            u = (c * dx + s * dy) / r  # (m, S, S)
            v = (-s * dx + c * dy) / (aspect[sel, None, None] * r)
            inside[sel] = shape(u, v, hole[sel, None, None])
        image = np.where(inside[..., None], tex, image)
        label = np.where(inside, cls[:, None, None].astype(np.uint8), label)

    sigma = _uniform(rng, *NOISE, n)[:, None, None, None]
    image = image + sigma * rng.standard_normal(image.shape, dtype=np.float32)
    image = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    return image, label


class SyntheticShapes:
    """The built-in dataset as a dataset object: ``ds[i] -> (image (S, S, 3) uint8, label
    (S, S) uint8)``, ``len(ds)``, ``class_names``, ``num_classes``, ``palette``, ``ignore_index``.

    The splits draw from independent streams: ``seed`` and the split name fix every image.
    """

    class_names = SHAPE_CLASSES
    num_classes = NUM_CLASSES
    palette = PALETTE
    ignore_index = 255

    def __init__(self, split: str = "train", size: int = 64, length: int = 600, seed: int = 0):
        if split not in _SPLIT_IDS:
            raise ValueError(f"split must be one of {sorted(_SPLIT_IDS)}, got {split!r}")
        self.split, self.size, self.seed = split, size, seed
        self.images, self.labels = generate(length, size, seed=seed, stream=_SPLIT_IDS[split])
        self.name = f"builtin/{split}"

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.images[index], self.labels[index]

    def __repr__(self) -> str:
        return f"SyntheticShapes(split={self.split!r}, size={self.size}, length={len(self)}, seed={self.seed})"

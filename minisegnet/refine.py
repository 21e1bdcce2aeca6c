"""Post-processing a network's prediction with the fully connected CRF (``ops/crf.py``), as
DeepLab v1 does: ``minisegnet predict --crf`` and ``minisegnet evaluate --crf``.

    scores (N, L, H, W) --softmax--> P --dense CRF on the image--> Q --argmax--> labels (N, H, W)

The CRF needs the image's colours in 0..255 units (theta_beta is in those units). The CLI hands
the network ImageNet-normalised input, so the colours are recovered by inverting
``transforms.Normalize``: rgb = 255 (x std + mean).

The CLI side is ``add_arguments(parser)`` (the --crf flag and the kernel parameters) and
``labels_fn(args, plain)`` (predict: ``plain`` without --crf, else the CRF-refined labels with
the same signature) and ``predict_fn(args)`` (evaluate: None without --crf, else the refined
labels handed to ``evaluation.evaluate_dataset``).
"""

from __future__ import annotations

import argparse

import numpy as np

from minisegnet.options import finite_at_least, number_type

# Only light imports up here: the CLI builds its parser with add_arguments on every start, and
# the CRF's Numba kernels load only when --crf is used.

__all__ = ["add_arguments", "params_from_args", "crf_labels", "labels_fn", "predict_fn"]


_WIDTH = number_type(float, "a kernel width > 0", finite_at_least(0, strict=True))
_WEIGHT = number_type(float, "a kernel weight >= 0", finite_at_least(0))
_ITERATIONS = number_type(int, "an integer >= 0", finite_at_least(0))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--crf and its parameters (unset ones take ``ops.crf.CRFParams``'s defaults)."""
    g = parser.add_argument_group(
        "fully connected CRF (post-processing; defaults w1 10, theta-alpha 80, theta-beta 13, "
        "w2 3, theta-gamma 3, iterations 10)"
    )
    g.add_argument("--crf", action="store_true", help="refine with the dense CRF (mean field)")
    for name, kind, what in (
        ("w1", _WEIGHT, "appearance kernel weight"),
        ("theta-alpha", _WIDTH, "appearance kernel width in pixels"),
        ("theta-beta", _WIDTH, "appearance kernel width in colour (0..255)"),
        ("w2", _WEIGHT, "smoothness kernel weight"),
        ("theta-gamma", _WIDTH, "smoothness kernel width in pixels"),
    ):
        g.add_argument(f"--crf-{name}", type=kind, help=what)
    g.add_argument("--crf-iterations", type=_ITERATIONS, help="mean-field iterations")


def params_from_args(args):
    """``ops.crf.CRFParams`` from the CLI options; a bad value is a ConfigError (a ValueError)
    naming the option."""
    from minisegnet.ops import crf as crf_ops
    from minisegnet.options import ConfigError

    names = ("w1", "theta_alpha", "theta_beta", "w2", "theta_gamma", "iterations")
    given = {
        n: getattr(args, f"crf_{n}") for n in names if getattr(args, f"crf_{n}", None) is not None
    }
    try:
        return crf_ops.CRFParams(**given)
    except (TypeError, ValueError) as error:
        # "CRF: theta_alpha ..." -> "--crf-theta-alpha: ..."
        message = str(error).removeprefix("CRF: ")
        name, _, rest = message.partition(" ")
        raise ConfigError(f"--crf-{name.replace('_', '-')}: {rest}") from None


def _rgb(images):
    """ImageNet-normalised (N, 3, H, W) -> (N, H, W, 3) float32 colours in 0..255."""
    from minisegnet.arrays import to_host
    from minisegnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD

    mean = np.asarray(IMAGENET_MEAN, np.float32)
    std = np.asarray(IMAGENET_STD, np.float32)
    rgb = to_host(images).transpose(0, 2, 3, 1) * std + mean
    return np.ascontiguousarray(np.clip(rgb * 255.0, 0.0, 255.0), np.float32)


def crf_labels(model, images, params, input_scale: float = 1.0) -> np.ndarray:
    """The CRF-refined argmax: images (N, 3, H, W) normalised -> (N, H, W) int64 (host);
    ``params`` an ``ops.crf.CRFParams``; the network's scores at full resolution
    (``inference.full_frame_scores``, which resizes by ``input_scale`` around the network)."""
    from minisegnet.arrays import to_host
    from minisegnet.inference import full_frame_scores
    from minisegnet.ops import crf as crf_ops
    from minisegnet.ops.softmax import softmax_ref

    scores = to_host(full_frame_scores(model, images, input_scale))  # full frames, as scored
    probabilities = softmax_ref(scores.astype(np.float32), axis=1)
    rgb = _rgb(images)
    refined = [crf_ops.dense_crf(rgb[i], probabilities[i], params) for i in range(len(rgb))]
    return np.stack([q.argmax(0) for q in refined]).astype(np.int64)


def labels_fn(args, plain, input_scale: float = 1.0):
    """``plain`` (inference.predict_labels) without --crf, else the CRF-refined version."""
    if not getattr(args, "crf", False):
        return plain
    params = params_from_args(args)
    return lambda model, images: crf_labels(model, images, params, input_scale)


def predict_fn(args):
    """None without --crf (``evaluation.evaluate_dataset`` then uses its plain prediction),
    else the CRF-refined labels with the options: ``f(model, images, input_scale=1.0)``."""
    if not getattr(args, "crf", False):
        return None
    params = params_from_args(args)
    return lambda model, images, input_scale=1.0: crf_labels(model, images, params, input_scale)

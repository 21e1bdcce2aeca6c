"""``minisegnet predict``: segment your own images with a trained checkpoint.

Each image is read as it is (``--size N`` resizes its shorter side to N first), normalised as
in training, segmented on the chosen backend at the scale the network was trained at
(``--input-scale``, default the checkpoint's: the scores are resized back to the image) (``--crf``: refined by the dense CRF, see
``refine.py``), and the labels are brought back to the image's own size (nearest neighbour)
before the mask, overlay and figure are written (``legend.py``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from minisegnet import backend, refine
from minisegnet.arrays import to_host
from minisegnet.data import read_image, transforms
from minisegnet.evaluation import input_scale_of
from minisegnet.inference import load_checkpoint, predict_full, size_checked
from minisegnet.legend import write_prediction
from minisegnet.options import (
    ConfigError,
    backend_name,
    check_pixels,
    configure_threads,
    output_folder,
    use_backend,
)
from minisegnet.threads import tune_threads

__all__ = ["command"]


def command(args) -> int:
    """``minisegnet predict``: for each image of ``args.images`` the checkpoint's prediction,
    written as a palette mask, an overlay and a figure (``legend.write_prediction``) into
    ``--out``; one line per image with the three largest classes."""
    configure_threads(args)
    tune_threads()
    backend_name(args.backend)
    model, info = load_checkpoint(args)
    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        raise ConfigError(f"image(s) not found: {', '.join(missing)}")
    out = output_folder(args.out, f"--out {args.out}")
    normalize = transforms.Normalize()
    name = model.config["name"]
    scale = input_scale_of(args, info["config"])

    def plain(model, images):  # at the scale the network was trained at, back to full size
        return to_host(predict_full(model, images, input_scale=scale))

    with use_backend(args.backend or (info["config"].backend if info["config"] else "numba")):
        model.to(backend.current().device)
        for path in args.images:
            image = read_image(path)  # (H, W, 3) uint8
            h, w = image.shape[:2]
            work = image
            if args.size:
                scale = args.size / min(h, w)  # as transforms.Resize computes it
                check_pixels(round(w * scale), round(h * scale), f"--size {args.size} on {path}")
                work, _ = transforms.Resize(args.size)(image, np.zeros((h, w), np.uint8))
                side, what, hint = args.size, f"--size {args.size}", ""
            else:
                side, what = min(h, w), f"image {path} ({w}x{h} pixels)"
                hint = " (--size {needed} enlarges it)"
            if scale != 1:  # the network sees the image resized by the scale it was trained at
                side, what = max(1, round(side * scale)), f"{what} at --input-scale {scale:g}"
            size_check = size_checked(model, name, side, what, hint)
            x, _ = normalize(work, np.zeros(work.shape[:2], np.uint8))
            with size_check:
                pred = refine.labels_fn(args, plain, scale)(model, x[None])[0]  # (h', w')
            if pred.shape != (h, w):
                _, pred = transforms.resize(None, pred, h, w)  # nearest, back to the image
            stem = Path(path).stem
            written = write_prediction(out, stem, image, pred, info["palette"], info["class_names"])
            counts = np.bincount(pred.reshape(-1), minlength=len(info["class_names"]))
            top = [
                f"{info['class_names'][k]} {100 * counts[k] / pred.size:.0f}%"
                for k in np.argsort(-counts)[:3]
                if counts[k]
            ]
            print(f"{path}: {', '.join(str(p) for p in written.values())} ({', '.join(top)})")
    return 0

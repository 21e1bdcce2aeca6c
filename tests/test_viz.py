"""The training pictures: valid PNGs of the expected size, written without touching pyplot."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from PIL import Image

from minisegnet import viz
from minisegnet.data.palette import voc_palette


def test_curves_and_predictions_are_pngs(tmp_path):
    history = [
        {"epoch": e, "train_loss": 1.0 / e, "val": {"miou": 0.2 * e, "pixel_acc": 0.5 + 0.1 * e}}
        for e in (1, 2, 3)
    ]
    path = viz.plot_curves(history, tmp_path / "sub" / "curves.png")
    assert path.is_file() and Image.open(path).size == (1000, 400)  # 10 x 4 in at 100 dpi

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 16, 16, 3), dtype=np.uint8)
    labels = rng.integers(0, 3, (2, 16, 16))
    labels[0, 0, 0] = 255  # ignored pixels are drawn too
    preds = rng.integers(0, 3, (2, 16, 16))
    path = viz.plot_predictions(
        images, labels, preds, voc_palette(3), tmp_path / "p.png", class_names=["a", "b", "c"]
    )
    assert Image.open(path).size == (750, 500)  # 7.5 x (2.5 * 2) in
    assert not list(tmp_path.glob(".*tmp*")), "the temporary file was renamed into place"


def test_importing_viz_leaves_the_pyplot_backend_alone():
    """A notebook's inline backend must survive ``minisegnet.viz`` (no ``matplotlib.use``)."""
    code = (
        "import matplotlib; matplotlib.use('svg'); import minisegnet.viz, minisegnet.train; "
        "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)

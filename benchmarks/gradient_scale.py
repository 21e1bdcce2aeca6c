"""How hard each layer is pushed at the start of training: |dL/dW| / |W| for every convolution.

    python benchmarks/gradient_scale.py                 # SegNet-Basic, SegNet, DeconvNet at 64x64
    python benchmarks/gradient_scale.py --models segnet deconvnet --seeds 5

What it measures. One batch of the built-in training data (8 x 3 x 64 x 64 by default) goes
forward and backward through a freshly initialised small preset, in training mode; for each
convolution weight W the script prints |dL/dW| / |W| (Frobenius norms), for a few seeds of the
initialisation.

Why that number. A convolution followed by batch norm gives the same output for W and for c*W
(c > 0), so only W's direction matters, and an SGD step turns that direction by about
lr * |dL/dW| / |W| radians. The ratio is the layer's effective learning rate: with one global
lr, a layer whose ratio is ten times another's learns ten times faster, or is ten times noisier.

What it shows. In a deep batch-normalised network without shortcuts the ratio grows from the
loss back to the first layers (each BN + ReLU + conv on the way back amplifies the gradient a
little; Yang et al., "A mean field theory of batch normalization", ICLR 2019). Measured on the
2-core machine, 8 x 3 x 64 x 64, seeds 0-2, the first two layers' ratio over the median of the
second half's (the decoder's):

    SegNet-Basic   0.7  (8 batch-normalised convolutions, 7x7)
    SegNet        10    (26 of them, 3x3)
    DeconvNet     27    (the same + fc6, fc7 and fc6_deconv: three more BN layers at pool5's 2x2)

SegNet-Basic, the shallow one, is the network that learns the built-in data fastest.

DeconvNet's encoder starts three times hotter, relative to its decoder, than SegNet's, and the
difference is the fc block: with fc6/fc7/fc6_deconv bypassed (pool5 straight into unpool5, a
one-off experiment) the ratio is 10, as SegNet's, and that network trained like SegNet (0.53
mean IoU after 4 epochs, against 0.25-0.43 with the block, 64x64, lr 0.1). (The paper did not
train its encoder from scratch but started it from VGG16 trained on ImageNet.)

What to do about it: ``nn.balance_init_`` (``minisegnet train --balance-init``) scales the hot
layers' weights up until none starts above the median step, which leaves the function unchanged.
In ``results/accuracy.md`` it took SegNet from 0.84 to 0.92 mean IoU and DeconvNet from 0.65 to
0.91 in the same 15-minute budget.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import minisegnet as ms  # noqa: E402
import minisegnet.functional as F  # noqa: E402
from minisegnet import data, models  # noqa: E402
from minisegnet.data import transforms  # noqa: E402
from minisegnet.nn import Conv2d, ConvTranspose2d  # noqa: E402
from minisegnet.nn.balance import effective_steps  # noqa: E402


def training_batch(n: int, size: int, seed: int = 0):
    """The first n images of the built-in training split, normalised: x (n, 3, size, size) and
    labels (n, size, size)."""
    dataset = data.open_dataset("builtin", "train", size=size, length=n, seed=seed)
    normalise = transforms.Normalize()
    pairs = [normalise(*dataset[i]) for i in range(n)]
    x = np.stack([image for image, _ in pairs]).astype(np.float32)
    y = np.stack([label for _, label in pairs]).astype(np.int64)
    return ms.tensor(x), y


def layer_ratios(model, x, y) -> dict[str, float]:
    """|dL/dW| / |W| of every convolution (every layer with a 4-D weight, batch-normalised or
    not), by layer name, in order, after one backward pass of the cross-entropy of model(x)
    against y in training mode (``nn.balance.effective_steps`` does the measuring)."""

    def loss():
        scores = model(x)
        if isinstance(scores, tuple):  # PSPNet in training mode: (main, auxiliary)
            scores = scores[0]
        return F.cross_entropy(scores, y)

    model.train()
    convs = [name for name, m in model.named_modules() if isinstance(m, (Conv2d, ConvTranspose2d))]
    return effective_steps(model, loss, convs)


def first_over_decoder(ratios: dict[str, float]) -> float:
    """Mean of the first two layers' ratios over the median of the second half's (the decoder
    of an encoder-decoder): how much hotter the first layers start."""
    values = list(ratios.values())
    return float(np.mean(values[:2]) / np.median(values[len(values) // 2 :]))


def measure(name: str, seeds, batch: int, size: int) -> dict:
    x, y = training_batch(batch, size)
    runs = []
    for seed in seeds:
        model = models.build(name, 5, preset="small", seed=seed)
        runs.append(layer_ratios(model, x, y))
    layers = list(runs[0])
    return {
        "model": name,
        "batch": batch,
        "size": size,
        "seeds": list(seeds),
        "layers": {k: [r[k] for r in runs] for k in layers},
        "first_over_decoder": [first_over_decoder(r) for r in runs],
    }


def table(result: dict) -> str:
    lines = [
        f"### {result['model']} ({result['batch']} x 3 x {result['size']} x {result['size']}, "
        f"seeds {', '.join(map(str, result['seeds']))})",
        "",
        "| layer | \\|dL/dW\\| / \\|W\\| (mean over seeds) |",
        "| --- | ---: |",
    ]
    for layer, values in result["layers"].items():
        lines.append(f"| {layer} | {np.mean(values):.3g} |")
    ratios = result["first_over_decoder"]
    lines += [
        "",
        f"First two layers over the second half's median: {np.mean(ratios):.1f} "
        f"({', '.join(f'{r:.1f}' for r in ratios)}).",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["segnet-basic", "segnet", "deconvnet"])
    parser.add_argument("--seeds", type=int, default=3, help="initialisations to average")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--out", type=Path, default=HERE / "results", help="folder of the report")
    args = parser.parse_args(argv)
    results = [measure(m, range(args.seeds), args.batch_size, args.size) for m in args.models]
    report = "# Gradient scale per layer at initialisation\n\nWritten by " + (
        "`benchmarks/gradient_scale.py`; see its docstring for what the ratio means.\n\n"
    )
    report += "\n".join(table(r) for r in results)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gradient_scale.md").write_text(report)
    (args.out / "gradient_scale.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

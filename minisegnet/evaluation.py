"""Evaluation as the papers do it: whole frames, one confusion matrix over the split.

    from minisegnet.evaluation import evaluate_dataset, format_report
    result = evaluate_dataset(model, CamVid(root, "test"), boundary_f1=True)
    print(format_report(result, CamVid.class_names))

The protocol (SegNet, PAMI 2017, Table 1-2; FCN, CVPR 2015, section 5)
---------------------------------------------------------------------
* Every frame is scored at its **full resolution**: no resize, no crop (``size=N`` asks for
  the old quick check instead: shorter side to N, central N x N crop).
* **One confusion matrix** over all the pixels of the split (``minisegnet.metrics``), never an
  average of per-image scores; void pixels (CamVid's 11, mapped to 255) are left out.
* From it: **global accuracy** (correct pixels / labelled pixels), **class-average accuracy**
  (mean over classes of the per-class recall), **mIoU**, **frequency-weighted IoU**, and per
  class IoU and accuracy. SegNet's **boundary F1** (``boundary_f1.py``) is optional: it costs a
  few dilations per class and frame.
* Networks that need a side divisible by 2^k declare it as ``input_multiple`` (a class
  attribute; default 1): frames are padded at the bottom and right to the next multiple (with
  0, the mean colour after normalisation), and the scores are cropped back, so every original
  pixel is scored once and no padded pixel is. The networks here all take any size (ceil
  pooling with unpooling to the recorded size; FCN's crops; PSPNet's final resize), so their
  ``input_multiple`` is 1; a network that adds the requirement only sets the attribute.

Frames are read and normalised in a pool of threads (``workers``), a few batches ahead of the
network: decoding a PNG releases the GIL, and threads, unlike forked processes, are safe next to
Numba's OpenMP pool. Batches of more than one frame need frames of one size; a frame of another
size is an error naming it (give ``batch_size=1`` for datasets of mixed sizes such as VOC).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from minisegnet import metrics
from minisegnet.arrays import array_module, to_host
from minisegnet.data.errors import DataError
from minisegnet.data.transforms import CenterCrop, Compose, Normalize, Resize
from minisegnet.progress import ProgressLines

__all__ = [
    "evaluate_dataset", "format_report", "predict_full", "pad_to_multiple", "input_multiple",
    "frame_transform",
]  # fmt: skip


def input_multiple(model) -> int:
    """The side multiple ``model`` needs (its class attribute ``input_multiple``; default 1)."""
    return int(getattr(model, "input_multiple", 1) or 1)


def pad_to_multiple(images, multiple: int):
    """(N, C, H, W) -> (N, C, H', W') with H', W' the next multiples of ``multiple``, zeros
    added at the bottom and right (same array module as ``images``)."""
    n, c, h, w = images.shape
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return images
    xp = array_module(images)
    return xp.pad(images, ((0, 0), (0, 0), (0, ph), (0, pw)))


def predict_full(model, images):
    """Class of every pixel of (N, 3, H, W) ``images`` -> (N, H, W) int64 on the backend's
    device, padded to the network's ``input_multiple`` and cropped back to (H, W)."""
    from minisegnet.train import _labels_on_device

    h, w = images.shape[-2:]
    labels = _labels_on_device(model, pad_to_multiple(images, input_multiple(model)))
    return labels[:, :h, :w]


def frame_transform(size: int | None = None, ignore_index: int = 255) -> Compose:
    """Full frames (``size=None``), or shorter side to ``size`` and a central square crop."""
    steps = [] if size is None else [Resize(size), CenterCrop(size, ignore_index)]
    return Compose(steps + [Normalize()])


def _load(dataset, transform, i):
    image, label = dataset[i]
    x, y = transform(image, label, None)
    return x, y


def _frame_name(dataset, i) -> str:
    items = getattr(dataset, "items", None)
    return str(items[i][0]) if items is not None else f"image {i} of {dataset!r}"


def _batches(dataset, transform, batch_size: int, workers: int):
    """(images (N, 3, H, W), labels (N, H, W), first index) for the whole dataset in order;
    frames load in ``workers`` threads, up to two batches ahead."""
    n = len(dataset)
    first_shape = None
    with ThreadPoolExecutor(max_workers=max(workers, 1), thread_name_prefix="eval-load") as pool:
        pending = [pool.submit(_load, dataset, transform, i) for i in range(min(n, 2 * batch_size))]
        nxt = len(pending)
        for start in range(0, n, batch_size):
            xs, ys = [], []
            for i in range(start, min(start + batch_size, n)):
                x, y = pending.pop(0).result()
                if nxt < n:
                    pending.append(pool.submit(_load, dataset, transform, nxt))
                    nxt += 1
                if first_shape is None:
                    first_shape = y.shape
                elif y.shape != first_shape and batch_size > 1:
                    raise DataError(
                        f"{_frame_name(dataset, i)} is {y.shape[1]}x{y.shape[0]} (WxH) but the "
                        f"split's first frame {_frame_name(dataset, 0)} is "
                        f"{first_shape[1]}x{first_shape[0]}: frames of one batch must share a "
                        "size; use --batch-size 1 (or --size N to resize and crop)"
                    )
                xs.append(x)
                ys.append(y)
            yield np.stack(xs), np.stack(ys).astype(np.int64, copy=False), start


def evaluate_dataset(
    model,
    dataset,
    *,
    size: int | None = None,
    batch_size: int = 1,
    boundary_f1: bool = False,
    predict=None,
    workers: int = 2,
    progress: bool = False,
    desc: str = "evaluating",
    on_batch=None,
    log=None,
    interval: float = 30.0,
) -> dict:
    """Score ``model`` (already on the backend's device, any mode) on every frame of
    ``dataset``; see the module docstring for the protocol.

    Returns ``metrics.scores`` of the split's confusion matrix (``pixel_acc`` = global accuracy,
    ``mean_acc`` = class-average accuracy, ``miou``, ``fwiou``, per-class ``iou`` and ``acc``)
    plus ``confusion`` (K, K), ``images``, ``frame_size`` (H, W of the first frame), ``seconds``,
    and with ``boundary_f1`` also ``bf`` and ``bf_per_class``. ``on_batch(done, total)`` is
    called after each batch; ``predict(model, images) -> labels`` replaces ``predict_full``
    (``minisegnet.refine``'s CRF-refined labels, for example). Without ``progress``, ``log`` (e.g. ``print``) receives a line
    about every ``interval`` seconds (``minisegnet.progress``)."""
    from tqdm import tqdm

    from minisegnet.boundary_f1 import BoundaryF1Meter

    k, ignore = dataset.num_classes, dataset.ignore_index
    meter = metrics.ConfusionMeter(k, ignore)
    bf = BoundaryF1Meter(k, ignore) if boundary_f1 else None
    transform = frame_transform(size, ignore)
    total, t0, frame_size = len(dataset), time.perf_counter(), None
    lines = None if progress or log is None else ProgressLines(total, desc, interval, log)
    with tqdm(total=total, desc=desc, unit="img", leave=False, disable=not progress) as bar:
        for images, labels, _ in _batches(dataset, transform, batch_size, workers):
            frame_size = frame_size or tuple(labels.shape[-2:])
            pred = (predict or predict_full)(model, images)
            meter.add(pred, labels)  # counted where pred lives: one (K, K) copy per split
            if bf is not None:
                bf.add(to_host(pred), labels)
            bar.update(len(images))
            if lines is not None:  # counted in images: batches may be of one frame
                lines.update(bar.n, bar.n)
            if on_batch is not None:
                on_batch(bar.n, total)
    result = meter.scores()
    result["confusion"] = meter.matrix
    result["images"] = total
    result["frame_size"] = frame_size
    result["seconds"] = time.perf_counter() - t0
    if bf is not None:
        result.update(bf.scores())
    return result


def _pct(x) -> str:
    return "n/a" if x is None or x != x else f"{100 * float(x):.1f}"


def format_report(result: dict, class_names) -> str:
    """Markdown: the summary scores in the papers' names, then one row per class."""
    has_bf = "bf" in result
    lines = [
        "| metric | value (%) |",
        "| --- | ---: |",
        f"| global accuracy | {_pct(result['pixel_acc'])} |",
        f"| class-average accuracy | {_pct(result['mean_acc'])} |",
        f"| mean IoU | {_pct(result['miou'])} |",
        f"| frequency-weighted IoU | {_pct(result['fwiou'])} |",
    ]
    if has_bf:
        lines.append(f"| boundary F1 (BF) | {_pct(result['bf'])} |")
    head = "| class | IoU (%) | accuracy (%) |" + (" BF (%) |" if has_bf else "")
    lines += ["", head, "| --- | ---: | ---: |" + (" ---: |" if has_bf else "")]
    for c, name in enumerate(class_names):
        row = f"| {name} | {_pct(result['iou'][c])} | {_pct(result['acc'][c])} |"
        if has_bf:
            row += f" {_pct(result['bf_per_class'][c])} |"
        lines.append(row)
    return "\n".join(lines)


def jsonable(result: dict, class_names) -> dict:
    """The result as JSON-ready values (NaN -> None), per-class scores keyed by class name."""

    def num(v):
        return None if v is None or v != v else float(v)

    out = {k: num(result[k]) for k in ("pixel_acc", "mean_acc", "miou", "fwiou")}
    out["global_accuracy"], out["class_average_accuracy"] = out["pixel_acc"], out["mean_acc"]
    for key in ("iou", "acc") + (("bf_per_class",) if "bf" in result else ()):
        out[key] = {n: num(v) for n, v in zip(class_names, result[key])}
    if "bf" in result:
        out["bf"] = num(result["bf"])
    out["images"] = result.get("images")
    out["frame_size"] = list(result["frame_size"]) if result.get("frame_size") else None
    out["seconds"] = round(result.get("seconds", 0.0), 3)
    out["confusion"] = np.asarray(result["confusion"]).tolist()
    return out

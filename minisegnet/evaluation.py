"""Evaluation as the papers do it: whole frames, one confusion matrix over the split.

    from minisegnet.evaluation import evaluate_dataset, format_report
    result = evaluate_dataset(model, CamVid(root, "test"), boundary_f1=True)
    print(format_report(result, CamVid.class_names))

The protocol (SegNet, PAMI 2017, Table 1-2; FCN, CVPR 2015, section 5)
---------------------------------------------------------------------
* Every frame is scored at its **full resolution**: no resize, no crop (``size=N`` asks for
  a quicker, smaller check instead: shorter side to N, central N x N crop).
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

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from minisegnet import metrics
from minisegnet.arrays import to_host
from minisegnet.data.errors import DataError
from minisegnet.data.transforms import eval_transform
from minisegnet.inference import input_multiple, pad_to_multiple, predict_full
from minisegnet.progress import ProgressLines

__all__ = [
    "evaluate_dataset", "format_report", "predict_full", "pad_to_multiple", "input_multiple",
    "jsonable", "command",
]  # fmt: skip


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
    input_scale: float = 1.0,
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
    called after each batch; ``predict(model, images, input_scale=s) -> labels`` replaces
    ``predict_full`` (``minisegnet.refine``'s CRF-refined labels, for example).
    ``input_scale`` != 1: the network sees each frame resized by that factor (the scale it was
    trained at) and its scores are resized back, so the frame is still scored at full
    resolution (``inference.full_frame_scores``). Without ``progress``, ``log`` (e.g.
    ``print``) receives a line about every ``interval`` seconds (``minisegnet.progress``)."""
    from tqdm import tqdm

    from minisegnet.boundary_f1 import BoundaryF1Meter

    k, ignore = dataset.num_classes, dataset.ignore_index
    meter = metrics.ConfusionMeter(k, ignore)
    bf = BoundaryF1Meter(k, ignore) if boundary_f1 else None
    transform = eval_transform(size, ignore)  # whole frames, or resized and centre-cropped
    total, t0, frame_size = len(dataset), time.perf_counter(), None
    lines = None if progress or log is None else ProgressLines(total, desc, interval, log)
    with tqdm(total=total, desc=desc, unit="img", leave=False, disable=not progress) as bar:
        for images, labels, _ in _batches(dataset, transform, batch_size, workers):
            frame_size = frame_size or tuple(labels.shape[-2:])
            pred = (predict or predict_full)(model, images, input_scale=input_scale)
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


# --------------------------------------------------------------------------- the command


def input_scale_of(args, config) -> float:
    """``--input-scale`` if given, else the scale the checkpoint was trained at (1 for runs
    that predate the option)."""
    from minisegnet.options import check_input_scale

    given = getattr(args, "input_scale", None)
    if given is not None:
        return check_input_scale(given)
    return float(getattr(config, "input_scale", 1.0))


def command(args) -> int:
    """``minisegnet evaluate``: score the checkpoint ``args.checkpoint`` on a split of its
    dataset (or ``--data``), print the table and save it as ``<out>.md`` and ``<out>.json``."""
    from minisegnet import backend, options, refine
    from minisegnet.data import parse_data_spec
    from minisegnet.data.splits import open_split
    from minisegnet.inference import load_checkpoint, size_checked
    from minisegnet.threads import tune_threads
    from minisegnet.train_config import TrainConfig

    options.configure_threads(args)
    tune_threads()
    options.backend_name(args.backend)
    model, info = load_checkpoint(args)
    config = info["config"] or TrainConfig()
    data = args.data or (info["config"].data if info["config"] else None)
    if data is None:
        raise options.ConfigError(f"{info['source']} does not record its dataset; pass --data")
    kind, _ = parse_data_spec(data)
    # Folders: the papers' protocol, whole frames (--size asks for a resize + central crop).
    # The built-in data is generated at its size: the training size unless --size says.
    size = args.size
    batch = args.batch_size or (2 * config.batch_size if kind == "builtin" else 1)
    if kind == "builtin" and args.split not in ("train", "val", "test"):
        raise options.ConfigError(
            f"--split: the built-in data has train, val and test, got {args.split!r}"
        )
    if size is not None and size < 16:
        raise options.ConfigError(f"--size must be at least 16 pixels, got {size}")
    if size is not None:
        options.check_pixels(size, size, f"--size {size}")
    out = Path(args.out) if args.out else Path(info["source"]).parent / f"eval-{kind}-{args.split}"
    options.output_folder(out.parent, f"--out {out}" if args.out else f"{out} (the default --out)")
    for target in (out.with_suffix(".md"), out.with_suffix(".json")):
        if target.is_dir():
            raise options.ConfigError(
                f"--out {out}: {target} is a folder; expected a file name stem"
            )
    dataset = open_split(config, args.split, data=data, size=size)
    if dataset.num_classes != model.config["num_classes"]:
        raise options.ConfigError(
            f"{data} has {dataset.num_classes} classes but the model in {info['source']} "
            f"predicts {model.config['num_classes']}"
        )
    if kind == "builtin":  # generated at the size asked for, scored as generated
        side, what, size = size or config.size, f"--size {size or config.size}", None
    elif size is not None:
        side, what = size, f"--size {size}"
    else:
        first = dataset[0][1].shape  # the frames' size, to check the network takes it
        side = min(first)
        what = f"the {first[1]}x{first[0]} frame size of {dataset.name} (--size N resizes)"
    name = model.config["name"]
    scale = input_scale_of(args, config)
    if scale != 1 and kind == "builtin":
        raise options.ConfigError(
            f"--input-scale {scale:g}: the built-in data is generated at --size; give --size"
        )
    if scale != 1:  # the network sees the resized frame: that is the size it must take
        side, what = max(1, round(side * scale)), f"{what} at --input-scale {scale:g}"
    with (
        options.use_backend(args.backend or config.backend),
        size_checked(model, name, side, what),
    ):
        model.to(backend.current().device)  # once; each batch is moved as it is scored
        result = evaluate_dataset(
            model,
            dataset,
            size=size,
            input_scale=scale,
            batch_size=batch,
            boundary_f1=args.boundary_f1,
            predict=refine.predict_fn(args),  # --crf: refined labels (refine.py)
            progress=sys.stderr.isatty(),
            desc=f"evaluating {dataset.name}",
            log=print,
        )
    table = format_report(result, dataset.class_names)
    h, w = result["frame_size"]
    how = "full resolution" if size is None else f"resized to {size} and centre-cropped"
    if scale != 1:
        how += f", the network at {scale:g}x and its scores resized back"
    title = (
        f"# {model.config['name']} from {info['source']} on {dataset.name} "
        f"({len(dataset)} images, {w}x{h}, {how})"
    )
    print(title + "\n\n" + table)
    out.with_suffix(".md").write_text(title + "\n\n" + table + "\n")
    summary = jsonable(result, dataset.class_names)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nsaved {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0

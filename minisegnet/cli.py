"""The ``minisegnet`` command line.

    minisegnet train           train a network (default: a small SegNet-Basic on the built-in data,
                               about five minutes on two cores; results under runs/)
    minisegnet evaluate        score a checkpoint on a validation split; prints and saves the table
    minisegnet predict         colour masks and overlays (PNG) for your own images
    minisegnet summary         a model's layers: output shapes, parameters, multiply-adds
    minisegnet backends        which backends work on this machine, and why not when they don't
    minisegnet bench           benchmarks against PyTorch and this machine (benchmarks/run.py)

``minisegnet COMMAND --help`` lists each command's options.

Errors. Every mistake in what was asked (a bad option, a missing or unreadable file, an image
of the wrong kind, too small for the network or too large, an output that cannot be written, a
checkpoint that does not fit) is reported as one line, ``minisegnet: error: ...`` naming the
option or file, with exit code 2 (a bad option also prints the command's usage first). These
are the project's own exceptions (``_user_errors``), raised by checks made before any work is
done; any other exception is a bug and keeps its traceback. Ctrl-C prints ``minisegnet:
interrupted`` and exits with 130 (128 + SIGINT, the shell's convention): at any moment of
start-up, and during training after a checkpoint is saved. While the package itself loads
(before ``main`` runs: NumPy's import), ``minisegnet/__init__.py`` gives the same line; only a
Ctrl-C during Python's own start-up, before any of minisegnet runs, is Python's traceback.
Warnings (the run will work, but maybe not as meant) are lines ``minisegnet: warning: ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import sys
from pathlib import Path

from minisegnet import __version__, backend, refine

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130

# OSErrors that come from the machine, not from the code: a disk that fills up, a folder made
# read-only, a path that names a file where a folder belongs. Others (a file the code expected
# to find, ...) keep their traceback.
_ENVIRONMENT_ERRNOS = {
    errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EIO,
    errno.ENAMETOOLONG, errno.ENOTDIR, errno.EISDIR,
}  # fmt: skip


def _error(message: str) -> None:
    message = " ".join(str(message).split())  # one line, whatever the message held
    print(f"minisegnet: error: {message}", file=sys.stderr)


def _warn(message: str) -> None:
    print(f"minisegnet: warning: {message}", file=sys.stderr)


# --------------------------------------------------------------------------- checks of options


def _config_error(message: str):
    from minisegnet.train import ConfigError

    return ConfigError(message)


def _backend_name(name: str | None) -> str | None:
    """``--backend``: a known name (whether it works here is checked when it is used)."""
    if name is not None and name not in backend.names():
        raise _config_error(
            f"--backend: unknown backend {name!r}; valid backends: {', '.join(backend.names())}"
        )
    return name


def _use_backend(name: str):
    try:
        return backend.use(name)
    except backend.BackendUnavailable as error:
        raise _config_error(f"--backend: {error}") from None


def _output_folder(path, label: str = "--out") -> Path:
    """Create folder ``path`` (and its parents) and make sure a file can be written in it, before
    any work is done; otherwise a ConfigError starting with ``label`` (the option)."""
    import tempfile

    path = Path(path)
    for part in [path, *path.parents]:
        if part.exists() and not part.is_dir():
            where = "" if part == path else f": {part}"
            raise _config_error(f"{label}{where} is a file; expected a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as error:
        raise _config_error(
            f"{label}: cannot write to the folder {path} ({error.strerror or error})"
        ) from None
    return path


def _load_checkpoint(args):
    """``load_for_inference`` for --checkpoint (with --model, --width); its errors name it."""
    from minisegnet.checkpoint import CheckpointError
    from minisegnet.train import load_for_inference

    try:
        return load_for_inference(args.checkpoint, args.model, args.width)
    except CheckpointError as error:
        raise CheckpointError(f"--checkpoint: {error}") from None


def _check_pixels(width: int, height: int, what: str) -> None:
    """ConfigError when a ``width`` x ``height`` image is over the image size limit (the one
    ``read_image`` applies to files: ``minisegnet.data.imageio.MAX_IMAGE_PIXELS``)."""
    from minisegnet.data import imageio

    if width * height > imageio.MAX_IMAGE_PIXELS:
        raise _config_error(
            f"{what} gives {width}x{height}-pixel images, larger than the limit of "
            f"{imageio.MAX_IMAGE_PIXELS / 1e6:.3g} megapixels "
            "(minisegnet.data.imageio.MAX_IMAGE_PIXELS)"
        )


@contextlib.contextmanager
def _size_checked(model, name: str, side: int, what: str, hint: str = ""):
    """Run the body (forward passes of ``model`` on images of ``side`` pixels); a ValueError it
    raises becomes a ConfigError when the images are too small for the network (``what``: the
    option or file that gave the size), and otherwise propagates: a bug."""
    from minisegnet.data import DataError
    from minisegnet.train import too_small_error

    try:
        yield
    except DataError:  # a file of the dataset (names itself), not a refused size
        raise
    except ValueError as refusal:
        error = too_small_error(model, name, side, what, hint, reason=str(refusal))
        if error is None:
            raise
        raise error from None


def _cmd_backends(args) -> int:
    for name in backend.names():
        b = backend.get(name)
        reason = b.unavailable_reason()
        status = "available" if reason is None else f"unavailable: {reason}"
        marker = "*" if name == backend.current().name else " "
        print(f"{marker} {name:9s} {b.description} ({status})")
    return 0


# --------------------------------------------------------------------------- train

_TRAIN_OPTIONS = ("model", "data", "backend", "epochs", "batch_size", "lr", "warmup_epochs",
                  "weight_decay", "balance_init", "size", "width", "class_weights", "seed",
                  "train_images", "val_images")  # fmt: skip


def _latest_run(root: Path = Path("runs")) -> Path | None:
    runs = [p.parent for p in root.glob("*/checkpoint.safetensors")]
    return max(runs, key=lambda p: (p / "checkpoint.safetensors").stat().st_mtime) if runs else None


def _cmd_train(args) -> int:
    from minisegnet import models
    from minisegnet.checkpoint import CheckpointError
    from minisegnet.train import ConfigError, TrainConfig, Trainer, TrainingInterrupted

    counts = _configure_threads(args)
    given = {k: getattr(args, k) for k in _TRAIN_OPTIONS if getattr(args, k) is not None}
    _backend_name(given.get("backend"))
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    if args.resume is not None:
        run = Path(args.resume) if args.resume else (Path(args.out) if args.out else _latest_run())
        if run is None:
            raise ConfigError(
                "--resume: no run to resume under runs/; give its folder: --resume runs/NAME"
            )
        if args.out and args.resume and Path(args.out) != Path(args.resume):
            raise ConfigError(f"--out {args.out} and --resume {args.resume} name different runs")
        try:
            trainer = Trainer.from_checkpoint(run, progress=progress, overrides=given)
        except CheckpointError as error:
            raise CheckpointError(f"--resume: {error}") from None
        done = trainer.epoch
        if done >= trainer.config.epochs:
            return _finished_run(trainer)
        print(
            f"resuming {trainer.run_dir} at epoch {done + 1}, batch {trainer.batch + 1} "
            f"of {trainer.config.epochs} epochs"
        )
    else:
        config = TrainConfig(**given).check()  # before --out is created
        if args.out is not None:
            out = Path(args.out)
            if (out / "checkpoint.safetensors").exists():
                raise ConfigError(
                    f"--out {out} already holds a training run; continue it with --resume {out} "
                    "or choose another --out"
                )
            _output_folder(out, f"--out {out}")
        trainer = Trainer(config, args.out, progress=progress)
        if args.out is None:
            _output_folder(trainer.run_dir, f"the run folder {trainer.run_dir} (--out)")
    c = trainer.config
    if c.batch_size > len(trainer.train_set):
        _warn(
            f"--batch-size {c.batch_size} is larger than the {len(trainer.train_set)} training "
            f"images; every step uses all {len(trainer.train_set)}"
        )
    n_params = trainer.model.num_parameters()
    print(
        f"training {c.model.replace('_', '-')} ({n_params:,} parameters, "
        f"{models.SMALL_PRESETS[c.model] if c.width is None else {'width': c.width}}) on "
        f"{c.data}: {len(trainer.train_set)} training / {len(trainer.val_set)} validation images, "
        f"size {c.size}, batch {c.batch_size}, {c.epochs} epochs, lr {c.lr}, backend {c.backend}"
    )
    blas = "?" if counts["blas"] is None else counts["blas"]
    print(
        f"threads: Numba {counts['numba']} x BLAS {blas} on {counts['cores']} cores "
        "(--threads sets Numba's)"
    )
    print(f"results go to {trainer.run_dir}/")
    try:
        record = trainer.fit()
    except TrainingInterrupted as stop:
        print(f"minisegnet: {stop}", file=sys.stderr)
        return EXIT_INTERRUPTED
    val = record["val"]
    print(
        f"done: validation mIoU {val['miou']:.4f}, pixel accuracy {val['pixel_acc']:.4f}, "
        f"{record['train_seconds']:.0f} s of training"
    )
    print(
        f"wrote {trainer.run_dir}/: model.safetensors (weights), checkpoint.safetensors (to "
        "resume), metrics.jsonl, metrics.md, curves.png, predictions.png"
    )
    return 0


def _finished_run(trainer) -> int:
    """--resume of a run that has done all its epochs: check its outputs, rewrite what is missing
    or stale (``Trainer.repair_outputs``) and say which."""
    print(f"{trainer.run_dir} finished all {trainer.config.epochs} epochs already")
    rewritten = trainer.repair_outputs()
    if not rewritten:
        print("its outputs are present and up to date; nothing to do")
    for name, why in rewritten.items():
        print(f"rewrote {name} in {trainer.run_dir}/ ({why})")
    return 0


# --------------------------------------------------------------------------- evaluate


def _cmd_evaluate(args) -> int:
    from minisegnet import evaluation
    from minisegnet.data import open_dataset, parse_data_spec
    from minisegnet.train import ConfigError, TrainConfig, tune_threads

    _configure_threads(args)
    tune_threads()
    _backend_name(args.backend)
    model, info = _load_checkpoint(args)
    config = info["config"] or TrainConfig()
    data = args.data or (info["config"].data if info["config"] else None)
    if data is None:
        raise ConfigError(f"{info['source']} does not record its dataset; pass --data")
    kind, _ = parse_data_spec(data)
    # Folders: the papers' protocol, whole frames (--size asks for a resize + central crop).
    # The built-in data is generated at its size: the training size unless --size says.
    size = args.size
    batch = args.batch_size or (2 * config.batch_size if kind == "builtin" else 1)
    if kind == "builtin" and args.split not in ("train", "val", "test"):
        raise ConfigError(f"--split: the built-in data has train, val and test, got {args.split!r}")
    if size is not None and size < 16:
        raise ConfigError(f"--size must be at least 16 pixels, got {size}")
    if size is not None:
        _check_pixels(size, size, f"--size {size}")
    out = Path(args.out) if args.out else Path(info["source"]).parent / f"eval-{kind}-{args.split}"
    _output_folder(out.parent, f"--out {out}" if args.out else f"{out} (the default --out)")
    for target in (out.with_suffix(".md"), out.with_suffix(".json")):
        if target.is_dir():
            raise ConfigError(f"--out {out}: {target} is a folder; expected a file name stem")
    dataset = open_dataset(
        data, args.split, size=size or config.size, length=config.val_images, seed=config.seed
    )
    if dataset.num_classes != model.config["num_classes"]:
        raise ConfigError(
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
    with (
        _use_backend(args.backend or config.backend),
        _size_checked(model, name, side, what),
    ):
        model.to(backend.current().device)  # once; each batch is moved as it is scored
        result = evaluation.evaluate_dataset(
            model,
            dataset,
            size=size,
            batch_size=batch,
            boundary_f1=args.boundary_f1,
            predict=refine.predict_fn(args),  # --crf: refined labels (refine.py)
            progress=sys.stderr.isatty(),
            desc=f"evaluating {dataset.name}",
            log=print,
        )
    table = evaluation.format_report(result, dataset.class_names)
    h, w = result["frame_size"]
    how = "full resolution" if size is None else f"resized to {size} and centre-cropped"
    title = (
        f"# {model.config['name']} from {info['source']} on {dataset.name} "
        f"({len(dataset)} images, {w}x{h}, {how})"
    )
    print(title + "\n\n" + table)
    out.with_suffix(".md").write_text(title + "\n\n" + table + "\n")
    summary = evaluation.jsonable(result, dataset.class_names)
    out.with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nsaved {out.with_suffix('.md')} and {out.with_suffix('.json')}")
    return 0


# --------------------------------------------------------------------------- predict


def _cmd_predict(args) -> int:
    import numpy as np

    from minisegnet.data import read_image, transforms
    from minisegnet.legend import write_prediction
    from minisegnet.train import ConfigError, predict_labels, tune_threads

    _configure_threads(args)
    tune_threads()
    _backend_name(args.backend)
    model, info = _load_checkpoint(args)
    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        raise ConfigError(f"image(s) not found: {', '.join(missing)}")
    out = _output_folder(args.out, f"--out {args.out}")
    normalize = transforms.Normalize()
    name = model.config["name"]
    with _use_backend(args.backend or (info["config"].backend if info["config"] else "numba")):
        model.to(backend.current().device)
        for path in args.images:
            image = read_image(path)  # (H, W, 3) uint8
            h, w = image.shape[:2]
            work = image
            if args.size:
                scale = args.size / min(h, w)  # as transforms.Resize computes it
                _check_pixels(round(w * scale), round(h * scale), f"--size {args.size} on {path}")
                work, _ = transforms.Resize(args.size)(image, np.zeros((h, w), np.uint8))
                size_check = _size_checked(model, name, args.size, f"--size {args.size}")
            else:
                what = f"image {path} ({w}x{h} pixels)"
                size_check = _size_checked(
                    model, name, min(h, w), what, " (--size {needed} enlarges it)"
                )
            x, _ = normalize(work, np.zeros(work.shape[:2], np.uint8))
            with size_check:
                pred = refine.labels_fn(args, predict_labels)(model, x[None])[0]  # (h', w')
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


# --------------------------------------------------------------------------- summary


def _cmd_summary(args) -> int:
    from minisegnet import models
    from minisegnet.train import ConfigError

    try:
        name = models._canonical(args.model)
    except ValueError:
        raise ConfigError(
            f"--model: unknown model {args.model!r}; valid models: "
            f"{', '.join(n.replace('_', '-') for n in models.names())}"
        ) from None
    _check_pixels(args.size, args.size, f"--size {args.size}")
    options = {} if args.width is None else {"width": args.width}
    preset = "full" if args.full else "small"
    with _use_backend(args.backend or backend.DEFAULT):  # built and traced where it computes
        model = models.build(
            name, args.num_classes, preset=preset, seed=0, materialize=not args.full, **options
        )
        with _size_checked(model, name, args.size, f"--size {args.size}"):
            table = models.summary(model, (1, 3, args.size, args.size))
        where = backend.current().name
    print(
        f"{name} ({preset} configuration{', width ' + str(args.width) if args.width else ''}), "
        f"{args.num_classes} classes, input 1x3x{args.size}x{args.size}, backend {where}"
    )
    print(table)
    return 0


# --------------------------------------------------------------------------- bench


def _benchmarks_dir() -> Path | None:
    """The benchmark suite's folder. It is scripts beside the package, not part of it (it needs
    PyTorch and writes files): $MINISEGNET_BENCHMARKS, else benchmarks/ next to the package (a
    source checkout or an editable install), else ./benchmarks."""
    import os

    for candidate in (
        os.environ.get("MINISEGNET_BENCHMARKS"),
        Path(__file__).resolve().parents[1] / "benchmarks",
        Path.cwd() / "benchmarks",
    ):
        if candidate and (Path(candidate) / "run.py").is_file():
            return Path(candidate)
    return None


def _cmd_bench(args) -> int:
    import importlib.util

    folder = _benchmarks_dir()
    if folder is None:
        print(
            "minisegnet: error: the benchmark suite (benchmarks/run.py) is not part of an "
            "installed package; run from a source checkout (pip install -e .) or set "
            "MINISEGNET_BENCHMARKS to the benchmarks folder",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    spec = importlib.util.spec_from_file_location("minisegnet_benchmarks_run", folder / "run.py")
    run = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = run
    spec.loader.exec_module(run)
    return run.main(args.bench_args, prog="minisegnet bench", parser_class=_ArgumentParser)


# --------------------------------------------------------------------------- parser


def _positive_int(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text}")
    return value


def _non_negative_float(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def _seed(text):
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def _add_threads_option(p) -> None:
    p.add_argument(
        "--threads",
        type=_positive_int,
        help="Numba threads (BLAS gets 1, so Numba x BLAS never exceeds the cores; default: "
        "every core this process may use, or NUMBA_NUM_THREADS when set)",
    )


def _configure_threads(args) -> dict:
    """``--threads`` (or the defaults) applied; see minisegnet/threads.py."""
    from minisegnet import threads

    return threads.configure(getattr(args, "threads", None))


MODEL_HELP = (
    "fcn32s, fcn16s, fcn8s, deconvnet, segnet, segnet-basic, pspnet, deeplab-largefov, "
    "deeplab-v2-vgg, deeplab-v2-resnet, dilation8, unet, unet-padded"
)
DATA_HELP = "builtin (default), voc:PATH, camvid:PATH or cityscapes:PATH"


class UsageError(Exception):
    """A command line argparse refuses; ``parser`` is the (sub)command's parser."""

    def __init__(self, parser: argparse.ArgumentParser, message: str):
        super().__init__(message)
        self.parser = parser


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, but a refused command line raises UsageError for main() to report as one
    ``minisegnet: error:`` line (argparse would print its own and exit from inside)."""

    def error(self, message):
        raise UsageError(self, message)


def build_parser() -> argparse.ArgumentParser:
    parser = _ArgumentParser(
        prog="minisegnet",
        description="Semantic segmentation networks, built to be studied.",
        epilog="Run 'minisegnet COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"minisegnet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    from minisegnet.train import TrainConfig

    d = TrainConfig()
    p = sub.add_parser(
        "train",
        help="train a network (default: small SegNet-Basic on the built-in data, ~5 min)",
        description=(
            "Train a segmentation network. With no options: a small SegNet-Basic on the built-in "
            "synthetic shapes, about five minutes on two CPU cores. Results (checkpoint, "
            "weights, metrics.jsonl, metrics.md, curves.png, predictions.png) go to "
            "runs/<model>-<data>/ unless --out says otherwise. Ctrl-C saves a checkpoint; "
            "--resume continues from it exactly."
        ),
    )
    # Each help text states its default itself (the parser's own defaults are None, meaning "not
    # given", so that --resume can tell an option passed from one left out).
    p.add_argument("--model", help=f"network: {MODEL_HELP} (default {d.model.replace('_', '-')})")
    p.add_argument("--data", help=f"dataset: {DATA_HELP}")
    p.add_argument("--backend", help=f"{', '.join(backend.names())} (default {d.backend})")
    p.add_argument(
        "--epochs", type=_positive_int, help=f"passes over the training set (default {d.epochs})"
    )
    p.add_argument(
        "--batch-size", type=_positive_int, help=f"images per step (default {d.batch_size})"
    )
    p.add_argument(
        "--lr", type=_positive_float, help=f"base learning rate, poly schedule (default {d.lr})"
    )
    p.add_argument(
        "--warmup-epochs",
        type=_non_negative_float,
        help="ramp the lr up linearly over this many epochs, then the poly schedule "
        f"(default {d.warmup_epochs:g})",
    )
    p.add_argument(
        "--weight-decay",
        type=_non_negative_float,
        help=f"L2 penalty on the conv and linear weights (default {d.weight_decay:g})",
    )
    p.add_argument(
        "--balance-init",
        action="store_true",
        default=None,
        help="before the first step, rescale the batch-normalised convolutions so none starts "
        "with a larger effective step than the median (deep VGG-style networks train faster; "
        "see minisegnet/nn/balance.py)",
    )
    p.add_argument(
        "--size",
        type=_positive_int,
        help=f"built-in data: image side; folders: training crop side (default {d.size})",
    )
    p.add_argument(
        "--width",
        type=_positive_float,
        help="channel multiplier (default: the model's small preset)",
    )
    p.add_argument(
        "--class-weights",
        metavar="median|none|FILE|w1,...,wK",
        help="loss weight per class: median (median frequency balancing, computed on the train "
        "split), none (default), a comma list of K numbers, or a FILE of numbers or a Caffe "
        "prototxt whose class_weighting: lines are read (SegNet-Tutorial's weights as shipped)",
    )
    p.add_argument(
        "--seed", type=_seed, help=f"seed of data, initialisation, order (default {d.seed})"
    )
    p.add_argument(
        "--train-images",
        type=_positive_int,
        help=f"built-in data: training images (default {d.train_images})",
    )
    p.add_argument(
        "--val-images",
        type=_positive_int,
        help=f"built-in data: validation images (default {d.val_images})",
    )
    p.add_argument("--out", help="run folder (default runs/<model>-<data>, numbered if taken)")
    p.add_argument(
        "--resume",
        nargs="?",
        const="",
        metavar="RUN",
        help="continue a stopped run: its folder (default --out, or the newest under runs/)",
    )
    p.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="show progress bars (default: when writing to a terminal)",
    )
    p.add_argument(
        "--no-progress", dest="progress", action="store_false", help="hide progress bars"
    )
    _add_threads_option(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "evaluate",
        help="score a checkpoint on a validation split",
        description=(
            "Evaluate a checkpoint (a run folder, checkpoint.safetensors or model.safetensors) "
            "on a split of its dataset as the papers do: full-resolution frames, one confusion "
            "matrix over the split, global accuracy, class-average accuracy, mean IoU, "
            "frequency-weighted IoU, IoU and accuracy per class (and with --boundary-f1, "
            "SegNet's BF score). Prints the table and saves it as .md and .json."
        ),
    )
    p.add_argument("--checkpoint", required=True, help="run folder or .safetensors file")
    p.add_argument("--data", help=f"dataset (default: the one it was trained on): {DATA_HELP}")
    p.add_argument("--split", default="val", help="split to score (default val)")
    p.add_argument(
        "--size",
        type=_positive_int,
        help="resize the shorter side to this and score the central square (default: dataset "
        "folders are scored at full resolution, as in the papers; built-in data at its "
        "training size)",
    )
    p.add_argument(
        "--batch-size",
        type=_positive_int,
        help="images per batch (default 1 for folders, frames of one size needed above 1)",
    )
    p.add_argument(
        "--boundary-f1",
        action="store_true",
        help="also SegNet's boundary F1 score (BF, tolerance 0.75%% of the diagonal)",
    )
    p.add_argument("--backend", help=", ".join(backend.names()))
    p.add_argument("--model", help=f"build this network instead of the checkpoint's: {MODEL_HELP}")
    p.add_argument("--width", type=_positive_float, help="with --model: its channel multiplier")
    p.add_argument("--out", help="path stem of the saved table (default <run>/eval-<data>-<split>)")
    _add_threads_option(p)
    refine.add_arguments(p)  # --crf (minisegnet/refine.py)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser(
        "predict",
        help="segment images: colour masks and overlays as PNG",
        description=(
            "Segment images with a trained checkpoint. For each IMAGE writes <name>_mask.png "
            "(a palette PNG: pixel values are class indices, shown in the class colours; the "
            "class names in its 'classes' text entry), <name>_overlay.png (the colours blended "
            "over the image, a legend of class names and colours below) and <name>_figure.png "
            "(image, prediction and overlay side by side, with the legend) into --out."
        ),
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files (PNG, JPEG, ...)")
    p.add_argument("--checkpoint", required=True, help="run folder or .safetensors file")
    p.add_argument("--out", default="predictions", help="output folder (default predictions)")
    p.add_argument(
        "--size",
        type=_positive_int,
        help="resize the shorter side to this before predicting (default: as is)",
    )
    p.add_argument("--backend", help=", ".join(backend.names()))
    p.add_argument("--model", help=f"build this network instead of the checkpoint's: {MODEL_HELP}")
    p.add_argument("--width", type=_positive_float, help="with --model: its channel multiplier")
    _add_threads_option(p)
    refine.add_arguments(p)  # --crf (minisegnet/refine.py)
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser(
        "summary",
        help="a model's layers, output shapes, parameters and multiply-adds",
        description="Print a layer table of a model for one input size.",
    )
    p.add_argument("--model", required=True, help=MODEL_HELP)
    p.add_argument("--width", type=_positive_float, help="channel multiplier (default: preset)")
    p.add_argument("--size", type=_positive_int, default=64, help="input side (default 64)")
    p.add_argument(
        "--num-classes", type=_positive_int, default=6, help="output classes (default 6)"
    )
    p.add_argument("--full", action="store_true", help="the paper's full-size configuration")
    p.add_argument("--backend", help=", ".join(backend.names()) + " (default numba)")
    p.set_defaults(func=_cmd_summary)

    # Every option of "bench" is benchmarks/run.py's: prefix_chars="+" passes "--quick" and the
    # rest through untouched ("minisegnet bench --help" prints them).
    p = sub.add_parser(
        "bench",
        help="benchmark ops and models against PyTorch; report in benchmarks/results/",
        prefix_chars="+",
        add_help=False,
    )
    p.add_argument("bench_args", nargs="*", metavar="OPTION")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser(
        "backends",
        help="list the backends and whether they work here",
        description="List the backends (numpy, numba, cuda, cuda-emu) and whether each works here.",
    )
    p.set_defaults(func=_cmd_backends)
    return parser


def _user_errors() -> tuple:
    from minisegnet.checkpoint import CheckpointError
    from minisegnet.data import DataError
    from minisegnet.io import WeightsFileError
    from minisegnet.nn import StateDictError
    from minisegnet.train import ConfigError, TrainingDiverged

    return (
        DataError,
        ConfigError,
        CheckpointError,
        TrainingDiverged,
        StateDictError,
        WeightsFileError,
        backend.BackendUnavailable,
    )


def main(argv=None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    The one error boundary: the project's user-error exceptions and argparse's refusals become
    one ``minisegnet: error:`` line and exit code 2; an OSError of the machine's naming a file
    (a disk that fills up, a folder made read-only during a run) the same, naming the file;
    Ctrl-C exit code 130. Anything else is a bug and propagates with its traceback."""
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except UsageError as refused:
            refused.parser.print_usage(sys.stderr)
            _error(f"{refused} (see '{refused.parser.prog} --help')")
            return EXIT_USER_ERROR
        if getattr(args, "func", None) is None:
            parser.print_usage(sys.stderr)
            _error("a COMMAND is required: train, evaluate, predict, summary, backends or bench")
            return EXIT_USER_ERROR
        try:
            return args.func(args)
        except UsageError as refused:  # "bench" parses its own options (benchmarks/run.py)
            refused.parser.print_usage(sys.stderr)
            _error(f"{refused} (see '{refused.parser.prog} --help')")
            return EXIT_USER_ERROR
    except KeyboardInterrupt:  # first: the clause below imports modules
        print("minisegnet: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _user_errors() as error:
        _error(str(error))
        return EXIT_USER_ERROR
    except OSError as error:
        if error.filename is None or error.errno not in _ENVIRONMENT_ERRNOS:
            raise
        _error(f"{error.filename}: {error.strerror or error}")
        return EXIT_USER_ERROR


if __name__ == "__main__":
    sys.exit(main())

"""The ``minisegnet`` command line.

    minisegnet train           train a network (default: a small SegNet-Basic on the built-in data,
                               about five minutes on two cores; results under runs/)
    minisegnet evaluate        score a checkpoint on a validation split; prints and saves the table
    minisegnet predict         colour masks and overlays (PNG) for your own images
    minisegnet summary         a model's layers: output shapes, parameters, multiply-adds
    minisegnet backends        which backends work on this machine, and why not when they don't
    minisegnet bench           benchmarks against PyTorch and this machine (minisegnet/bench.py)

``minisegnet COMMAND --help`` lists each command's options. This file only parses and
dispatches: each command is the ``command(args)`` of the module that owns the job
(``train.py``, ``evaluation.py``, ``predict.py``, ``model_summary.py``; ``bench.main``), and
the checks the commands share are in ``options.py``.

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
import errno
import importlib
import sys

from minisegnet import __version__, backend, refine
from minisegnet.options import finite_at_least, number_type

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


def _job(module: str):
    """The command ``minisegnet.<module>.command(args)``, imported only when it runs (so that
    ``--help`` of one command does not load the code of the others)."""

    def run(args) -> int:
        return importlib.import_module(f"minisegnet.{module}").command(args)

    return run


def _cmd_backends(args) -> int:
    for name in backend.names():
        b = backend.get(name)
        reason = b.unavailable_reason()
        status = "available" if reason is None else f"unavailable: {reason}"
        marker = "*" if name == backend.current().name else " "
        print(f"{marker} {name:9s} {b.description} ({status})")
    return 0


# --------------------------------------------------------------------------- bench


def _cmd_bench(args) -> int:
    """Every option after ``bench`` is the suite's (``minisegnet/bench.py``); its refusals are
    this command line's UsageError, reported as one line like the others."""
    from minisegnet import bench

    return bench.main(args.bench_args, prog="minisegnet bench", parser_class=_ArgumentParser)


# --------------------------------------------------------------------------- parser


_positive_int = number_type(int, "a positive integer", finite_at_least(1))
_positive_float = number_type(float, "a positive number", finite_at_least(0, strict=True))
_non_negative_float = number_type(
    float, "a number >= 0", finite_at_least(0), refused="a finite number >= 0"
)
_seed = number_type(int, "a non-negative integer", finite_at_least(0))


def _add_network_options(p) -> None:
    """--backend, and --model / --width to build another network than the checkpoint's."""
    p.add_argument("--backend", help=", ".join(backend.names()))
    p.add_argument("--model", help=f"build this network instead of the checkpoint's: {MODEL_HELP}")
    p.add_argument("--width", type=_positive_float, help="with --model: its channel multiplier")


def _add_input_scale_option(p) -> None:
    p.add_argument(
        "--input-scale",
        type=_positive_float,
        help="resize frames by this factor before the network and its class scores back to "
        "the frame's size (default: the scale the checkpoint was trained at, usually 1)",
    )


def _add_threads_option(p) -> None:
    p.add_argument(
        "--threads",
        type=_positive_int,
        help="threads of Numba's kernels and of OpenBLAS's products, which take turns "
        "(default: every core this process may use, or NUMBA_NUM_THREADS / "
        "OPENBLAS_NUM_THREADS when set)",
    )


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

    from minisegnet.train_config import TrainConfig

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
        "--input-scale",
        type=_positive_float,
        help="dataset folders: the network works on frames resized by this factor (0.5: a "
        "quarter of the pixels); evaluation resizes its scores back and scores full frames "
        f"(default {d.input_scale:g})",
    )
    p.add_argument(
        "--train-scale",
        metavar="LOW,HIGH",
        help="dataset folders: random scale of the training crops, relative to --input-scale "
        f"(default {','.join(f'{v:g}' for v in d.train_scale)})",
    )
    p.add_argument(
        "--optimizer",
        choices=("sgd", "adam"),
        help=f"SGD with momentum {d.momentum:g}, or Adam (default {d.optimizer})",
    )
    p.add_argument(
        "--class-weights",
        metavar="median|sqrt-median|none|FILE|w1,...,wK",
        help="loss weight per class: median (median frequency balancing, computed on the train "
        "split), sqrt-median (their square roots, a milder balance), none (default), a comma list of K numbers, or a FILE of numbers or a Caffe "
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
    p.set_defaults(func=_job("train"))

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
    _add_network_options(p)
    _add_input_scale_option(p)
    p.add_argument("--out", help="path stem of the saved table (default <run>/eval-<data>-<split>)")
    _add_threads_option(p)
    refine.add_arguments(p)  # --crf (minisegnet/refine.py)
    p.set_defaults(func=_job("evaluation"))

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
    _add_network_options(p)
    _add_input_scale_option(p)
    _add_threads_option(p)
    refine.add_arguments(p)  # --crf (minisegnet/refine.py)
    p.set_defaults(func=_job("predict"))

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
    p.set_defaults(func=_job("model_summary"))

    # Every option of "bench" is minisegnet/bench.py's: prefix_chars="+" passes "--quick" and the
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
    from minisegnet.options import ConfigError
    from minisegnet.trainer import TrainingDiverged

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
        except UsageError as refused:  # "bench" parses its own options (minisegnet/bench.py)
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

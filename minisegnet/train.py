"""The training job: data, model, SGD with a poly schedule, evaluation, logs, plots, checkpoints.

    from minisegnet.train import TrainConfig, train
    result = train(TrainConfig(model="segnet", epochs=10))        # -> runs/segnet-builtin/
    result = resume("runs/segnet-builtin")                         # continues exactly

``minisegnet train`` is :func:`command`. The pieces live beside this file: the options and their
checks in ``train_config.py``, the loop in ``trainer.py`` (with exact resumption and Ctrl-C),
the data in ``data/splits.py``, inference in ``inference.py``.

The recipe (the papers', adapted to training from scratch on a CPU)
-----------------------------------------------------------------
* SGD, momentum 0.9, weight decay 5e-4 on weights; biases at 2x the learning rate and without
  weight decay (FCN, SegNet, DeconvNet solvers); batch-norm scales without weight decay.
  ``--optimizer adam`` instead (same groups; the decay folded into the gradient): from scratch
  on CamVid it learned far faster than SGD (40.8% against 29.5% val mIoU after 12 minutes,
  SegNet-Basic small preset; ``benchmarks/results/camvid.md``).
* Dataset folders: crops of ``--size`` at a random scale (``--train-scale``, default 0.5..2) of
  the frame as the network sees it (``--input-scale``: 0.5 trains on half-size frames, four
  times fewer pixels a step; ``evaluate`` and ``predict`` then resize frames by 0.5 and the
  class scores back, so the score is still at full resolution).
* "poly" learning rate: lr = base * (1 - iteration / max_iteration) ^ 0.9 (DeepLab, PSPNet).
* Loss: softmax cross-entropy averaged over the labelled pixels (255 ignored), optionally with
  median-frequency class weights (SegNet); PSPNet adds 0.4 x the loss of its auxiliary head.
* After every epoch: one confusion matrix over the whole validation split -> pixel accuracy,
  mean accuracy, mean IoU, frequency-weighted IoU (``minisegnet.metrics``).

What a run leaves in its folder (``runs/<model>-<data>`` by default)
-------------------------------------------------------------------
    checkpoint.safetensors / .json   everything to resume (see ``checkpoint.py``), every epoch
    model.safetensors / model.json   the trained weights alone (``minisegnet.io`` format)
    metrics.jsonl                    one JSON line per epoch: losses, scores, lr, times
    metrics.md                       the final validation table, per class
    curves.png                       loss and mIoU per epoch
    predictions.png                  validation images, truth and prediction overlays


Layout of this file: :func:`train` and :func:`resume` (the library's calls), then
:func:`command` (the command line's job: check the options, set up or resume the run, report).
"""

from __future__ import annotations

import sys
from pathlib import Path

from minisegnet.checkpoint import CheckpointError
from minisegnet.data import DataError
from minisegnet.inference import (
    accepts_input_side,
    input_side_bracket,
    load_for_inference,
    min_input_side,
    predict_labels,
    too_small_error,
)
from minisegnet.options import ConfigError, backend_name, configure_threads, output_folder, warn
from minisegnet.threads import tune_threads
from minisegnet.train_config import TrainConfig
from minisegnet.trainer import (
    Trainer,
    TrainingDiverged,
    TrainingInterrupted,
    build_model,
    default_run_dir,
    evaluate,
    param_groups,
    preview_indices,
)

__all__ = [
    "TrainConfig", "Trainer", "train", "resume", "command", "evaluate", "predict_labels",
    "build_model", "param_groups", "TrainingDiverged", "TrainingInterrupted", "ConfigError",
    "default_run_dir", "load_for_inference", "min_input_side", "input_side_bracket",
    "accepts_input_side", "too_small_error", "tune_threads", "preview_indices", "DataError",
]  # fmt: skip

EXIT_INTERRUPTED = 130  # 128 + SIGINT, the shell's convention (as minisegnet.cli)


def train(config: TrainConfig | None = None, run_dir=None, **kwargs) -> dict:
    """Run a training job from scratch; returns the last epoch's record."""
    return Trainer(config or TrainConfig(), run_dir, **kwargs).fit()


def resume(path, overrides: dict | None = None, **kwargs) -> dict:
    """Continue the run whose checkpoint is at ``path`` (a run folder or checkpoint file)."""
    return Trainer.from_checkpoint(path, overrides=overrides, **kwargs).fit()


# --------------------------------------------------------------------------- the command

# The options of ``minisegnet train`` that are fields of TrainConfig (the others say where the
# run goes and how it reports).
OPTIONS = ("model", "data", "backend", "epochs", "batch_size", "lr", "warmup_epochs",
           "weight_decay", "balance_init", "size", "width", "class_weights", "seed",
           "train_images", "val_images", "input_scale", "train_scale", "optimizer")  # fmt: skip


def latest_run(root: Path = Path("runs")) -> Path | None:
    """The run folder under ``root`` whose checkpoint was written last (None: no run)."""
    runs = [p.parent for p in root.glob("*/checkpoint.safetensors")]
    return max(runs, key=lambda p: (p / "checkpoint.safetensors").stat().st_mtime) if runs else None


def command(args) -> int:
    """``minisegnet train``: a new run from the options, or ``--resume`` of a stopped one;
    prints what it does and returns the exit code (130 after Ctrl-C, with the checkpoint
    saved)."""
    from minisegnet import models

    counts = configure_threads(args)
    given = {k: getattr(args, k) for k in OPTIONS if getattr(args, k) is not None}
    backend_name(given.get("backend"))
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    if args.resume is not None:
        run = Path(args.resume) if args.resume else (Path(args.out) if args.out else latest_run())
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
            return finished_run(trainer)
        print(
            f"resuming {trainer.run_dir} at epoch {done + 1}, batch {trainer.batch + 1} "
            f"of {trainer.config.epochs} epochs"
        )
    else:
        config = TrainConfig(**given).check()  # before --out is created
        created = None  # the run folder this call makes, removed if the run fails before writing
        if args.out is not None:
            out = Path(args.out)
            if (out / "checkpoint.safetensors").exists():
                raise ConfigError(
                    f"--out {out} already holds a training run; continue it with --resume {out} "
                    "or choose another --out"
                )
            created = None if out.exists() else out
            output_folder(out, f"--out {out}")
        trainer = Trainer(config, args.out, progress=progress)
        if args.out is None:
            created = None if trainer.run_dir.exists() else trainer.run_dir
            output_folder(trainer.run_dir, f"the run folder {trainer.run_dir} (--out)")
    c = trainer.config
    if c.batch_size > len(trainer.train_set):
        warn(
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
        "(--threads N sets both)"
    )
    print(f"results go to {trainer.run_dir}/")
    try:
        record = trainer.fit()
    except (ConfigError, DataError):  # refused before the first checkpoint: leave no empty run
        if args.resume is None and created is not None and not any(created.iterdir()):
            created.rmdir()
        raise
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


def finished_run(trainer) -> int:
    """--resume of a run that has done all its epochs: check its outputs, rewrite what is missing
    or stale (``Trainer.repair_outputs``) and say which."""
    print(f"{trainer.run_dir} finished all {trainer.config.epochs} epochs already")
    rewritten = trainer.repair_outputs()
    if not rewritten:
        print("its outputs are present and up to date; nothing to do")
    for name, why in rewritten.items():
        print(f"rewrote {name} in {trainer.run_dir}/ ({why})")
    return 0

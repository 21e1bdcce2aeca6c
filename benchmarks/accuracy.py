"""Accuracy versus training time on the built-in data: the project's quality targets.

    python benchmarks/accuracy.py                   # every model + the default run (~2 h)
    python benchmarks/accuracy.py --no-default --jobs 2   # the models, two at a time (~1 h)
    python benchmarks/accuracy.py --models segnet pspnet
    python benchmarks/accuracy.py --default-only    # only `minisegnet train` with no options
    python benchmarks/accuracy.py --smoke           # tiny settings, checks the script (~1 min)

Targets (issue 6), measured on the built-in data's validation split, two CPU cores:

* every model family's small configuration reaches mean IoU >= 0.85 within 15 minutes of
  training (FCN: 32s/16s/8s, DeconvNet, SegNet: SegNet and SegNet-Basic, PSPNet; and issue 21's
  DeepLab LargeFOV / v2-VGG / v2-ResNet, dilation8, U-Net valid / padded);
* the default ``minisegnet train`` (no options) reaches mean IoU >= 0.80 within 5 minutes.

Each run is ``python -m minisegnet train ...`` in a subprocess (a fresh process, as a user runs
it), writing into ``<out>/accuracy_runs/<name>/``. The script reads the run's ``metrics.jsonl``
(one line per epoch, with cumulative training and evaluation seconds) and reports, per run, the
best validation mIoU reached while the training time (optimisation steps plus the per-epoch
evaluations) was within the budget, the final mIoU, and the times. A run that overruns its
budget by half is stopped; its finished epochs still count. Met or not, every row is recorded in
``results/accuracy.md``; a later invocation replaces the rows of the runs it repeats and keeps
the others (``--replace`` writes only its own).

Threads. ``--jobs 2`` trains two models at a time, each held to one thread (NUMBA_NUM_THREADS,
OMP_NUM_THREADS, OPENBLAS_NUM_THREADS). Measured on the 2-core machine, one 8 x 3 x 40 x 40
training step of the small presets takes as long on one thread as on two (SegNet 31 ms on one
against 43 ms on two, DeconvNet 31 / 33 ms, PSPNet 27 / 27 ms; SegNet-Basic, whose 7x7 products
are larger, 39 / 32 ms): at these sizes OpenMP's wake-ups and barriers cost what the second
core gains. So two one-thread runs side by side each see the speed of one run on the whole
machine, and the table takes half the time. The ``threads`` column records what each run had.

The recipes below (epochs, learning rate, image size) were chosen so each run fits its budget:
the training step time on the 2-core machine times the images of an epoch, spread over enough
distinct images (8000) that the network does not just memorise them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# name -> (model, budget in minutes, target mIoU, extra `minisegnet train` options). 8000
# distinct training images. The epochs fill about 70-95% of the budget at the speed measured on
# the 2-core machine with one thread per run and two runs side by side (`--jobs 2`; these small
# networks train as fast on one thread as on two, see the module docstring). One training step,
# 8 x 3 x 64 x 64, one thread: FCN 147 ms (160x160 after conv1_1's padding), DeconvNet 58 ms,
# SegNet 55-59 ms, PSPNet about 50 ms; 8 x 3 x 40 x 40: SegNet-Basic 39 ms (32 ms on two threads,
# so its runs had the machine to themselves). Measured in session 3, against 40x40 from session 2:
#   * 64x64 instead of 40x40 for the networks whose scores come out at stride 8 or whose pool5 is
#     1-2 pixels at 40: PSPNet 0.73 -> 0.86 (at 40x40 its 5x5 stride-8 score maps cannot draw the
#     rings' 3-7 pixel walls: ring IoU 0.40), FCN-8s 0.67 -> 0.76, SegNet 0.61 -> 0.75;
#   * a warm-up epoch for the deep batch-normalised encoder-decoders at lr 0.1: SegNet 0.75 ->
#     0.80-0.82; DeconvNet without it collapsed to all-background at 64x64 (0.16), with it 0.55;
#   * FCN has no batch norm (as in the paper), and a warm-up lets it take a larger lr: lr 0.04
#     with one warm-up epoch 0.85 (lr 0.02 with half an epoch 0.83, lr 0.01 without 0.76).
#   * not kept: SegNet at lr 0.2 for 14 epochs (0.81, within the 0.80-0.82 spread of lr 0.1),
#     DeconvNet at lr 0.02 / 0.2 (0.31 / 0.50).
# Measured in session 4 (SegNet, 64x64, lr 0.1, one warm-up epoch, 15 epochs unless noted):
#   * weight decay 1e-4 instead of 5e-4: 0.80 -> 0.84. Then, at 0.83-0.84 whatever else changed:
#     batch 16 at lr 0.2 0.83; 16000 distinct images for 7 epochs 0.83; 80x80 for 9 epochs 0.84;
#     width 0.1875 behind per second; batch 4 behind per epoch;
#   * --balance-init (nn/balance.py: SegNet's first layers start with 10x the effective step of
#     its decoder, ``gradient_scale.py``; balanced, none is above the median): 0.84 -> 0.92, and
#     0.87 after 7 epochs; 12 epochs keep the run well inside the budget. Balanced, the lighter
#     weight decay is no longer needed: 12 epochs with 1e-4 0.91, with the default 5e-4 0.93;
#   * DeconvNet (12 epochs): the transposed convolutions initialised over their real fan-in (now
#     ``nn.ConvTranspose2d``'s default) 0.55 -> 0.65; its fc block makes its first layers start
#     27x hotter than its decoder (SegNet: 10x); with --balance-init 0.91. Here the lighter weight
#     decay did not help: balanced with 1e-4 it was at 0.65 after 8 epochs, with 5e-4 at 0.86.
#     Also tried: fc6 at 512 channels and 2x2 (global over pool5, as in the paper) with 1e-4,
#     0.54; batch 16 at lr 0.2, 0.57; balancing the cold layers up as well as the hot ones down,
#     worse than down only (0.60 against 0.65 after 9 / 8 epochs).
# The recipe of the networks without batch norm: a higher rate, 64-pixel crops, one warmup epoch.
FAST_SMALL = ["--lr", "0.04", "--size", "64", "--warmup-epochs", "1"]
RECIPES = {
    "default": (None, 5, 0.80, []),
    "fcn32s": ("fcn32s", 15, 0.85, ["--epochs", "5", *FAST_SMALL]),
    "fcn16s": ("fcn16s", 15, 0.85, ["--epochs", "5", *FAST_SMALL]),
    "fcn8s": ("fcn8s", 15, 0.85, ["--epochs", "5", *FAST_SMALL]),
    "deconvnet": ("deconvnet", 15, 0.85, ["--epochs", "12", "--size", "64",
                                          "--warmup-epochs", "1", "--balance-init"]),
    "segnet": ("segnet", 15, 0.85, ["--epochs", "12", "--size", "64", "--warmup-epochs", "1",
                                    "--balance-init"]),
    "segnet-basic": ("segnet-basic", 15, 0.85, ["--epochs", "16"]),
    "pspnet": ("pspnet", 15, 0.85, ["--epochs", "11", "--size", "64"]),
    # Issue 21's networks, first recipes (session 5, not tuned): FCN's recipe for the ones
    # without batch norm, PSPNet's for the ResNet one. One 8 x 3 x 64 x 64 forward + backward,
    # one thread, busy machine: LargeFOV 46 ms, v2-VGG 66 ms, v2-ResNet 33 ms, dilation8 49 ms,
    # U-Net padded 52 ms, U-Net valid 350 ms (its 64-pixel images become 252-pixel tiles).
    # First runs (2026-12-05, busy machine: seven agents on the two cores, epochs took about
    # twice the time measured above, so each run was stopped at 1.5x its budget): LargeFOV 0.817
    # within 15 min (0.829 after 7 epochs; not met, fewer epochs or a higher lr to try next),
    # U-Net padded 0.961 (target reached at 354 s). Later the same day, busier still (epochs took
    # 5-7 times the estimate): dilation8 0.389 within 15 min (0.583 after 3 epochs, still
    # climbing); U-Net valid finished no epoch in 22 min (1000 steps of 252-pixel tiles): not
    # measured. DeepLab v2 (2026-12-05, load 7-10): v2-VGG 0.839 after its 8 epochs (677 s),
    # v2-ResNet 0.783 within 15 min, 0.826 after 11 epochs; neither met 0.85.
    "deeplab-largefov": ("deeplab-largefov", 15, 0.85, ["--epochs", "10", "--lr", "0.04",
                                                        "--size", "64", "--warmup-epochs", "1"]),
    "deeplab-v2-vgg": ("deeplab-v2-vgg", 15, 0.85, ["--epochs", "8", "--lr", "0.04",
                                                    "--size", "64", "--warmup-epochs", "1"]),
    "deeplab-v2-resnet": ("deeplab-v2-resnet", 15, 0.85, ["--epochs", "11", "--size", "64"]),
    "dilation8": ("dilation8", 15, 0.85, ["--epochs", "10", *FAST_SMALL]),
    "unet-padded": ("unet-padded", 15, 0.85, ["--epochs", "10", *FAST_SMALL]),
    "unet": ("unet", 15, 0.85, ["--epochs", "2", *FAST_SMALL]),
}  # fmt: skip

SMOKE = ["--epochs", "1", "--train-images", "8", "--val-images", "4", "--size", "32",
         "--batch-size", "4"]  # fmt: skip


def thread_env(threads: int | None) -> dict:
    """Environment variables that hold one training process to ``threads`` threads (None: the
    library defaults, every core)."""
    if threads is None:
        return {}
    n = str(threads)
    names = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
    return dict.fromkeys(names, n)


def run_one(name: str, out: Path, smoke: bool, threads: int | None = None) -> dict:
    model, budget_min, target, extra = RECIPES[name]
    run_dir = out / "accuracy_runs" / name
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)
    cmd = [sys.executable, "-m", "minisegnet", "train", "--out", str(run_dir), "--no-progress"]
    if model is not None:
        cmd += ["--model", model]
    cmd += SMOKE if smoke else extra
    budget = budget_min * 60.0
    print(f"[{name}] {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.update(thread_env(threads))
    try:
        proc = subprocess.run(
            cmd,
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=None if smoke else budget * 1.5,
        )
        status = (
            "ok"
            if proc.returncode == 0
            else f"exit {proc.returncode}: {proc.stderr.strip()[-300:]}"
        )
    except subprocess.TimeoutExpired:
        status = "stopped at 1.5x the budget"
    wall = time.perf_counter() - t0
    history = []
    log = run_dir / "metrics.jsonl"
    if log.exists():
        history = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    elapsed, within = 0.0, []
    for record in history:
        elapsed = record["train_seconds"] + sum(
            r["eval_seconds"] for r in history[: history.index(record) + 1]
        )
        record["elapsed"] = elapsed
        if elapsed <= budget:
            within.append(record)
    best = max((r["val"]["miou"] for r in within), default=None)
    reached = [r for r in history if r["val"]["miou"] >= target]
    final = history[-1] if history else None
    row = {
        "name": name,
        "model": model or "segnet-basic (default)",
        "options": " ".join(SMOKE if smoke else extra) or "(none)",
        "budget_min": budget_min,
        "target": target,
        "epochs": len(history),
        "best_within_budget": best,
        "final_miou": final["val"]["miou"] if final else None,
        "final_pixel_acc": final["val"]["pixel_acc"] if final else None,
        "time_to_final": final["elapsed"] if final else None,
        "time_to_target": reached[0]["elapsed"] if reached else None,
        "wall_seconds": wall,
        "threads": threads or os.cpu_count(),
        "met": best is not None and best >= target,
        "status": status,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    print(
        f"[{name}] best mIoU within {budget_min} min: {best}, final {row['final_miou']}, "
        f"{wall:.0f} s wall, {status}",
        flush=True,
    )
    return row


def _fmt(x, pct=True):
    if x is None:
        return "n/a"
    return f"{100 * x:.1f}" if pct else f"{x:.0f}"


def write_table(rows, path: Path, smoke: bool) -> None:
    import numba

    lines = [
        "# Accuracy versus training time (built-in data, validation split)",
        "",
        f"Written by `benchmarks/accuracy.py{' --smoke' if smoke else ''}` on "
        f"{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}; {os.cpu_count()} CPU cores, "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"Numba {numba.__version__}.",
        "",
    ]
    if smoke:
        lines += ["**Smoke run: tiny settings; the numbers say nothing about the targets.**", ""]
    lines += [
        "Time = optimisation steps + the evaluation after every epoch (data generation and "
        "start-up excluded; the wall column includes them). Best mIoU is over the epochs that "
        "finished within the budget.",
        "",
        "| run | model | options | threads | epochs | best mIoU within budget (%) | "
        "final mIoU (%) | pixel acc (%) | time (s) | target reached at (s) | wall (s) | target | "
        "met | finished |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- "
        "| --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['model']} | `{r['options']}` | {r.get('threads', 'n/a')} | "
            f"{r['epochs']} | "
            f"{_fmt(r['best_within_budget'])} | {_fmt(r['final_miou'])} | "
            f"{_fmt(r['final_pixel_acc'])} | {_fmt(r['time_to_final'], False)} | "
            f"{_fmt(r.get('time_to_target'), False)} | "
            f"{_fmt(r['wall_seconds'], False)} | >= {100 * r['target']:.0f} in {r['budget_min']} min | "
            f"{'yes' if r['met'] else 'no'}{'' if r['status'] == 'ok' else ' (' + r['status'] + ')'} | "
            f"{r.get('date', 'n/a')} |"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    # hand-written sections after the table (## headings, e.g. the CRF's) survive a rerun
    kept = path.read_text().partition("\n## ")[2] if path.exists() else ""
    path.write_text("\n".join(lines) + "\n" + (f"\n## {kept}" if kept else ""))
    (path.with_suffix(".json")).write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {path}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--models",
        nargs="+",
        choices=[k for k in RECIPES if k != "default"],
        help="only these (default: all)",
    )
    parser.add_argument("--default-only", action="store_true", help="only the default run")
    parser.add_argument("--no-default", action="store_true", help="skip the default run")
    parser.add_argument("--smoke", action="store_true", help="tiny settings (checks the script)")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="runs at a time, each on cores/jobs threads (default 1: one run on every core)",
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="write only this invocation's rows (default: keep the other runs' rows from the "
        "existing results, so models can be rerun one at a time)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=HERE / "results",
        help="results folder (default benchmarks/results)",
    )
    args = parser.parse_args(argv)
    names = [] if args.no_default else ["default"]
    if not args.default_only:
        names += args.models or [k for k in RECIPES if k != "default"]
    if args.jobs < 1:
        parser.error(f"--jobs must be at least 1, got {args.jobs}")
    threads = None if args.jobs == 1 else max(1, (os.cpu_count() or 1) // args.jobs)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:  # each job is a subprocess
        rows = list(pool.map(lambda name: run_one(name, args.out, args.smoke, threads), names))
    table = args.out / ("accuracy-smoke.md" if args.smoke else "accuracy.md")
    if not args.replace and table.with_suffix(".json").exists():
        earlier = json.loads(table.with_suffix(".json").read_text())
        fresh = {r["name"] for r in rows}
        rows += [r for r in earlier if r["name"] not in fresh]
        order = list(RECIPES)
        rows.sort(key=lambda r: order.index(r["name"]) if r["name"] in order else len(order))
    write_table(rows, table, args.smoke)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Accuracy versus training time on the built-in data: the project's quality targets.

    python benchmarks/accuracy.py                   # every model + the default run (~1.5 h)
    python benchmarks/accuracy.py --models segnet pspnet
    python benchmarks/accuracy.py --default-only    # only `minisegnet train` with no options
    python benchmarks/accuracy.py --smoke           # tiny settings, checks the script (~1 min)

Targets (issue 6), measured on the built-in data's validation split, two CPU cores:

* every model family's small configuration reaches mean IoU >= 0.85 within 15 minutes of
  training (FCN: 32s/16s/8s, DeconvNet, SegNet: SegNet and SegNet-Basic, PSPNet);
* the default ``minisegnet train`` (no options) reaches mean IoU >= 0.80 within 5 minutes.

Each run is ``python -m minisegnet train ...`` in a subprocess (a fresh process, as a user runs
it), writing into ``<out>/accuracy_runs/<name>/``. The script reads the run's ``metrics.jsonl``
(one line per epoch, with cumulative training and evaluation seconds) and reports, per run, the
best validation mIoU reached while the training time (optimisation steps plus the per-epoch
evaluations) was within the budget, the final mIoU, and the times. A run that overruns its
budget by half is stopped; its finished epochs still count. Met or not, every row is recorded in
``results/accuracy.md``.

The recipes below (epochs, learning rate, images) were chosen so each run fits its budget on
the 2-core machine: ``images/s`` measured for the small presets at 64x64, batch 8, times the
budget, spread over enough distinct images that the network does not just memorise them.
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

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

# name -> (model, budget in minutes, target mIoU, extra `minisegnet train` options). All at the
# default size (40x40) and 8000 distinct training images; epochs fill about 80% of the budget at
# the training speed measured on the 2-core machine (8 x 3 x 40 x 40 training step: FCN 234 ms,
# DeconvNet 35 ms, SegNet 36 ms, SegNet-Basic 47 ms, PSPNet 24 ms). lr 0.1 for the networks with
# batch norm; FCN has none (as in the paper), so it gets 0.01.
RECIPES = {
    "default": (None, 5, 0.80, []),
    "fcn32s": ("fcn32s", 15, 0.85, ["--epochs", "3", "--lr", "0.01"]),
    "fcn16s": ("fcn16s", 15, 0.85, ["--epochs", "3", "--lr", "0.01"]),
    "fcn8s": ("fcn8s", 15, 0.85, ["--epochs", "3", "--lr", "0.01"]),
    "deconvnet": ("deconvnet", 15, 0.85, ["--epochs", "20"]),
    "segnet": ("segnet", 15, 0.85, ["--epochs", "20"]),
    "segnet-basic": ("segnet-basic", 15, 0.85, ["--epochs", "16"]),
    "pspnet": ("pspnet", 15, 0.85, ["--epochs", "30"]),
}

SMOKE = ["--epochs", "1", "--train-images", "8", "--val-images", "4", "--size", "32",
         "--batch-size", "4"]  # fmt: skip


def run_one(name: str, out: Path, smoke: bool) -> dict:
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
        "met": best is not None and best >= target,
        "status": status,
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
        "| run | model | options | epochs | best mIoU within budget (%) | final mIoU (%) | "
        "pixel acc (%) | time (s) | target reached at (s) | wall (s) | target | met |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | {r['model']} | `{r['options']}` | {r['epochs']} | "
            f"{_fmt(r['best_within_budget'])} | {_fmt(r['final_miou'])} | "
            f"{_fmt(r['final_pixel_acc'])} | {_fmt(r['time_to_final'], False)} | "
            f"{_fmt(r.get('time_to_target'), False)} | "
            f"{_fmt(r['wall_seconds'], False)} | >= {100 * r['target']:.0f} in {r['budget_min']} min | "
            f"{'yes' if r['met'] else 'no'}{'' if r['status'] == 'ok' else ' (' + r['status'] + ')'} |"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
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
        "--out",
        type=Path,
        default=HERE / "results",
        help="results folder (default benchmarks/results)",
    )
    args = parser.parse_args(argv)
    names = [] if args.no_default else ["default"]
    if not args.default_only:
        names += args.models or [k for k in RECIPES if k != "default"]
    rows = [run_one(name, args.out, args.smoke) for name in names]
    write_table(rows, args.out / ("accuracy-smoke.md" if args.smoke else "accuracy.md"), args.smoke)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The fully connected CRF's speed against the authors' code, and the lattice's error.

    python benchmarks/crf.py                     # 360x480, 11 classes, 10 iterations, 2 threads
    python benchmarks/crf.py --quick             # a 90x120 frame, for the tests
    python benchmarks/crf.py --miou              # also: mIoU with/without CRF, built-in data

What it measures.
* Time of ``ops.crf.dense_crf`` (Numba permutohedral lattice, ``--threads`` Numba threads)
  against ``pydensecrf2`` (Krähenbühl's C++, single-threaded) on the same frame and parameters
  (pydensecrf's example values: bilateral w1=10, theta_alpha=80, theta_beta=13; Gaussian w2=3,
  theta_gamma=3; symmetric normalisation, its default). Runs alternate between the two and the
  ratio is of medians, so a busy machine slows both alike (the load average is printed).
  The frame: a synthetic 360x480 scene (11 classes, piecewise constant colours plus noise) and a
  coarse prediction (the true labels, 30% of the coarse cells wrong, at 1/8 resolution,
  bilinearly upsampled and softened), what DeepLab's output stride 8 hands the CRF.
* Where the time goes: the lattice builds, one filter, one mean-field update.
* The lattice's error against the exact O(N^2) filter on a small image, raw and normalised.
* ``--miou``: a tiny SegNet-Basic trained on the built-in data through the CLI, evaluated
  with and without ``--crf``.

Writes benchmarks/results/crf.md (and prints it).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))


def frame(h, w, labels=11, seed=0):
    """(image (H, W, 3) uint8, probabilities (L, H, W) float32, truth (H, W))."""
    rng = np.random.default_rng(seed)
    # a Voronoi partition of the frame into regions of random classes
    centres = rng.random((40, 2)) * (h, w)
    rows, cols = np.mgrid[0:h, 0:w]
    dist = (rows[..., None] - centres[:, 0]) ** 2 + (cols[..., None] - centres[:, 1]) ** 2
    region = dist.argmin(-1)
    cls = rng.integers(0, labels, len(centres))
    truth = cls[region]
    palette = rng.integers(20, 235, (labels, 3))
    img = np.clip(palette[truth] + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
    # coarse scores at 1/8: the truth, with 30% of the cells wrong
    ch, cw = -(-h // 8), -(-w // 8)
    coarse = truth[::8, ::8][:ch, :cw].copy()
    wrong = rng.random(coarse.shape) < 0.3
    coarse[wrong] = rng.integers(0, labels, wrong.sum())
    scores = 2.0 * (np.arange(labels)[:, None, None] == coarse) + rng.normal(
        0, 0.5, (labels, ch, cw)
    )
    # bilinear x8 (separable linear interpolation)
    ys = np.clip((np.arange(h) + 0.5) / 8 - 0.5, 0, ch - 1)
    xs = np.clip((np.arange(w) + 0.5) / 8 - 0.5, 0, cw - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, ch - 1), np.minimum(x0 + 1, cw - 1)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    up = (
        scores[:, y0][:, :, x0] * (1 - fy) * (1 - fx)
        + scores[:, y1][:, :, x0] * fy * (1 - fx)
        + scores[:, y0][:, :, x1] * (1 - fy) * fx
        + scores[:, y1][:, :, x1] * fy * fx
    )
    p = np.exp(up - up.max(0))
    p /= p.sum(0)
    return img, p.astype(np.float32), truth


def pydensecrf_or_none():
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError:
        return None
    return dcrf


def reference(dcrf, img, p, params):
    L, h, w = p.shape
    d = dcrf.DenseCRF2D(w, h, L)
    d.setUnaryEnergy(np.ascontiguousarray(-np.log(p).reshape(L, -1)))
    d.addPairwiseGaussian(sxy=params.theta_gamma, compat=params.w2)
    d.addPairwiseBilateral(
        sxy=params.theta_alpha, srgb=params.theta_beta, rgbim=img, compat=params.w1
    )
    return np.array(d.inference(params.iterations)).reshape(L, h, w)


def miou(pred, truth, labels):
    ious = []
    for c in range(labels):
        inter = np.sum((pred == c) & (truth == c))
        union = np.sum((pred == c) | (truth == c))
        if union:
            ious.append(inter / union)
    return float(np.mean(ious))


def parts(crf, img, p, params, reps):
    """(min, median) process CPU ms of the pieces of one dense_crf call."""
    a, s = crf.crf_features(img, params)
    la, ls = crf.Lattice(a), crf.Lattice(s)
    q = np.ascontiguousarray(p.reshape(p.shape[0], -1).T)
    msg = [crf.make_filter(a, "lattice", "symmetric"), crf.make_filter(s, "lattice", "symmetric")]
    m1, m2 = msg[0](q), msg[1](q)
    mu = (1 - np.eye(p.shape[0])).astype(np.float32)
    out = np.empty_like(q)

    def t(fn):
        samples = []
        for _ in range(reps):
            t0 = time.process_time()
            fn()
            samples.append(time.process_time() - t0)
        return 1e3 * min(samples), 1e3 * statistics.median(samples)

    return {
        "build appearance lattice (d=5)": t(lambda: crf.Lattice(a)),
        "build smoothness lattice (d=2)": t(lambda: crf.Lattice(s)),
        "one appearance filter (11 channels)": t(lambda: la.filter(q)),
        "one smoothness filter (11 channels)": t(lambda: ls.filter(q)),
        "one mean-field update (fused, Potts)": t(
            lambda: crf._update2(q, m1, m2, np.float32(10), np.float32(3), mu, out, True)
        ),
    }


def lattice_error(crf, h=40, w=50):
    img, _, _ = frame(h, w, seed=1)
    params = crf.CRFParams()
    rows = []
    v = np.random.default_rng(0).random((h * w, 11))
    one = np.ones((h * w, 1))
    for name, f in zip(
        ("appearance (d=5)", "smoothness (d=2)"), crf.crf_features(img, params, np.float64)
    ):
        exact, lat = crf.exact_filter(f, v), crf.Lattice(f)
        approx = lat.filter(v)
        ne, na = exact / crf.exact_filter(f, one), approx / lat.filter(one)
        rows.append(
            (
                name,
                float(np.median(approx / exact)),
                float(np.linalg.norm(approx - exact) / np.linalg.norm(exact)),
                float(np.linalg.norm(na - ne) / np.linalg.norm(ne)),
            )
        )
    return rows


def trained_miou():
    """mIoU of a tiny SegNet-Basic on the built-in val split, without and with --crf."""
    import json
    import tempfile

    from minisegnet.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        tiny = ["--size", "64", "--train-images", "64", "--val-images", "16", "--batch-size", "8"]
        assert main(["train", "--model", "segnet-basic", "--epochs", "3", "--out", str(run),
                     "--no-progress", *tiny]) == 0  # fmt: skip
        out = {}
        for name, extra in (
            ("without CRF", []),
            ("with CRF", ["--crf", "--crf-theta-alpha", "20"]),
        ):
            stem = Path(tmp) / name.replace(" ", "_")
            assert main(["evaluate", "--checkpoint", str(run), "--out", str(stem), *extra]) == 0
            out[name] = json.loads(stem.with_suffix(".json").read_text())["miou"]
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[2, 1], help="Numba thread counts (2 1)"
    )
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="a 90x120 frame, 2 reps")
    parser.add_argument("--miou", action="store_true", help="also train and score a tiny model")
    parser.add_argument("--out", default=str(HERE / "results" / "crf.md"))
    args = parser.parse_args(argv)
    import numba

    from minisegnet.ops import crf

    h, w = (90, 120) if args.quick else (360, 480)
    reps = 2 if args.quick else args.reps
    img, p, truth = frame(h, w)
    params = crf.CRFParams()
    dcrf = pydensecrf_or_none()
    ours_t = {t: [] for t in args.threads}  # (wall s, process CPU s) per run
    ref_t = []

    def timed(fn):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        return out, (time.perf_counter() - w0, time.process_time() - c0)

    for t in args.threads:
        numba.set_num_threads(t)
        crf.dense_crf(img, p, params)  # compile / load the cached kernels
    for _ in range(reps):  # alternate: every implementation sees the same load
        for t in args.threads:
            numba.set_num_threads(t)
            q, sample = timed(lambda: crf.dense_crf(img, p, params))
            ours_t[t].append(sample)
        if dcrf is not None:
            r, sample = timed(lambda: reference(dcrf, img, p, params))
            ref_t.append(sample)
    load = os.getloadavg()

    def stats(samples):
        """(min wall, median wall, min CPU, median CPU) in ms."""
        wall, cpu = zip(*samples)
        return tuple(1e3 * f(v) for v in (wall, cpu) for f in (min, statistics.median))

    lines = [
        "# Fully connected CRF: speed and lattice error",
        "",
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on a BUSY shared 2-core "
        f"machine (load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} while running, "
        f"{reps} runs each): absolute times are inflated, the ratio less so (runs alternate). "
        "CPU is the process' CPU time: what the run cost, whatever else the machine did; on 1 "
        "thread it is the fairest comparison on a loaded machine. "
        "Rerun: `python benchmarks/crf.py" + (" --quick" if args.quick else "") + "`.",
        "",
        f"Frame {h}x{w}, 11 classes, {params.iterations} mean-field iterations, {params!r}; "
        "minisegnet with the Numba threads given, pydensecrf2 single-threaded (its only mode).",
        "",
        "| implementation | wall ms min / median | CPU ms min / median | ratio to pydensecrf2 "
        "(median wall; median CPU) | pixel acc. (coarse input: "
        f"{np.mean(p.argmax(0) == truth):.3f}) | mIoU (input {miou(p.argmax(0), truth, 11):.3f}) |",
        "|---|---|---|---|---|---|",
    ]
    ref = stats(ref_t) if dcrf is not None else None
    if dcrf is not None:
        lines.append(
            f"| pydensecrf2 | {ref[0]:.0f} / {ref[1]:.0f} | {ref[2]:.0f} / {ref[3]:.0f} | 1.00 | "
            f"{np.mean(r.argmax(0) == truth):.3f} | {miou(r.argmax(0), truth, 11):.3f} |"
        )
    for t, samples in ours_t.items():
        ours = stats(samples)
        ratio = (
            f"{ours[1] / ref[1]:.2f}; {ours[3] / ref[3]:.2f}"
            if ref
            else "n/a (pydensecrf2 not installed: pip install .[crf])"
        )
        lines.append(
            f"| minisegnet lattice, {t} thread{'s' if t > 1 else ''} | {ours[0]:.0f} / "
            f"{ours[1]:.0f} | {ours[2]:.0f} / {ours[3]:.0f} | {ratio} | "
            f"{np.mean(q.argmax(0) == truth):.3f} | {miou(q.argmax(0), truth, 11):.3f} |"
        )
    if dcrf is not None:
        lines += [
            "",
            f"Agreement with pydensecrf2: labels {np.mean(q.argmax(0) == r.argmax(0)):.4f}, "
            f"max |Q - Q_ref| {np.abs(q - r).max():.2e}.",
        ]
    numba.set_num_threads(min(args.threads))  # CPU time on 1 thread: no spinning workers
    lines += [
        "",
        f"Where minisegnet's time goes ({min(args.threads)} thread(s), process CPU ms):",
        "",
        "| part | CPU ms min / median |",
        "|---|---|",
    ]
    lines += [
        f"| {k} | {lo:.1f} / {med:.1f} |"
        for k, (lo, med) in parts(crf, img, p, params, reps).items()
    ]
    lines += [
        "",
        "Lattice against the exact O(N^2) filter, 40x50 image, default widths (raw: the "
        "lattice's Gaussian has less total mass; normalised: what the CRF uses):",
        "",
        "| kernel | raw mass ratio | raw rel. L2 error | normalised rel. L2 error |",
        "|---|---|---|---|",
    ]
    lines += [f"| {n} | {m:.3f} | {e:.3f} | {ne:.4f} |" for n, m, e, ne in lattice_error(crf)]
    if args.miou:
        scores = trained_miou()
        lines += [
            "",
            "Tiny SegNet-Basic (3 epochs, 64 images of 64x64, built-in data), val mIoU: "
            + ", ".join(f"{k} {v:.3f}" for k, v in scores.items())
            + " (CRF: theta_alpha 20, the rest default).",
        ]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Issue 19's table: the CPU fast paths beside PyTorch CPU, and each fast path's error.

    python benchmarks/bench_fast_paths.py            # writes benchmarks/results/fast_paths.md
    python benchmarks/bench_fast_paths.py --quick    # tiny shapes: checks the script runs

One process, minisegnet's numba backend and PyTorch CPU with the same number of threads (2, or
fewer on a smaller machine) and passive OpenMP waiting on both sides (OMP_WAIT_POLICY=PASSIVE is
set before NumPy, Numba or PyTorch load), forward + backward from a fixed output gradient,
the frameworks interleaved within every repetition (``bench_common.interleaved``), min and
median of the timed repetitions after warm-ups. The convolutions and the cross-entropy are also
timed with their fast path switched off (``conv_winograd.winograd(False)``,
``conv_winograd_7x7.winograd_7x7(False)``, the transposed convolution's stride phases off,
``loss_fused.ENABLED = False``) in the same run, so what each path
buys is a ratio taken under the same load. The report states the machine's load and
the CPU share other processes took: on a shared machine every number is inflated, and the
ratios are the part to read.

Errors: float32 results of each path against the same computation in float64 (the direct
im2col convolution, the reference cross-entropy), as max |error| / max |exact|.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before NumPy/Numba/PyTorch start threads

import argparse  # noqa: E402
import contextlib  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import bench_common  # noqa: E402
import bench_models  # noqa: E402
import bench_ops  # noqa: E402

OP_NAMES = [
    ("conv2d", "conv2d 3x3"),
    ("conv2d_dilated", "conv2d 3x3 dilation 2"),
    ("conv_transpose2d_up2", "conv_transpose2d k4 s2"),
    ("conv2d_7x7", "conv2d 7x7 (SegNet-Basic)"),
    ("cross_entropy", "cross_entropy 21 classes"),
    ("max_pool2d", "max_pool2d"),
    ("max_unpool2d", "max_unpool2d"),
    ("pyramid_pooling", "PSP bins"),
    ("bilinear_x8", "bilinear x8"),
]
TARGETS = {  # issue 19: fwd+bwd at most this x PyTorch
    "conv2d": 0.8,
    "conv2d_dilated": 0.9,
    "conv_transpose2d_up2": 1.1,
    "conv2d_7x7": 1.1,
    "cross_entropy": 1.0,
    "segnet_basic": 1.1,
}


def _switched_off(name):
    """Context with the fast path of op case ``name`` off (None: the case has none)."""
    from minisegnet.ops import conv_stride_phases, conv_winograd, conv_winograd_7x7, loss_fused

    if name in ("conv2d", "conv2d_dilated"):
        return conv_winograd.winograd(False)
    if name == "conv2d_7x7":  # the stacked row-shift path (ops/conv_row_stack.py)
        return conv_winograd_7x7.winograd_7x7(False)
    if name == "conv_transpose2d_up2":  # the band path's GEMM + col2im for the forward
        return _flag_off(conv_stride_phases, "ENABLED")
    if name == "cross_entropy":
        return _flag_off(loss_fused, "ENABLED")
    return None


@contextlib.contextmanager
def _flag_off(module, flag):
    """``module.flag`` set to False for the duration."""
    previous = getattr(module, flag)
    setattr(module, flag, False)
    try:
        yield
    finally:
        setattr(module, flag, previous)


def time_ops(quick, warmup, reps, log):
    """Rows: op, title, (min, median) ms of numba / numba without its fast path / torch."""
    cases = {c.name: c for c in bench_ops.op_cases(quick)}
    numba, torch_fw = bench_common.Framework("numba"), bench_common.Framework("torch")
    have_torch = bench_common.torch_or_none() is not None
    rows = []
    for name, label in OP_NAMES:
        case = cases[name]
        arrays = bench_ops.host_inputs(case)
        runs = {}
        contexts = {"numba": lambda: numba.active()}
        if _switched_off(name) is not None:

            @contextlib.contextmanager
            def off_context(name=name):
                with numba.active(), _switched_off(name):
                    yield

            contexts["off"] = off_context
        if have_torch:
            contexts["torch"] = lambda: torch_fw.active()
        for key, context in contexts.items():
            fw = torch_fw if key == "torch" else numba
            with context():
                runner = bench_ops.CaseRunner(fw, case, arrays)  # fwd+bwd once: JIT compiles
            runs[key] = (context, lambda runner=runner: runner.once())
        row = {"op": name, "label": label, "title": case.title}
        row.update(bench_common.interleaved(runs, warmup, reps))
        times = "  ".join(f"{k} {row[k][1]:8.2f} ms" for k in ("numba", "off", "torch") if k in row)
        log(f"  {name:22s} {times}  (median)")
        rows.append(row)
    return rows


def time_training_step(quick, warmup, reps, log):
    """SegNet-Basic (width 1, 4x3x96x128; tiny in quick mode) training step, both frameworks,
    interleaved."""
    import minisegnet as ms

    entries = bench_models.plan(quick)
    entry = next(e for e in entries if e["name"] == "segnet_basic" and (quick or e["config"]))
    with ms.backend.use("numba"):
        runner = bench_models.MsRunner(entry)
        runner.train_step()  # JIT compiles
    runs = {"numba": (lambda: ms.backend.use("numba"), runner.train_step)}
    if bench_common.torch_or_none() is not None:
        torch_runner = bench_models.TorchRunner(entry)
        torch_runner.train_step()
        runs["torch"] = (contextlib.nullcontext, torch_runner.train_step)
    row = {"op": "segnet_basic", "label": f"SegNet-Basic training step ({entry['label']})"}
    n, (h, w) = entry["batch"], entry["size"]
    row["title"] = f"{n}x3x{h}x{w}, SGD momentum"
    row.update(bench_common.interleaved(runs, warmup, reps))
    log(
        "  segnet_basic           "
        + "  ".join(f"{k} {v[1]:8.2f} ms" for k, v in row.items() if k in runs)
    )
    return row


def measure_errors(quick):
    """max |float32 - float64| / max |float64| of each path, on one seeded problem each."""
    import minisegnet as ms
    import minisegnet.functional as F
    from minisegnet.ops import conv, conv_engine, conv_winograd, loss, loss_fused

    rng = np.random.default_rng(0)
    n, c, s = (1, 16, 8) if quick else (2, 64, 32)
    x = rng.standard_normal((n, c, s, s))
    w = rng.standard_normal((c, c, 3, 3)) / np.sqrt(9 * c)
    dy = rng.standard_normal((n, c, s, s))
    geometry = ((1, 1), (1, 1), (1, 1), 1)
    exact = {
        "y": conv._gemm_by_images(x, w, *geometry, None),
        "dx": conv._data_grad_by_images(dy, w, (s, s), *geometry),
        "dw": conv._weight_grad_by_images(x, dy, (3, 3), *geometry),
    }
    x32, w32, dy32 = (a.astype(np.float32) for a in (x, w, dy))
    variants = {
        "Winograd F(2x2,3x3)": conv_winograd.F2,
        "Winograd F(4x4,3x3)": conv_winograd.F4,
        "Winograd F(6x6,3x3)": conv_winograd.F6,
    }
    paths = {
        path: (
            conv_winograd.conv2d_forward(x32, w32, (1, 1), f=f),
            conv_winograd.conv2d_data_grad(dy32, w32, (s, s), (1, 1), f=f),
            conv_winograd.conv2d_weight_grad(x32, dy32, (1, 1), f=f),
        )
        for path, f in variants.items()
    }
    with conv_winograd.winograd(False):
        paths["direct (im2col / row-shift)"] = (
            conv_engine.conv2d_forward(x32, w32, *geometry, None),
            conv_engine.conv2d_data_grad(dy32, w32, (s, s), *geometry),
            conv_engine.conv2d_weight_grad(x32, dy32, (3, 3), *geometry),
        )
    rows = []
    for path, results in paths.items():
        errors = [
            float(np.abs(got - exact[k]).max() / np.abs(exact[k]).max())
            for k, got in zip(("y", "dx", "dw"), results)
        ]
        bound = None
        if path in variants:
            bound = conv_winograd.error_bound(x32, w32, (1, 1), variants[path]).max()
            bound /= np.abs(exact["y"]).max()
        rows.append({"path": path, "errors": errors, "bound": bound})
    rows += _errors_7x7(rng, n, c, s)
    # cross-entropy: the vectorised passes against the float64 reference
    k, hw = (5, 6) if quick else (21, 64)
    z = rng.normal(0, 3, (n, k, hw, hw))
    t = rng.integers(0, k, (n, hw, hw))
    t[rng.random(t.shape) < 0.05] = 255
    loss64, w64 = loss.cross_entropy_forward_ref(z, t, None, 255)
    scale = np.full(t.shape, 1 / w64.sum())
    grad64 = loss.cross_entropy_backward_ref(z, t, None, 255, scale)
    loss32, _, grad32 = loss_fused.cross_entropy_fused(z.astype(np.float32), t, None, 255, "mean")
    mean32 = float(loss32.sum(dtype=np.float64) / w64.sum())
    mean64 = float(loss64.sum() / w64.sum())
    rows.append(
        {
            "path": "cross_entropy vectorised passes",
            "errors": [
                abs(mean32 - mean64) / abs(mean64),
                float(np.abs(grad32 - grad64).max() / np.abs(grad64).max()),
            ],
            "bound": None,
        }
    )
    del ms, F
    return rows, (n, c, s), (n, k, hw)


def _errors_7x7(rng, n, c, s):
    """The same rows for 7x7 filters (padding 3): Winograd F(2x2, 7x7) and the stacked row-shift
    path, each against the float64 direct convolution."""
    from minisegnet.ops import conv, conv_engine, conv_winograd, conv_winograd_7x7

    x = rng.standard_normal((n, c, s, s))
    w = rng.standard_normal((c, c, 7, 7)) / np.sqrt(49 * c)
    dy = rng.standard_normal((n, c, s, s))
    geometry = ((1, 1), (3, 3), (1, 1), 1)
    exact = (
        conv._gemm_by_images(x, w, *geometry, None),
        conv._data_grad_by_images(dy, w, (s, s), *geometry),
        conv._weight_grad_by_images(x, dy, (7, 7), *geometry),
    )
    x32, w32, dy32 = (a.astype(np.float32) for a in (x, w, dy))
    winograd = (
        conv_winograd_7x7.conv2d_forward(x32, w32, (3, 3)),
        *conv_winograd_7x7.conv2d_grads(x32, dy32, w32, (3, 3)),
    )
    with conv_winograd_7x7.winograd_7x7(False):
        stacked = (
            conv_engine.conv2d_forward(x32, w32, *geometry, None),
            conv_engine.conv2d_data_grad(dy32, w32, (s, s), *geometry),
            conv_engine.conv2d_weight_grad(x32, dy32, (7, 7), *geometry),
        )
    bound = conv_winograd.error_bound(x32, w32, (3, 3), conv_winograd_7x7.F2_7X7).max()
    rows = []
    for path, results, b in (
        ("Winograd F(2x2,7x7)", winograd, bound / np.abs(exact[0]).max()),
        ("direct 7x7 (stacked row-shift)", stacked, None),
    ):
        errors = [float(np.abs(g - e).max() / np.abs(e).max()) for g, e in zip(results, exact)]
        rows.append({"path": path, "errors": errors, "bound": b})
    return rows


def fmt(v, digits=2):
    return "" if v is None else f"{v:.{digits}f}"


def report(ops, step, errors, shapes, env, others, quick) -> str:
    (n, c, s), (cn, k, hw) = shapes
    busy = others is not None and others > 0.1
    lines = [
        "# CPU fast paths beside PyTorch (issue 19)",
        "",
        "Written by `python benchmarks/bench_fast_paths.py`"
        + (" --quick (tiny shapes: a smoke run, not a measurement)" if quick else "")
        + f" on {env['date']}. minisegnet numba backend and PyTorch {env.get('torch')} CPU in one "
        f"process, {env['threads']} threads each, OMP_WAIT_POLICY=PASSIVE, forward + backward, "
        "median ms, the frameworks interleaved within every repetition, each timed call after an "
        "untimed one of the same run (`interleaved`: this machine's speed drifts within minutes, "
        "and a framework's idle threads slow the other's next call). Ratio = minisegnet / PyTorch (lower is better), "
        "of the medians and of the minima (the least disturbed repetitions); 'fast path off' is "
        "the same op with its new path switched off, in the same repetitions.",
        "",
        f"Load average {env['load_average']}; other processes took "
        f"{'unknown' if others is None else f'{100 * others:.0f}%'} of the CPU during the run. "
        "OpenMP wake-up (an empty two-thread Numba kernel, `bench_common.openmp_wakeup_us`) at "
        "start / end: "
        + " / ".join("-" if v is None else f"{v:.0f} us" for v in env["openmp_wakeup_us"])
        + " (PyTorch's small-model times move with it more than minisegnet's: see there)."
        + (
            " **Busy machine: every time is inflated and noisy (a two-thread kernel waits for "
            "the thread the scheduler put aside); read the ratios, and rerun on a quiet machine.**"
            if busy
            else ""
        ),
        "",
        "| case | shapes | minisegnet ms | fast path off ms | PyTorch ms | ratio | ratio of "
        "minima | off ratio | target |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in ops + [step]:
        median = {k: r[k][1] for k in ("numba", "off", "torch") if k in r}
        ratio = median["numba"] / median["torch"] if "torch" in r else None
        of_minima = r["numba"][0] / r["torch"][0] if "torch" in r else None
        off = median["off"] / median["torch"] if "off" in r and "torch" in r else None
        target = TARGETS.get(r["op"])
        lines.append(
            f"| {r['label']} | {r['title']} | {fmt(median['numba'])} | {fmt(median.get('off'))} | "
            f"{fmt(median.get('torch'))} | {fmt(ratio)} | {fmt(of_minima)} | {fmt(off)} | "
            f"{'' if target is None else f'<= {target}'} |"
        )
    lines += [
        "",
        "## Error of each fast path",
        "",
        f"float32 against the same computation in float64: convolution 3x3 (and 7x7, padding 3) "
        f"{c}->{c} on {n}x{c}x{s}x{s} (N(0, 1) data, weights N(0, 1/(9C)), N(0, 1/(49C))), "
        f"cross-entropy {k} classes on "
        f"{cn}x{k}x{hw}x{hw} logits N(0, 3^2), 5% ignored. max |error| / max |exact|.",
        "",
        "| path | y (or loss) | dx (or dlogits) | dw | stated bound on y |",
        "|---|---|---|---|---|",
    ]
    for r in errors:
        cells = [f"{v:.1e}" for v in r["errors"]] + [""] * (3 - len(r["errors"]))
        cells.append("" if r["bound"] is None else f"{r['bound']:.1e}")
        lines.append(f"| {r['path']} | " + " | ".join(cells) + " |")
    from minisegnet.ops import conv_winograd as cw
    from minisegnet.ops import conv_winograd_7x7 as w7

    lines += [
        "",
        "The bound is `conv_winograd.error_bound` (gamma_{C+13} for F2, gamma_{C+24} for F4, "
        f"gamma_{{C+32}} for F6, gamma_{{C+{w7.ROUNDINGS}}} for F(2x2,7x7), times the "
        "absolute-value Winograd evaluation, "
        "ops/conv_winograd.py), largest entry over max |y|. The numba backend's Winograd path "
        f"takes 3x3 convolutions with {cw.MIN_CHANNELS}+ channels and "
        f"{cw.MIN_PIXELS_PER_CHANNEL}+ output pixels per channel per image "
        f"(`conv_winograd.MIN_CHANNELS`, `MIN_PIXELS_PER_CHANNEL`), or dilated ones with "
        f"{cw.DILATED_MIN_CHANNELS}+ channels and {cw.DILATED_MIN_PIXELS_PER_CHANNEL}+ pixels per "
        "channel over the batch (`DILATED_MIN_CHANNELS`, `DILATED_MIN_PIXELS_PER_CHANNEL`): both "
        f"3x3 cases above, the undilated one with F6 ({cw.F6_MIN_PIXELS}+ output pixels over the "
        "batch, `F6_MIN_PIXELS`), the dilated one with F4 reading its 4 sub-grids in place; "
        "'fast path off' is the row-shift path. 7x7 convolutions take F(2x2, 7x7) "
        f"(ops/conv_winograd_7x7.py) with {w7.MIN_CHANNELS}+ channels and "
        f"{w7.MIN_PIXELS_PER_CHANNEL}+ output pixels per channel per image "
        "(`conv_winograd_7x7.MIN_CHANNELS`, `MIN_PIXELS_PER_CHANNEL`), each worker thread "
        "running its own chunks; 'fast path off' is the stacked row-shift path "
        "(ops/conv_row_stack.py).",
        "",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes, one repetition")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "fast_paths.md")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import numba

    threads = max(1, min(args.threads, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(threads)
    bench_common.configure_torch_threads()
    warmup, reps = (1, 1) if args.quick else (2, args.reps)
    log = print
    share = bench_common.CpuShare()
    wakeup_start = bench_common.openmp_wakeup_us()
    t0 = time.perf_counter()
    ops = time_ops(args.quick, warmup, reps, log)
    step = time_training_step(args.quick, warmup, 1 if args.quick else 5, log)
    errors, *shapes = measure_errors(args.quick)
    others = share.others()
    env = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "torch": getattr(bench_common.torch_or_none(), "__version__", None),
        "threads": threads,
        "load_average": bench_common.load_average(),
        "openmp_wakeup_us": (wakeup_start, bench_common.openmp_wakeup_us()),
    }
    text = report(ops, step, errors, shapes, env, others, args.quick)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    log(f"wrote {args.out} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

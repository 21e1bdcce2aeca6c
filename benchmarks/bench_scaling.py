"""Scaling: forward+backward time of conv2d (3x3, C->C) and max_pool2d (2x2 with switches) against
image size (batch fixed) and against batch size (image fixed), minisegnet numba beside PyTorch.

A kernel that scales well shows a straight line of slope 1 on the log-log plot against pixels;
a ratio to PyTorch that drifts with size shows where a cache or a parallel split stops working.
"""

from __future__ import annotations

from bench_common import short_error
from bench_ops import F32, Input, OpCase, conv_flops, host_inputs, time_case


def conv_case(n, c, s) -> OpCase:
    return OpCase(
        "conv2d",
        f"3x3 {c}->{c} {n}x{c}x{s}x{s}",
        {"x": Input((n, c, s, s)), "w": Input((c, c, 3, 3), "p", scale=0.05)},
        lambda F, t: F.conv2d(t["x"], t["w"], padding=1),
        flops=conv_flops(n, c, c, 3, 3, s, s),
    )


def pool_case(n, c, s) -> OpCase:
    n_in, n_out = n * c * s * s, n * c * (s // 2) ** 2
    return OpCase(
        "max_pool2d",
        f"2x2 {n}x{c}x{s}x{s}",
        {"x": Input((n, c, s, s))},
        lambda F, t: F.max_pool2d(t["x"], 2, 2, return_indices=True)[0],
        bytes=(F32 * (n_in + n_out) + n_out, F32 * (n_in + n_out) + n_out),
    )


def plan(quick: bool) -> dict:
    if quick:
        return {
            "channels": 4,
            "sizes": [16, 32],
            "size_batch": 1,
            "batches": [1, 2],
            "batch_size_px": 16,
        }
    return {
        "channels": 64,
        "sizes": [64, 128, 256, 512],
        "size_batch": 1,
        "batches": [1, 2, 4, 8, 16],
        "batch_size_px": 64,
    }


def run(frameworks, settings, log) -> dict:
    """Rows: {op, sweep ("size"|"batch"), n, size, framework, total_ms}."""
    p = plan(settings.quick)
    warmup, reps = (0, 1) if settings.quick else (1, 3)
    points = [("size", p["size_batch"], s) for s in p["sizes"]]
    points += [("batch", n, p["batch_size_px"]) for n in p["batches"]]
    rows = []
    for make in (conv_case, pool_case):
        for sweep, n, s in points:
            case = make(n, p["channels"], s)
            arrays = host_inputs(case)
            for fw in frameworks:
                row = {"op": case.name, "sweep": sweep, "n": n, "size": s, "framework": fw.name}
                try:
                    r = time_case(fw, case, arrays, warmup, reps)
                    row["total_ms"] = r["total_ms"]
                    log(
                        f"  {case.name:10s} {sweep:5s} n={n:<3d} {s:4d}px {fw.name:6s} "
                        f"{r['total_ms']:9.2f} ms"
                    )
                except Exception as error:
                    row["error"] = short_error(error)
                    log(f"  {case.name:10s} {sweep} n={n} {s}px {fw.name}: {row['error']}")
                rows.append(row)
    return {"plan": p, "rows": rows}


def plot(result: dict, out_dir, log) -> list[str]:
    """Two PNGs (image size, batch size), each with conv2d and max_pool2d panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = []
    p = result["plan"]
    for sweep, xlabel, fixed in (
        ("size", "image size (pixels per side)", f"batch {p['size_batch']}"),
        ("batch", "batch size", f"{p['batch_size_px']}x{p['batch_size_px']} images"),
    ):
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        for ax, op in zip(axes, ("conv2d", "max_pool2d")):
            rows = [r for r in result["rows"] if r["op"] == op and r["sweep"] == sweep]
            for fw in sorted({r["framework"] for r in rows}):
                pts = [
                    (r["size"] if sweep == "size" else r["n"], r["total_ms"])
                    for r in rows
                    if r["framework"] == fw and "total_ms" in r
                ]
                if pts:
                    xs, ys = zip(*pts)
                    label = "PyTorch CPU" if fw == "torch" else f"minisegnet {fw}"
                    ax.plot(xs, ys, marker="o", label=label)
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_xlabel(xlabel)
            ax.set_ylabel("forward+backward (ms, median)")
            what = (
                f"conv2d 3x3 {p['channels']}->{p['channels']}"
                if op == "conv2d"
                else (f"max_pool2d 2x2 + switches, {p['channels']} ch")
            )
            ax.set_title(f"{what}, {fixed}", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend()
        fig.tight_layout()
        name = f"scaling_{sweep}.png"
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        files.append(name)
        log(f"  wrote {out_dir / name}")
    return files

"""The GPU check: everything the ``cuda`` backend promises, measured in one go (a few minutes).

    python benchmarks/gpu_check.py                      # on a machine with an NVIDIA GPU
    python benchmarks/gpu_check.py --backend cuda-emu --quick --out /tmp/gpu.md   # rehearsal

On the device, beside PyTorch on the same GPU:

1. **correctness**: every benchmark op (``bench_ops.op_cases``), forward and every gradient,
   against PyTorch with TF32 off (max relative error per output and gradient);
2. **ops**: forward+backward time of every op (CUDA events would time the kernels alone; the
   wall clock around a synchronised call, used here as everywhere in ``benchmarks/``, includes
   the host work the user waits for), PyTorch with TF32 off and on, the ratio to TF32 off (the
   issue's targets compare float32 with float32), peak device memory of each side, and the host
   time of one call (the time until Python gets control back, before the GPU finishes);
3. **models**: one SGD training step of every network (small presets, 4x3x64x64) and of
   SegNet-Basic (width 1) and SegNet (VGG16-BN) at 4x3x360x480, beside the PyTorch twins in
   ``torch_models.py``, with peak device memory;
4. **the default job**: ``minisegnet train`` for one epoch on the backend;
5. **issue 15's kernels** against their fallbacks and PyTorch (``gpu_kernels.py``, appended to
   the same file; ``--skip kernels`` leaves it out);

and writes ``benchmarks/results/gpu.md`` naming the device. With ``--backend cuda-emu`` the same
script runs the CUDA C kernels in the CPU emulator beside PyTorch CPU (tiny shapes with
``--quick``): a rehearsal that proves the script before device time is spent on it.
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
if (HERE.parent / "minisegnet" / "__init__.py").is_file():
    sys.path.insert(1, str(HERE.parent))

import bench_models  # noqa: E402
import bench_ops  # noqa: E402
from bench_common import Framework, fmt, median_ms, quiet_gc, time_call  # noqa: E402

import minisegnet as ms  # noqa: E402
from minisegnet.arrays import to_host  # noqa: E402


# ----------------------------------------------------------------------------- PyTorch on a device
@dataclass
class TorchOn(Framework):
    """PyTorch on ``device`` ("cuda" or "cpu"), with TF32 allowed or not (cuDNN and cuBLAS)."""

    device: str = "cpu"
    tf32: bool = False

    @property
    def label(self) -> str:
        return f"PyTorch {self.device}" + (" TF32" if self.tf32 else "")

    def array(self, a: np.ndarray):
        return super().array(a).to(self.device)

    @contextlib.contextmanager
    def active(self):
        import torch

        saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = self.tf32
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved

    def sync(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()


def torch_host(t) -> np.ndarray:
    return t.detach().cpu().numpy()


# ----------------------------------------------------------------------------- device memory
class Memory:
    """Peak device memory of a block, for minisegnet (CuPy's pool) and PyTorch (its caching
    allocator). CuPy has no peak counter: the pool is emptied before the block, and the bytes
    it holds after it are the most that was held at once (freed blocks are kept for reuse, so
    the pool grows only when more is needed at the same time). Nothing on the CPU emulator."""

    def __init__(self, on_gpu: bool):
        self.on_gpu = on_gpu

    def minisegnet_peak(self, fn) -> float | None:
        if not self.on_gpu:
            fn()
            return None
        import cupy

        pool = cupy.get_default_memory_pool()
        cupy.cuda.Device().synchronize()
        pool.free_all_blocks()
        fn()
        cupy.cuda.Device().synchronize()
        return pool.total_bytes() / 2**20

    def torch_peak(self, fn) -> float | None:
        if not self.on_gpu:
            fn()
            return None
        import torch

        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20


# ----------------------------------------------------------------------------- 1. correctness
def float_outputs(outs) -> list:
    """The differentiable outputs (pooling also returns its integer switches)."""
    floats = []
    for o in outs:
        if hasattr(o, "is_floating_point"):  # a torch tensor
            if o.is_floating_point():
                floats.append(o)
        elif getattr(o, "dtype", None) is not None and o.dtype.kind == "f":
            floats.append(o)
    return floats


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a - b).max(initial=0) / max(1e-6, np.abs(b).max(initial=0)))


def check_case(case, mine: Framework, torch_fw: TorchOn) -> dict:
    arrays = bench_ops.host_inputs(case)
    results = {}
    for fw in (mine, torch_fw):
        with fw.active():
            runner = bench_ops.CaseRunner(fw, case, arrays)
            outs = bench_ops.as_tuple(case.forward(fw.F, runner.t))
            floats = float_outputs(outs)
            fw.backward(floats, runner.grads[: len(floats)])
            host = torch_host if fw is torch_fw else (lambda t: to_host(t.data))
            grads = {
                name: (torch_host(t.grad) if fw is torch_fw else to_host(t.grad))
                for name, t in runner.t.items()
                if getattr(t, "grad", None) is not None
            }
            results[fw.name] = ([host(o) for o in floats], grads)
    (m_out, m_grads), (t_out, t_grads) = results[mine.name], results[torch_fw.name]
    errors = {f"out{i}": relative_error(a, b) for i, (a, b) in enumerate(zip(m_out, t_out))}
    errors.update({f"d{k}": relative_error(m_grads[k], t_grads[k]) for k in t_grads})
    return {"op": case.name, "errors": errors, "max": max(errors.values(), default=0.0)}


# ----------------------------------------------------------------------------- 2. ops
def host_time_one_call(fw: Framework, reps: int = 200) -> float:
    """Microseconds of host time for a one-element ReLU (the cost of an op, not of its math)."""
    with fw.active():
        x = fw.tensor(np.ones(1, np.float32))
        relu = fw.F.relu
        for _ in range(10):
            relu(x)
        fw.sync()
        t0 = time.perf_counter()
        for _ in range(reps):
            relu(x)
        seconds = time.perf_counter() - t0
        fw.sync()
    return 1e6 * seconds / reps


def time_op(case, fw: Framework, arrays, memory: Memory, is_torch: bool, reps: int) -> dict:
    with fw.active():
        runner = bench_ops.CaseRunner(fw, case, arrays)
        for _ in range(2):
            runner.once()
        samples, host = [], []
        with quiet_gc():
            for _ in range(reps):
                samples.append(runner.once()[2])
                fw.sync()
                t0 = time.perf_counter()
                outs = bench_ops.as_tuple(case.forward(fw.F, runner.t))
                fw.backward(outs, runner.grads)
                host.append(time.perf_counter() - t0)
                fw.sync()
                del outs
                fw.clear_grads(runner.leaves)
        peak = (memory.torch_peak if is_torch else memory.minisegnet_peak)(lambda: runner.once())
        launches = None if is_torch else launches_of(lambda: runner.once(), fw.sync)
    return {"ms": median_ms(samples), "host_ms": median_ms(host), "peak_mb": peak,
            "launches": launches}  # fmt: skip


def launches_of(fn, sync) -> int:
    """CUDA C kernel launches (``minisegnet.cuda.launch.launch_count``) made by one call of
    ``fn``: a measure of host work (each launch costs a few microseconds of Python)."""
    from minisegnet.cuda.launch import launch_count

    sync()
    before = launch_count()
    fn()
    sync()
    return launch_count() - before


# ----------------------------------------------------------------------------- 3. models
def model_plan(quick: bool) -> list[dict]:
    rows = bench_models.plan(quick)
    if quick:
        return [r for r in rows if r["name"] in ("segnet_basic", "fcn8s")]
    rows = [r for r in rows if r["label"] != "segnet_basic (width 1)"]
    for r in rows:
        r["label"] = f"{r['name']} (small, 4x3x64x64)"
    rows.append(
        {"label": "segnet_basic (width 1, 4x3x360x480)", "name": "segnet_basic",
         "config": {"width": 1.0}, "batch": 4, "size": (360, 480), "classes": 11}
    )  # fmt: skip
    rows.append(
        {"label": "segnet (VGG16-BN, 4x3x360x480)", "name": "segnet",
         "config": {"width": 1.0}, "batch": 4, "size": (360, 480), "classes": 11}
    )  # fmt: skip
    return rows


def time_model(entry, backend: str, torch_device: str, memory: Memory, reps: int) -> dict:
    import torch
    import torch_models

    row = {"model": entry["label"]}
    with ms.backend.use(backend):
        model = bench_models.build_ms(entry)
        bench_models.randomize_ms(model)
        runner = bench_models.MsRunner(entry, model)
        sync = Framework(backend).sync
        for _ in range(2):
            runner.train_step()
        sync()
        row["ms"] = median_ms(time_call(runner.train_step, 0, reps, sync))
        row["peak_mb"] = memory.minisegnet_peak(runner.train_step)
        row["launches"] = launches_of(runner.train_step, sync)
    tmodel = bench_models.build_torch(entry)
    with ms.backend.use("numba"):
        host_model = bench_models.build_ms(entry)
        bench_models.randomize_ms(host_model)
    torch_models.copy_weights(host_model, tmodel)
    tmodel.to(torch_device)
    trunner = bench_models.TorchRunner(entry, tmodel)
    trunner.x, trunner.target = trunner.x.to(torch_device), trunner.target.to(torch_device)
    for tf32 in (False, True):
        fw = TorchOn("torch", device=torch_device, tf32=tf32)
        with fw.active():
            for _ in range(2):
                trunner.train_step()
            key = "torch_tf32_ms" if tf32 else "torch_ms"
            row[key] = median_ms(time_call(trunner.train_step, 0, reps, fw.sync))
            if not tf32:
                row["torch_peak_mb"] = memory.torch_peak(trunner.train_step)
    row["ratio"] = row["ms"] / row["torch_ms"]
    if row.get("peak_mb") and row.get("torch_peak_mb"):
        row["memory_ratio"] = row["peak_mb"] / row["torch_peak_mb"]
    del torch
    return row


# ----------------------------------------------------------------------------- 4. default job
def default_job(backend: str, quick: bool) -> dict:
    from minisegnet import train

    options = {"backend": backend, "epochs": 1}
    if quick:
        options.update(train_images=4, val_images=2, size=32, batch_size=2, preview_images=1)
    config = train.TrainConfig(**options)
    with tempfile.TemporaryDirectory() as run_dir:
        t0 = time.perf_counter()
        record = train.Trainer(config, run_dir, progress=False, log=lambda *a: None).fit()
        seconds = time.perf_counter() - t0
    return {
        "seconds": seconds,
        "train_seconds": record["train_seconds"],
        "miou": record["val"]["miou"],
        "images": config.train_images,
    }


# ----------------------------------------------------------------------------- the report
def why_it_cannot_run(backend: str) -> str | None:
    """None when ``backend`` and a PyTorch to compare with (on the GPU for ``cuda``) are both
    usable here, else what is missing (also used by gpu_kernels.py)."""
    reason = ms.backend.get(backend).unavailable_reason()
    if reason is not None:
        return f"backend {backend!r} unavailable: {reason}"
    try:
        import torch
    except ImportError:
        return "PyTorch is needed for the comparison"
    if backend == "cuda" and not torch.cuda.is_available():
        return "PyTorch sees no CUDA device"
    return None


def device_description(on_gpu: bool) -> str:
    import torch

    if on_gpu:
        import cupy

        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        return (
            f"{name}, CuPy {cupy.__version__} (CUDA runtime "
            f"{cupy.cuda.runtime.runtimeGetVersion()}), PyTorch {torch.__version__} "
            f"(cuDNN {torch.backends.cudnn.version()})"
        )
    return (
        f"no GPU: cuda-emu on the CPU ({platform.processor() or platform.machine()}), PyTorch "
        f"{torch.__version__} on the CPU (a rehearsal of the script, not a GPU measurement)"
    )


def report(results: dict) -> str:
    r = results
    lines = [
        f"# GPU check: {r['device']}",
        "",
        f"Written by `python benchmarks/gpu_check.py{r['argv']}` on {r['date']} "
        f"({r['elapsed']:.0f} s). minisegnet backend `{r['backend']}` beside PyTorch on the same "
        "device; float32; PyTorch with TF32 off unless the column says TF32. Times are medians "
        "of synchronised wall-clock runs after warm-up.",
        "",
        "## Correctness (forward and every gradient against PyTorch, TF32 off)",
        "",
        "| op | max relative error | worst output or gradient | ok (< 1e-3) |",
        "| --- | ---: | --- | :---: |",
    ]
    for c in r["correctness"]:
        if "error" in c:
            lines.append(f"| {c['op']} | - | failed: {c['error']} | no |")
            continue
        worst = max(c["errors"], key=c["errors"].get) if c["errors"] else "-"
        lines.append(
            f"| {c['op']} | {c['max']:.1e} | {worst} | {'yes' if c['max'] < 1e-3 else 'NO'} |"
        )
    lines += [
        "",
        f"Host time of one op call (a one-element ReLU): minisegnet {r['host_us']['minisegnet']:.0f} us, "
        f"PyTorch {r['host_us']['torch']:.0f} us.",
        "",
        "## Ops, forward + backward",
        "",
        "| op | shape | minisegnet ms | PyTorch ms | PyTorch TF32 ms | ratio (TF32 off) | "
        "peak MB (ms / PyTorch) | host ms (ms / PyTorch) | launches |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for o in r["ops"]:
        if "error" in o:
            lines.append(f"| {o['op']} | {o['title']} | failed: {o['error']} | | | | | | |")
            continue
        m, t, t32 = o["minisegnet"], o["torch"], o["torch_tf32"]
        lines.append(
            f"| {o['op']} | {o['title']} | {fmt(m['ms'])} | {fmt(t['ms'])} | {fmt(t32['ms'])} | "
            f"{m['ms'] / t['ms']:.2f} | {fmt(m['peak_mb'])} / {fmt(t['peak_mb'])} | "
            f"{fmt(m['host_ms'])} / {fmt(t['host_ms'])} | {m.get('launches', '-')} |"
        )
    lines += [
        "",
        "## Training step (SGD with momentum)",
        "",
        "| model | minisegnet ms | PyTorch ms | PyTorch TF32 ms | ratio (TF32 off) | peak MB "
        "(ms / PyTorch) | launches per step |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for m in r["models"]:
        if "error" in m:
            lines.append(f"| {m['model']} | failed: {m['error']} | | | | | |")
            continue
        lines.append(
            f"| {m['model']} | {fmt(m['ms'])} | {fmt(m['torch_ms'])} | {fmt(m['torch_tf32_ms'])} "
            f"| {m['ratio']:.2f} | {fmt(m['peak_mb'])} / {fmt(m['torch_peak_mb'])} "
            f"| {m.get('launches', '-')} |"
        )
    lines += [
        "",
        "Launches: the package's CUDA C kernels started by one call (ops) or one step (models), "
        "from `minisegnet.cuda.launch.launch_count()`; CuPy's own elementwise and reduction "
        "kernels and cuBLAS calls are not counted.",
    ]
    j = r["default_job"]
    lines += ["", "## The default job, one epoch", ""]
    if "error" in j:
        lines.append(f"failed: {j['error']}")
    else:
        lines.append(
            f"`minisegnet train --backend {r['backend']} --epochs 1`: {j['seconds']:.1f} s in all, "
            f"{j['train_seconds']:.1f} s of training on {j['images']} images "
            f"({j['images'] / max(j['train_seconds'], 1e-9):.1f} img/s); validation mIoU "
            f"{j['miou']:.3f}."
        )
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="cuda", choices=["cuda", "cuda-emu"])
    parser.add_argument("--quick", action="store_true", help="tiny shapes (a smoke run)")
    parser.add_argument("--out", default=str(HERE / "results" / "gpu.md"))
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--skip", nargs="*", default=[], choices=["models", "job", "kernels"])
    parser.add_argument("--ops", nargs="*", help="only these op cases (default: all)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    problem = why_it_cannot_run(args.backend)
    if problem is not None:
        print(f"gpu_check: error: {problem}", file=sys.stderr)
        return 2
    on_gpu = args.backend == "cuda"
    torch_device = "cuda" if on_gpu else "cpu"
    reps = 2 if args.quick else args.reps
    memory = Memory(on_gpu)
    mine = Framework(args.backend)
    torch_off = TorchOn("torch", device=torch_device, tf32=False)
    torch_on = TorchOn("torch", device=torch_device, tf32=True)
    results = {
        "device": device_description(on_gpu),
        "backend": args.backend,
        "argv": "".join(" " + a for a in (argv if argv is not None else sys.argv[1:])),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    log = print
    cases = bench_ops.op_cases(quick=args.quick)
    if args.ops:
        unknown = sorted(set(args.ops) - {c.name for c in cases})
        if unknown:
            print(f"gpu_check: error: --ops: unknown op cases {unknown}", file=sys.stderr)
            return 2
        cases = [c for c in cases if c.name in args.ops]

    log(f"== correctness on {results['device']}")
    results["correctness"] = []
    for case in cases:
        try:
            row = check_case(case, mine, torch_off)
            log(f"  {case.name:24s} max rel err {row['max']:.1e}")
        except Exception as error:
            row = {"op": case.name, "error": f"{type(error).__name__}: {error}"[:200]}
            log(f"  {case.name:24s} FAILED {row['error']}")
        results["correctness"].append(row)

    results["host_us"] = {
        "minisegnet": host_time_one_call(mine),
        "torch": host_time_one_call(torch_off),
    }
    log("== ops (fwd+bwd ms)")
    results["ops"] = []
    for case in cases:
        arrays = bench_ops.host_inputs(case)
        row = {"op": case.name, "title": case.title}
        try:
            row["minisegnet"] = time_op(case, mine, arrays, memory, False, reps)
            row["torch"] = time_op(case, torch_off, arrays, memory, True, reps)
            row["torch_tf32"] = time_op(case, torch_on, arrays, memory, True, reps)
            log(
                f"  {case.name:24s} {row['minisegnet']['ms']:8.2f} ms  PyTorch "
                f"{row['torch']['ms']:8.2f} ms (TF32 {row['torch_tf32']['ms']:.2f})"
            )
        except Exception as error:
            row["error"] = f"{type(error).__name__}: {error}"[:200]
            log(f"  {case.name:24s} FAILED {row['error']}")
        results["ops"].append(row)

    results["models"] = []
    if "models" not in args.skip:
        log("== training steps")
        for entry in model_plan(args.quick):
            try:
                row = time_model(entry, args.backend, torch_device, memory, reps)
                log(f"  {row['model']:40s} {row['ms']:8.1f} ms  PyTorch {row['torch_ms']:8.1f} ms")
            except Exception as error:
                row = {"model": entry["label"], "error": f"{type(error).__name__}: {error}"[:200]}
                log(f"  {entry['label']:40s} FAILED {row['error']}")
            results["models"].append(row)

    results["default_job"] = {"error": "skipped (--skip job)"}
    if "job" not in args.skip:
        log("== the default job, one epoch")
        try:
            results["default_job"] = default_job(args.backend, args.quick)
            log(f"  {results['default_job']['seconds']:.1f} s")
        except Exception as error:
            results["default_job"] = {"error": f"{type(error).__name__}: {error}"[:200]}
            log(f"  FAILED {results['default_job']['error']}")

    results["elapsed"] = time.perf_counter() - started
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(report(results))
    log(f"wrote {out} ({results['elapsed']:.0f} s)")
    kernels_status = 0
    if "kernels" not in args.skip:  # 5. issue 15's kernels against their fallbacks (appended)
        import gpu_kernels

        kernels_argv = ["--backend", args.backend, "--out", str(out)]
        kernels_argv += ["--tiny"] if args.quick else ["--reps", str(max(args.reps, 20))]
        kernels_status = gpu_kernels.main(kernels_argv)
    failed = [c["op"] for c in results["correctness"] if "error" in c or c["max"] >= 1e-3]
    if failed:
        log(f"gpu_check: {len(failed)} op(s) disagree with PyTorch: {', '.join(failed)}")
        return 1
    return kernels_status


if __name__ == "__main__":
    sys.exit(main())

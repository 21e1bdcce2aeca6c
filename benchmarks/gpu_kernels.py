"""Issue 15's hand-written CUDA kernels, each timed against its fallback and against PyTorch.

    python benchmarks/gpu_kernels.py                 # on a machine with an NVIDIA GPU
    python benchmarks/gpu_kernels.py --backend cuda-emu --tiny --out /tmp/gpu.md   # rehearsal
    python benchmarks/gpu_check.py                   # runs this too (after its own report)

For every case (the shapes of issue 15's table), forward + backward through the functional API:

    new        the kernel of issue 15 (implicit-GEMM convolution, fused cross-entropy)
    fallback   the same op with the kernel switched off (``ops.conv.CUDA_IMPLICIT_GEMM``,
               ``ops.loss.CUDA_FUSED``): im2col + cuBLAS, or the forward and backward kernels
    PyTorch    on the same device, TF32 off (the targets compare float32 with float32) and on

with the maximum relative error of each minisegnet variant against PyTorch (TF32 off), the
package's kernel launches per call (``launch_count``) and the peak device memory. The table goes
into ``benchmarks/results/gpu.md`` between two marker lines, replacing an earlier table and
keeping the rest of the file (``gpu_check.py`` writes the rest). Times are medians of
synchronised wall-clock runs after warm-up, as everywhere in ``benchmarks/``.

``--tiny`` shrinks every shape so that the CPU emulator (``--backend cuda-emu``, beside PyTorch
on the CPU) runs the whole script in seconds: a rehearsal that proves it before device time is
spent, not a measurement (tests/test_benchmarks.py runs it).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
if (HERE.parent / "minisegnet" / "__init__.py").is_file():
    sys.path.insert(1, str(HERE.parent))

from bench_common import Framework, fmt, median_ms, quiet_gc  # noqa: E402
from gpu_check import (  # noqa: E402
    Memory,
    TorchOn,
    device_description,
    launches_of,
    why_it_cannot_run,
)

import minisegnet as ms  # noqa: E402
from minisegnet.arrays import to_host  # noqa: E402

BEGIN = "<!-- gpu_kernels.py: begin -->"
END = "<!-- gpu_kernels.py: end -->"


@dataclass
class Case:
    """One op at one shape. ``kind``: "conv", "transpose" or "cross_entropy"."""

    name: str
    kind: str
    x: tuple  # input shape (logits for cross_entropy)
    out_channels: int = 0
    kernel: int = 3
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    buys: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def title(self) -> str:
        if self.kind == "cross_entropy":
            return f"{'x'.join(map(str, self.x))}, {self.x[1]} classes"
        k, s, d = self.kernel, self.stride, self.dilation
        geometry = f"k{k}" + (f" s{s}" if s > 1 else "") + (f" d{d}" if d > 1 else "")
        return f"{'x'.join(map(str, self.x))} -> {self.out_channels}, {geometry}"


CONV_BUYS = (
    "no column matrix (im2col writes, and the GEMM re-reads, kh*kw copies of the input), one "
    "launch per pass instead of a loop over image chunks"
)
CE_BUYS = "one kernel and one read of the logits per step instead of forward + sums + backward"


def cases(tiny: bool) -> list[Case]:
    """Issue 15's shapes, or tiny ones for the emulator."""
    if tiny:
        return [
            Case("conv2d 3x3", "conv", (1, 4, 9, 9), 5, 3, 1, 1, 1, CONV_BUYS),
            Case("conv2d 7x7", "conv", (1, 3, 10, 8), 4, 7, 1, 3, 1, CONV_BUYS),
            Case("conv2d 3x3 dilated", "conv", (1, 3, 9, 9), 4, 3, 1, 2, 2, CONV_BUYS),
            Case("conv_transpose2d k4 s2", "transpose", (1, 3, 5, 5), 4, 4, 2, 1, 1, CONV_BUYS),
            Case("cross_entropy", "cross_entropy", (2, 5, 6, 7), buys=CE_BUYS),
        ]
    return [
        Case("conv2d 3x3", "conv", (8, 64, 128, 128), 64, 3, 1, 1, 1, CONV_BUYS),
        Case("conv2d 7x7", "conv", (4, 64, 96, 128), 64, 7, 1, 3, 1, CONV_BUYS),
        Case("conv2d 3x3 512", "conv", (8, 512, 32, 32), 512, 3, 1, 1, 1, CONV_BUYS),
        Case("conv2d 3x3 dilated", "conv", (8, 64, 64, 64), 64, 3, 1, 2, 2, CONV_BUYS),
        Case("conv_transpose2d k4 s2", "transpose", (8, 64, 64, 64), 64, 4, 2, 1, 1, CONV_BUYS),
        Case("cross_entropy", "cross_entropy", (8, 21, 128, 128), buys=CE_BUYS),
    ]


@contextlib.contextmanager
def kernel_switch(case: Case, new: bool):
    """The named switch of the case's op: the new kernel (True) or its fallback (False)."""
    if case.kind == "cross_entropy":
        from minisegnet.ops import loss

        saved = loss.CUDA_FUSED
        loss.CUDA_FUSED = new
        try:
            yield
        finally:
            loss.CUDA_FUSED = saved
    else:
        from minisegnet.ops import conv

        with conv.cuda_implicit_gemm(new):
            yield


def host_inputs(case: Case) -> dict:
    rng = np.random.default_rng(0)
    if case.kind == "cross_entropy":
        n, c, h, w = case.x
        target = rng.integers(0, c, size=(n, h, w))
        target[:, ::7, ::5] = 255  # some ignored pixels, as in real label maps
        return {
            "x": rng.standard_normal(case.x).astype(np.float32),
            "target": target.astype(np.int64),
            "weight": rng.uniform(0.5, 2.0, c).astype(np.float32),
        }
    c = case.x[1]
    o = case.out_channels
    w_shape = (o, c, case.kernel, case.kernel) if case.kind == "conv" else (c, o, case.kernel,
                                                                             case.kernel)  # fmt: skip
    scale = 1 / np.sqrt(c * case.kernel**2)
    return {
        "x": rng.standard_normal(case.x).astype(np.float32),
        "w": (scale * rng.standard_normal(w_shape)).astype(np.float32),
        "b": (0.1 * rng.standard_normal(o)).astype(np.float32),
    }


class Runner:
    """Forward + backward of one case in one framework, on inputs already on its device."""

    def __init__(self, fw: Framework, case: Case, arrays: dict):
        self.fw, self.case = fw, case
        self.x = fw.tensor(arrays["x"], requires_grad=True)
        if case.kind == "cross_entropy":
            self.target = fw.array(arrays["target"])
            if not fw.is_torch:
                self.target = ms.tensor(self.target)
            self.weight = fw.array(arrays["weight"])
            if not fw.is_torch:
                self.weight = ms.tensor(self.weight)
            self.leaves = [self.x]
        else:
            self.w = fw.tensor(arrays["w"], requires_grad=True)
            self.b = fw.tensor(arrays["b"], requires_grad=True)
            self.leaves = [self.x, self.w, self.b]
        self.dy = None

    def forward(self):
        c, F = self.case, self.fw.F
        if c.kind == "cross_entropy":
            return F.cross_entropy(self.x, self.target, weight=self.weight, ignore_index=255)
        if c.kind == "conv":
            return F.conv2d(self.x, self.w, self.b, c.stride, c.padding, c.dilation)
        return F.conv_transpose2d(self.x, self.w, self.b, c.stride, c.padding)

    def once(self):
        """One forward + backward; returns the output (gradients are left on the leaves)."""
        self.fw.clear_grads(self.leaves)
        y = self.forward()
        if self.dy is None:
            dy = np.random.default_rng(1).standard_normal(tuple(y.shape)).astype(np.float32)
            self.dy = self.fw.array(dy)
        self.fw.backward([y], [self.dy])
        return y

    def results(self) -> list[np.ndarray]:
        y = self.once()
        host = (lambda t: t.detach().cpu().numpy()) if self.fw.is_torch else to_host
        return [host(y if self.fw.is_torch else y.data)] + [
            host(t.grad) if self.fw.is_torch else to_host(t.grad) for t in self.leaves
        ]


def max_relative_error(mine: list, reference: list) -> float:
    worst = 0.0
    for a, b in zip(mine, reference):
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        worst = max(worst, float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30)))
    return worst


def measure(case: Case, fw: Framework, arrays: dict, memory: Memory, reps: int) -> dict:
    with fw.active():
        runner = Runner(fw, case, arrays)
        for _ in range(2):  # warm up (compiles on first use)
            runner.once()
        samples = []
        with quiet_gc():
            for _ in range(reps):
                fw.sync()
                t0 = time.perf_counter()
                runner.once()
                fw.sync()
                samples.append(time.perf_counter() - t0)
        row = {"ms": median_ms(samples)}
        if fw.is_torch:
            row["peak_mb"] = memory.torch_peak(runner.once)
        else:
            row["peak_mb"] = memory.minisegnet_peak(runner.once)
            row["launches"] = launches_of(runner.once, fw.sync)
        row["outputs"] = runner.results()
    return row


def run_case(case: Case, backend: str, on_gpu: bool, reps: int, log=print) -> dict:
    torch_device = "cuda" if on_gpu else "cpu"
    memory = Memory(on_gpu)
    arrays = host_inputs(case)
    row = {"case": case}
    for tf32 in (False, True):
        fw = TorchOn("torch", device=torch_device, tf32=tf32)
        with fw.active():
            row["torch_tf32" if tf32 else "torch"] = measure(case, fw, arrays, memory, reps)
    mine = Framework(backend)
    for variant, new in (("new", True), ("fallback", False)):
        with kernel_switch(case, new):
            r = measure(case, mine, arrays, memory, reps)
        r["error"] = max_relative_error(r["outputs"], row["torch"]["outputs"])
        row[variant] = r
    for r in ("torch", "torch_tf32", "new", "fallback"):
        row[r].pop("outputs")
    log(
        f"  {case.name:24s} new {row['new']['ms']:8.2f} ms  fallback {row['fallback']['ms']:8.2f}"
        f" ms  PyTorch {row['torch']['ms']:8.2f} ms (TF32 {row['torch_tf32']['ms']:.2f})"
    )
    return row


def section(rows: list[dict], device: str, argv: str) -> str:
    lines = [
        BEGIN,
        "## Issue 15's kernels against their fallbacks and PyTorch",
        "",
        f"Written by `python benchmarks/gpu_kernels.py{argv}` on "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {device}. Forward + backward; "
        "float32; ratios against PyTorch with TF32 off (the targets: at most 2x).",
        "",
        "| case | shape | new ms | fallback ms | PyTorch ms | PyTorch TF32 ms | new / fallback "
        "| new / PyTorch | max rel err (new, fallback) | launches (new, fallback) | peak MB "
        "(new, fallback, PyTorch) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        c = r["case"]
        if "failed" in r:
            lines.append(f"| {c.name} | {c.title} | failed: {r['failed']} | | | | | | | | |")
            continue
        new, old, t, t32 = r["new"], r["fallback"], r["torch"], r["torch_tf32"]
        lines.append(
            f"| {c.name} | {c.title} | {fmt(new['ms'])} | {fmt(old['ms'])} | {fmt(t['ms'])} | "
            f"{fmt(t32['ms'])} | {new['ms'] / old['ms']:.2f} | {new['ms'] / t['ms']:.2f} | "
            f"{new['error']:.1e}, {old['error']:.1e} | {new['launches']}, {old['launches']} | "
            f"{fmt(new['peak_mb'])}, {fmt(old['peak_mb'])}, {fmt(t['peak_mb'])} |"
        )
    lines += ["", "What each kernel is meant to buy (the numbers above say whether it does):", ""]
    buys: dict[str, list[str]] = {}
    for r in rows:
        buys.setdefault(r["case"].buys, []).append(r["case"].name)
    for text, names in buys.items():
        lines.append(f"- {', '.join(names)}: {text}.")
    lines.append(END)
    return "\n".join(lines) + "\n"


def write_section(path: Path, text: str) -> None:
    """Put ``text`` (which starts with BEGIN and ends with END) into ``path``, replacing an
    earlier section and keeping everything else."""
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        tail = rest.split(END, 1)[1].lstrip("\n")
        new = head + text + tail
    else:
        new = old + ("\n" if old and not old.endswith("\n\n") else "") + text
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(new)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="cuda", choices=["cuda", "cuda-emu"])
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (an emulator rehearsal)")
    parser.add_argument("--out", default=str(HERE / "results" / "gpu.md"))
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args(argv)
    problem = why_it_cannot_run(args.backend)
    if problem is not None:
        print(f"gpu_kernels: error: {problem}", file=sys.stderr)
        return 2
    on_gpu = args.backend == "cuda"
    reps = 2 if args.tiny else args.reps
    device = device_description(on_gpu)
    print(f"== issue 15's kernels on {device}")
    rows = []
    for case in cases(args.tiny):
        try:
            rows.append(run_case(case, args.backend, on_gpu, reps))
        except Exception as error:  # one failing case must not hide the others
            rows.append({"case": case, "failed": f"{type(error).__name__}: {error}"[:200]})
            print(f"  {case.name:24s} FAILED {rows[-1]['failed']}")
    argv_text = "".join(" " + a for a in (argv if argv is not None else sys.argv[1:]))
    write_section(Path(args.out), section(rows, device, argv_text))
    print(f"wrote {args.out}")
    bad = [r["case"].name for r in rows if "failed" in r or r["new"]["error"] >= 1e-3]
    if bad:
        print(f"gpu_kernels: {len(bad)} case(s) failed or disagree with PyTorch: {bad}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Per-op benchmarks: forward, backward and forward+backward time of every layer op on every
backend present, beside PyTorch CPU with the same shapes, dtype (float32) and thread count.

One table of cases (:func:`op_cases`). A case names its inputs (shape and kind), a ``forward``
written once against the functional API (``F`` is ``minisegnet.functional`` or
``torch.nn.functional``: the names and arguments are the same), optionally a ``prepare`` step that
is not timed (pooling once to get the switches unpooling needs), and what it costs: FLOPs for
convolutions, compulsory memory traffic for the memory-bound ops (every array the op must read or
write, counted once). Shapes follow ``../shared/REFERENCE.md`` (N = 8).

Timing: the forward runs with gradients recorded (training mode); the backward starts from a
fixed random output gradient; fwd+bwd is timed per repetition as one interval, so its median is
not the sum of the two medians.
"""

from __future__ import annotations

import importlib
import sys
import threading
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
from bench_common import Framework, median_ms, quiet_gc, short_error, time_call

F32 = 4  # bytes per float32


@dataclass
class Input:
    shape: tuple[int, ...]
    kind: str = "x"  # x: float data needing grad | p: parameter | const: float tensor, no grad
    # buffer: plain float array (BN's running statistics) | label: int64 class labels in
    # [0, classes) with 5% ignored (255)
    classes: int = 0
    scale: float = 1.0


@dataclass
class OpCase:
    name: str  # what --ops selects
    title: str  # shapes and arguments, for the tables
    inputs: dict[str, Input]
    forward: object  # forward(F, t) -> tensor or tuple of tensors to backpropagate from
    prepare: object = None  # prepare(fw, t) -> dict of extra entries for t (untimed)
    flops: tuple[float, float] | None = None  # (forward, backward)
    bytes: tuple[float, float] | None = None  # (forward, backward) compulsory traffic
    target: float | None = None  # fwd+bwd time at most target x PyTorch's
    target_text: str = ""
    gemm: tuple | None = None  # (n, c_in, c_out, kh, kw, ho, wo): compare with GEMMs alone
    modules: tuple[str, ...] = ()  # op modules, for the profile
    extra: dict = field(default_factory=dict)


def conv_flops(n, ci, co, kh, kw, ho, wo) -> tuple[float, float]:
    fwd = 2.0 * n * co * ci * kh * kw * ho * wo
    return fwd, 2 * fwd  # backward: input gradient + weight gradient


def conv_case(name, title, geometry, scale, forward, bias=True, transpose=False, gemm=True, **more):
    """A convolution case. ``geometry`` is (n, c_in, c_out, k, h, w): input x (n, c_in, h, w),
    weight w of a k x k kernel drawn with std ``scale`` (laid out (c_out, c_in, k, k), or
    (c_in, c_out, k, k) for a transposed convolution), bias b (c_out,) unless ``bias`` is False;
    its FLOPs and, with ``gemm``, the GEMMs alone to compare with."""
    n, c_in, c_out, k, h, w = geometry
    inputs = {
        "x": Input((n, c_in, h, w)),
        "w": Input((c_in, c_out, k, k) if transpose else (c_out, c_in, k, k), "p", scale=scale),
    }
    if bias:
        inputs["b"] = Input((c_out,), "p")
    sizes = (n, c_in, c_out, k, k, h, w)
    return OpCase(
        name, title, inputs, forward, flops=conv_flops(*sizes), gemm=sizes if gemm else None,
        modules=("minisegnet.ops.conv",), **more,
    )  # fmt: skip


def op_cases(quick: bool) -> list[OpCase]:
    """The benchmark table; ``quick`` gives tiny shapes for the smoke test."""
    if quick:
        N, C, S = 2, 8, 16  # batch, channels, image size
        PC, PS = 16, 12  # pyramid pooling: channels, feature size
        K, LS = 5, 4  # classes, low-resolution size for x8
        UC, US = 5, 4  # FCN's upscore2 input
    else:
        N, C, S = 8, 64, 128
        PC, PS = 512, 60
        K, LS = 21, 16
        UC, US = 21, 64
    cases = []

    # --- convolutions: FLOPs, compared with the GEMMs alone
    cases.append(
        conv_case(
            "conv2d", f"3x3 {C}->{C}, pad 1, x {N}x{C}x{S}x{S}", (N, C, C, 3, S, S), 0.05,
            lambda F, t: F.conv2d(t["x"], t["w"], t["b"], padding=1),
            target=1.25, target_text="fwd+bwd <= 1.25x PyTorch",
        )
    )  # fmt: skip
    cases.append(
        conv_case(
            "conv2d_dilated", f"3x3 dilation 2 {C}->{C}, pad 2, x {N}x{C}x{S}x{S}",
            (N, C, C, 3, S, S), 0.05,
            lambda F, t: F.conv2d(t["x"], t["w"], t["b"], padding=2, dilation=2),
        )
    )  # fmt: skip
    # SegNet-Basic's layers: 7x7 convolutions, at the paper's width (64 channels, CamVid-shaped
    # 96x128 batch of 4, the benchmarked model) and at the small preset (16 channels, 8 x 40x40,
    # the default training run). These decide the SegNet-Basic training-step ratio.
    for label, (bn, bc, bh, bw) in (
        ("conv2d_7x7", (2, 8, 12, 16) if quick else (4, 64, 96, 128)),
        ("conv2d_7x7_small", (2, 4, 10, 10) if quick else (8, 16, 40, 40)),
    ):
        cases.append(
            conv_case(
                label, f"7x7 {bc}->{bc}, pad 3 (SegNet-Basic), x {bn}x{bc}x{bh}x{bw}",
                (bn, bc, bc, 7, bh, bw), 0.02,
                lambda F, t: F.conv2d(t["x"], t["w"], t["b"], padding=3),
            )
        )  # fmt: skip
    c1, s1 = (PC, PS)
    cases.append(
        conv_case(
            "conv2d_1x1", f"1x1 {c1}->{c1 // 4} (PSP branch), x {N}x{c1}x{s1}x{s1}",
            (N, c1, c1 // 4, 1, s1, s1), 0.05, lambda F, t: F.conv2d(t["x"], t["w"]), bias=False,
        )
    )  # fmt: skip
    up = 2 * (US - 1) + 4
    cases.append(
        conv_case(
            "conv_transpose2d_up2",
            f"FCN upscore2: k4 s2 {UC}->{UC}, no bias, x {N}x{UC}x{US}x{US} -> {up}x{up}",
            (N, UC, UC, 4, US, US), 0.1, lambda F, t: F.conv_transpose2d(t["x"], t["w"], stride=2),
            bias=False, transpose=True, gemm=False,
        )
    )  # fmt: skip
    cases.append(
        conv_case(
            "conv_transpose2d_3x3", f"3x3 s1 pad 1 {C}->{C} (DeconvNet), x {N}x{C}x{S}x{S}",
            (N, C, C, 3, S, S), 0.05,
            lambda F, t: F.conv_transpose2d(t["x"], t["w"], t["b"], padding=1), transpose=True,
        )
    )  # fmt: skip

    # --- pooling: memory-bound
    n_in, n_out = N * C * S * S, N * C * (S // 2) * (S // 2)
    cases.append(
        OpCase(
            "max_pool2d",
            f"2x2 s2 with switches, x {N}x{C}x{S}x{S}",
            {"x": Input((N, C, S, S))},
            lambda F, t: F.max_pool2d(t["x"], 2, 2, return_indices=True)[0],
            bytes=(F32 * n_in + F32 * n_out + n_out, F32 * n_out + n_out + F32 * n_in),
            target=0.5,
            target_text="fwd+bwd <= 0.5x PyTorch",
            modules=("minisegnet.ops.pooling",),
        )
    )

    def unpool_prepare(fw, t):
        F = fw.F
        with fw.no_grad():
            y, idx = F.max_pool2d(t["big"], 2, 2, return_indices=True)
        return {"y": fw.leaf(y), "idx": idx}

    cases.append(
        OpCase(
            "max_unpool2d",
            f"2x2 s2, x {N}x{C}x{S // 2}x{S // 2} -> {S}x{S}",
            {"big": Input((N, C, S, S), "const")},
            lambda F, t: F.max_unpool2d(t["y"], t["idx"], 2, 2, output_size=(S, S)),
            prepare=unpool_prepare,
            bytes=(F32 * n_out + n_out + F32 * n_in, F32 * n_in + n_out + F32 * n_out),
            target=1.0,
            target_text="fwd+bwd <= 1.0x PyTorch",
            modules=("minisegnet.ops.unpooling", "minisegnet.ops.pooling"),
        )
    )
    cases.append(
        OpCase(
            "avg_pool2d",
            f"2x2 s2, x {N}x{C}x{S}x{S}",
            {"x": Input((N, C, S, S))},
            lambda F, t: F.avg_pool2d(t["x"], 2, 2),
            bytes=(F32 * (n_in + n_out), F32 * (n_out + n_in)),
            modules=("minisegnet.ops.avg_pooling",),
        )
    )
    bins = (1, 2, 3, 6)
    p_in = N * PC * PS * PS
    p_out = sum(N * PC * b * b for b in bins)
    cases.append(
        OpCase(
            "pyramid_pooling",
            f"adaptive avg pool to bins 1,2,3,6 (all four), x {N}x{PC}x{PS}x{PS}",
            {"x": Input((N, PC, PS, PS))},
            lambda F, t: tuple(F.adaptive_avg_pool2d(t["x"], b) for b in bins),
            bytes=(F32 * (4 * p_in + p_out), F32 * (p_out + 4 * p_in)),
            target=0.5,
            target_text="fwd+bwd <= 0.5x PyTorch",
            modules=("minisegnet.ops.avg_pooling",),
        )
    )
    hs = 8 * LS
    cases.append(
        OpCase(
            "bilinear_x8",
            f"bilinear x8, align_corners=False, x {N}x{K}x{LS}x{LS} -> {hs}x{hs}",
            {"x": Input((N, K, LS, LS))},
            lambda F, t: F.interpolate(t["x"], size=(hs, hs), mode="bilinear", align_corners=False),
            bytes=(F32 * N * K * (LS * LS + hs * hs), F32 * N * K * (hs * hs + LS * LS)),
            target=1.0,
            target_text="fwd+bwd <= 1.0x PyTorch",
            modules=("minisegnet.ops.interpolate",),
        )
    )

    # --- normalisation and loss
    cases.append(
        OpCase(
            "batch_norm",
            f"training mode, x {N}x{C}x{S}x{S}",
            {
                "x": Input((N, C, S, S)),
                "w": Input((C,), "p"),
                "b": Input((C,), "p"),
                "rm": Input((C,), "buffer", scale=0.0),
                "rv": Input((C,), "buffer", scale=-1.0),
            },
            lambda F, t: F.batch_norm(t["x"], t["rm"], t["rv"], t["w"], t["b"], training=True),
            bytes=(F32 * 2 * n_in, F32 * 3 * n_in),
            modules=("minisegnet.ops.batch_norm",),
        )
    )
    n_pix = N * S * S
    cases.append(
        OpCase(
            "cross_entropy",
            f"{K} classes, logits {N}x{K}x{S}x{S}, 5% ignored (255)",
            {"x": Input((N, K, S, S)), "target": Input((N, S, S), "label", classes=K)},
            lambda F, t: F.cross_entropy(t["x"], t["target"], ignore_index=255),
            bytes=(F32 * N * K * S * S + 8 * n_pix, 2 * F32 * N * K * S * S + 8 * n_pix),
            modules=("minisegnet.ops.loss",),
        )
    )
    return cases


# ----------------------------------------------------------------------------- running a case
def host_inputs(case: OpCase, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    arrays = {}
    for name, spec in case.inputs.items():
        if spec.kind == "label":
            a = rng.integers(0, spec.classes, size=spec.shape, dtype=np.int64)
            a[rng.random(spec.shape) < 0.05] = 255
        elif spec.kind == "buffer" and spec.scale == 0.0:
            a = np.zeros(spec.shape, np.float32)
        elif spec.kind == "buffer" and spec.scale == -1.0:
            a = np.ones(spec.shape, np.float32)
        else:
            a = (rng.standard_normal(spec.shape) * spec.scale).astype(np.float32)
        arrays[name] = a
    return arrays


def framework_inputs(fw: Framework, case: OpCase, arrays: dict) -> tuple[dict, list]:
    """Tensors for ``fw`` (and the list of leaves whose .grad must be cleared)."""
    t, leaves = {}, []
    for name, spec in case.inputs.items():
        a = arrays[name]
        if spec.kind in ("x", "p"):
            t[name] = fw.tensor(a, requires_grad=True)
            leaves.append(t[name])
        elif spec.kind == "const":
            t[name] = fw.tensor(a)
        elif spec.kind == "label":
            t[name] = fw.tensor(a) if fw.is_torch else fw.array(a)
        else:  # buffer: plain array for minisegnet (updated in place), tensor for torch
            t[name] = fw.tensor(a) if fw.is_torch else fw.array(a)
    if case.prepare is not None:
        extra = case.prepare(fw, t)
        t.update(extra)
        leaves.extend(v for k, v in extra.items() if getattr(v, "requires_grad", False))
    return t, leaves


def as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)


class CaseRunner:
    """Forward / backward of one case on one framework, with fixed output gradients."""

    def __init__(self, fw: Framework, case: OpCase, arrays: dict):
        self.fw, self.case = fw, case
        self.t, self.leaves = framework_inputs(fw, case, arrays)
        outs = as_tuple(case.forward(fw.F, self.t))  # untimed: learn the output shapes
        rng = np.random.default_rng(1)
        self.grads = [fw.array(rng.standard_normal(fw.shape(o)).astype(np.float32)) for o in outs]
        fw.backward(outs, self.grads)
        fw.clear_grads(self.leaves)

    def once(self) -> tuple[float, float, float]:
        fw = self.fw
        fw.sync()
        t0 = time.perf_counter()
        outs = as_tuple(self.case.forward(fw.F, self.t))
        fw.sync()
        t1 = time.perf_counter()
        fw.backward(outs, self.grads)
        fw.sync()
        t2 = time.perf_counter()
        del outs
        fw.clear_grads(self.leaves)
        return t1 - t0, t2 - t1, t2 - t0


def time_case(fw: Framework, case: OpCase, arrays: dict, warmup: int, reps: int) -> dict:
    """Median forward / backward / fwd+bwd milliseconds of ``case`` on ``fw``."""
    with fw.active():
        runner = CaseRunner(fw, case, arrays)  # runs fwd+bwd once, untimed (JIT compiles)
        for _ in range(warmup):
            seconds = runner.once()[2]
            if seconds > 1.0:  # slow (a reference, or a 512x512 scaling point): fewer runs
                reps = min(reps, 3 if seconds < 10.0 else 1)
                break
        samples = []
        with quiet_gc():
            for _ in range(reps):
                samples.append(runner.once())
    fwd, bwd, total = zip(*samples)
    return {
        "fwd_ms": median_ms(fwd),
        "bwd_ms": median_ms(bwd),
        "total_ms": median_ms(total),
        "reps": reps,
    }


def efficiency(case: OpCase, r: dict) -> dict:
    """GFLOP/s (convolutions) or GB/s (memory-bound ops) of a timing row."""
    out = {}
    if case.flops is not None:
        f, b = case.flops
        out["gflops_fwd"] = f / (r["fwd_ms"] * 1e6)
        out["gflops_bwd"] = b / (r["bwd_ms"] * 1e6)
        out["gflops_total"] = (f + b) / (r["total_ms"] * 1e6)
    if case.bytes is not None:
        f, b = case.bytes
        out["gbs_fwd"] = f / (r["fwd_ms"] * 1e6)
        out["gbs_bwd"] = b / (r["bwd_ms"] * 1e6)
        out["gbs_total"] = (f + b) / (r["total_ms"] * 1e6)
    return out


def run_cases(cases, frameworks, settings, log) -> list[dict]:
    """Time every case on every framework; rows with ``error`` when something is missing."""
    rows = []
    for case in cases:
        arrays = host_inputs(case)
        for fw in frameworks:
            warmup, reps = settings.reps_for(fw.name)
            row = {"op": case.name, "title": case.title, "framework": fw.name}
            try:
                row.update(time_case(fw, case, arrays, warmup, reps))
                row.update(efficiency(case, row))
                log(
                    f"  {case.name:22s} {fw.name:8s} fwd {row['fwd_ms']:9.2f} ms  "
                    f"bwd {row['bwd_ms']:9.2f} ms  fwd+bwd {row['total_ms']:9.2f} ms"
                )
            except Exception as error:  # an op not written yet, or broken: report, go on
                row["error"] = short_error(error)
                log(f"  {case.name:22s} {fw.name:8s} skipped: {row['error']}")
                if settings.verbose_errors:
                    traceback.print_exc(file=sys.stderr)
            rows.append(row)
    add_ratios(rows)
    return rows


def add_ratios(rows) -> None:
    """ratio = this framework's time / PyTorch's time in the same run (same op)."""
    torch_rows = {r["op"]: r for r in rows if r["framework"] == "torch" and "error" not in r}
    for r in rows:
        ref = torch_rows.get(r["op"])
        if ref is None or "error" in r or r["framework"] == "torch":
            continue
        for key in ("fwd", "bwd", "total"):
            r[f"ratio_{key}"] = r[f"{key}_ms"] / ref[f"{key}_ms"]


def check_targets(cases, rows, backend: str = "numba") -> list[dict]:
    """Met / not met for every case with a target, on ``backend`` against PyTorch."""
    by_key = {(r["op"], r["framework"]): r for r in rows}
    out = []
    for case in cases:
        if case.target is None:
            continue
        r = by_key.get((case.name, backend), {})
        ratio = r.get("ratio_total")
        out.append(
            {
                "op": case.name,
                "target": case.target_text,
                "limit": case.target,
                "ratio": ratio,
                "met": None if ratio is None else bool(ratio <= case.target),
            }
        )
    return out


# ----------------------------------------------------------------------------- profiling
class Profiler:
    """Exclusive wall time per wrapped function (a child's time is not counted in its parent).

    Functions that worker threads run (ops/blas_threads.py: Winograd's products, the 7x7
    path's chunks) are timed on their own thread's stack and counted divided by the number of
    workers, their share of the wall time when the workers are busy alike; ``blas_threads.run``,
    which waits for them, keeps only what is left of its wall time (the wait for the slowest)."""

    def __init__(self, workers: int = 1):
        self.totals = defaultdict(float)
        self.calls = defaultdict(int)
        self.workers = max(1, workers)
        self.in_workers = 0.0  # the scaled time counted from worker threads
        self._main = threading.get_ident()
        self._local = threading.local()
        self._lock = threading.Lock()

    def _stack(self) -> list[float]:
        if not hasattr(self._local, "stack"):
            self._local.stack = []
        return self._local.stack

    def wrap(self, label: str, fn):
        def wrapped(*args, **kwargs):
            stack = self._stack()
            stack.append(0.0)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                child = stack.pop()
                scale = 1.0 if threading.get_ident() == self._main else 1.0 / self.workers
                with self._lock:
                    self.totals[label] += (dt - child) * scale
                    self.calls[label] += 1
                    if scale != 1.0:
                        self.in_workers += (dt - child) * scale
                if stack:
                    stack[-1] += dt

        wrapped.__wrapped__ = fn
        return wrapped


def _profilable(module, name, obj) -> bool:
    if name.startswith("__") or isinstance(obj, type):
        return False
    if hasattr(obj, "py_func"):  # a Numba dispatcher
        return True
    return callable(obj) and getattr(obj, "__module__", None) == module.__name__


def profile_callable(step, module_names=(), reps: int = 2) -> dict:
    """Exclusive wall time per function while ``step()`` runs ``reps`` times (after one untimed
    call): every function and Numba kernel of the ``minisegnet.ops`` modules (plus
    ``module_names``) and NumPy's matmul/dot/einsum when called by name are wrapped for the
    duration. Returns {total_ms, parts: [{function, ms, calls, share}], other_ms, other_share}.
    """
    step()  # compiles every kernel first: a kernel compiled while its helpers are wrapped
    # would find a Python function where it expects a Numba one, and fail to type
    from minisegnet.ops import blas_threads

    prof = Profiler(blas_threads.pool()[1])
    patched = []  # (owner, attribute, original)
    modules = []
    for name in module_names:
        try:
            modules.append(importlib.import_module(name))
        except ImportError:
            pass
    # every loaded op module, so helpers imported from elsewhere are seen too
    for name, module in list(sys.modules.items()):
        if name.startswith("minisegnet.ops.") and module not in modules and module is not None:
            modules.append(module)
    seen = {}
    kernels = set()  # labels of Numba dispatchers (each call is one kernel launch)
    for module in modules:
        for name, obj in list(vars(module).items()):
            if not _profilable(module, name, obj):
                continue
            key = id(obj)
            if key not in seen:
                origin = getattr(obj, "__module__", module.__name__) or module.__name__
                label = f"{origin.rsplit('.', 1)[-1]}.{name}"
                seen[key] = prof.wrap(label, obj)
                if hasattr(obj, "py_func"):
                    kernels.add(label)
            patched.append((module, name, obj))
            setattr(module, name, seen[key])
    for name in ("matmul", "dot", "einsum", "tensordot"):
        patched.append((np, name, getattr(np, name)))
        setattr(np, name, prof.wrap(f"numpy.{name}", getattr(np, name)))
    try:
        step()
        prof.totals.clear()
        prof.calls.clear()
        prof.in_workers = 0.0
        totals = time_call(step, 0, reps)
    finally:
        for owner, name, original in reversed(patched):
            setattr(owner, name, original)
    if "blas_threads.run" in prof.totals:  # the workers' share of its wall time is theirs
        prof.totals["blas_threads.run"] = max(
            0.0, prof.totals["blas_threads.run"] - prof.in_workers
        )
    total_ms = 1e3 * sum(totals) / reps
    parts = [
        {
            "function": k,
            "ms": 1e3 * v / reps,
            "calls": prof.calls[k] // reps,
            "kernel": k in kernels,
        }
        for k, v in sorted(prof.totals.items(), key=lambda kv: -kv[1])
    ]
    covered = sum(p["ms"] for p in parts)
    for p in parts:
        p["share"] = p["ms"] / total_ms
    return {
        "total_ms": total_ms,
        "parts": parts,
        "other_ms": total_ms - covered,
        "other_share": (total_ms - covered) / total_ms,
    }


def profile_case(fw: Framework, case: OpCase, arrays: dict, reps: int = 2) -> dict:
    """Where an op's fwd+bwd time goes (see :func:`profile_callable`)."""
    with fw.active():
        runner = CaseRunner(fw, case, arrays)
        result = profile_callable(runner.once, case.modules + ("minisegnet.autograd",), reps)
    return {"op": case.name, "framework": fw.name, **result}

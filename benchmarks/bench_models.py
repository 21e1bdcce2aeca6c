"""Model benchmarks: training-step and inference images/s of every network's small configuration,
beside its PyTorch twin (``torch_models.py``), and memory.

For each model:

* **mirrored**: the twin gets the minisegnet model's weights (random, so no layer is trivially
  zero) and both run the same batch in eval mode; "yes" when the outputs agree to 1e-3 relative.
  This is how we know the two timings compare the same network.
* **train step**: forward, cross-entropy (+ 0.4 x auxiliary loss for PSPNet), zero_grad,
  backward, SGD(momentum 0.9) step; median of several steps after warm-up; images/s = N / time.
  With PyTorch present the two frameworks take turns within every repetition and each timed
  step follows an untimed one of its own (``bench_common.interleaved``: the machine's speed
  drifts, and a framework's idle threads slow the other's next step).
* **inference**: eval mode, no gradient recording; images/s; timed the same way.
* **held for backward**: after the training forward, walk the autograd graph from the loss and
  add up the arrays each Function saved for its backward (``fn.saved``), de-duplicated by the
  buffer they live in, weights, buffers and the input batch excluded. Integer arrays are the
  pooling switches. PyTorch's side is counted the same way with
  ``torch.autograd.graph.saved_tensors_hooks`` (storages de-duplicated). This is SegNet's memory
  argument in numbers: switches at one byte per pooled value (PyTorch: int64, eight) against
  FCN's and DeconvNet's float maps.
* **peak resident memory**: a fresh process per model and framework (``python bench_models.py
  --worker ...``) runs a warm-up step, resets the kernel's high-water mark
  (``/proc/self/clear_refs``), runs one training step (then one inference batch) and reports the
  peak RSS and its rise above the RSS before the step (with ``MALLOC_MMAP_THRESHOLD_=65536`` so
  freed arrays leave the resident set and the rise is the step's own memory).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))
# Run from a source checkout, the checkout's package is the one to measure (installed or not).
if (HERE.parent / "minisegnet" / "__init__.py").is_file() and str(HERE.parent) not in sys.path:
    sys.path.insert(1, str(HERE.parent))

from bench_common import interleaved, median_ms, short_error, time_call  # noqa: E402


def plan(quick: bool) -> list[dict]:
    """The model configurations benchmarked: (label, name, preset, config, batch, size, classes)."""
    names = ["fcn32s", "fcn16s", "fcn8s", "deconvnet", "segnet", "segnet_basic", "pspnet"]
    if quick:  # the smallest widths that keep every layer: a smoke run, not a measurement
        tiny = {
            "fcn32s": {"width": 1 / 32, "fc_channels": 8},
            "fcn16s": {"width": 1 / 32, "fc_channels": 8},
            "fcn8s": {"width": 1 / 32, "fc_channels": 8},
            "deconvnet": {"width": 1 / 32, "fc_channels": 8},
            "segnet": {"width": 1 / 32},
            "segnet_basic": {"width": 1 / 16},
            "pspnet": {"width": 1 / 32},
        }
        rows = [
            {"label": n, "name": n, "config": tiny[n], "batch": 2, "size": (32, 32)} for n in names
        ]
    else:  # 4 images of 64x64: the size the small presets were chosen for
        rows = [{"label": n, "name": n, "config": {}, "batch": 4, "size": (64, 64)} for n in names]
        # SegNet-Basic at the paper's width (64 channels, 1.4M parameters) as well, on 96x128
        # (CamVid's 3:4 aspect): the network the 1.5x training-step target is about.
        rows.append(
            {"label": "segnet_basic (width 1)", "name": "segnet_basic",
             "config": {"width": 1.0}, "batch": 4, "size": (96, 128)}
        )  # fmt: skip
    for r in rows:
        r["classes"] = 11 if r["name"].startswith("segnet") else 21
    return rows


# ----------------------------------------------------------------------------- building
def build_ms(entry):
    from minisegnet import models

    return models.build(entry["name"], entry["classes"], preset="small", **entry["config"])


def build_torch(entry):
    import torch_models

    return torch_models.build(entry["name"], entry["classes"], preset="small", **entry["config"])


def randomize_ms(model, seed: int = 0) -> None:
    """Random weights everywhere (FCN's score layers start at zero, which would make the mirror
    check trivial): N(0, 1/fan_in) for kernels, N(0, 0.1) for biases, 1 + N(0, 0.1) for scales."""
    rng = np.random.default_rng(seed)
    for name, p in model.named_parameters():
        shape = p.shape
        if len(shape) >= 2:
            fan_in = int(np.prod(shape[1:]))
            a = rng.standard_normal(shape) / np.sqrt(max(1, fan_in))
        elif name.endswith("weight"):
            a = 1 + 0.1 * rng.standard_normal(shape)
        else:
            a = 0.1 * rng.standard_normal(shape)
        p.data = a.astype(p.dtype)


def batch(entry, seed: int = 0):
    rng = np.random.default_rng(seed)
    n, (h, w) = entry["batch"], entry["size"]
    x = rng.standard_normal((n, 3, h, w)).astype(np.float32)
    target = rng.integers(0, entry["classes"], size=(n, h, w)).astype(np.int64)
    return x, target


def loss_of(F, out, target):
    if isinstance(out, tuple):  # PSPNet in training mode: (main, aux)
        return F.cross_entropy(out[0], target) + 0.4 * F.cross_entropy(out[1], target)
    return F.cross_entropy(out, target)


class MsRunner:
    """Training step and inference of a minisegnet model on the current backend."""

    def __init__(self, entry, model=None):
        import minisegnet as ms
        import minisegnet.functional as F
        from minisegnet import optim

        self.ms, self.F = ms, F
        self.model = model if model is not None else build_ms(entry)
        x, target = batch(entry)
        self.x = ms.tensor(x)
        self.target = target
        self.opt = optim.SGD(list(self.model.parameters()), lr=1e-3, momentum=0.9)

    def train_step(self):
        self.model.train()
        loss = loss_of(self.F, self.model(self.x), self.target)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    def infer(self):
        self.model.eval()
        with self.ms.no_grad():
            self.model(self.x)

    def training_graph_loss(self):
        self.model.train()
        return loss_of(self.F, self.model(self.x), self.target)


class TorchRunner:
    def __init__(self, entry, model=None):
        import torch
        import torch.nn.functional as F

        self.torch, self.F = torch, F
        self.model = model if model is not None else build_torch(entry)
        x, target = batch(entry)
        self.x = torch.from_numpy(x)
        self.target = torch.from_numpy(target)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=1e-3, momentum=0.9)

    def train_step(self):
        self.model.train()
        loss = loss_of(self.F, self.model(self.x), self.target)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def infer(self):
        self.model.eval()
        with self.torch.no_grad():
            self.model(self.x)


def mirror_check(ms_model, torch_model, entry) -> dict:
    """Same weights, same batch, eval mode: do both networks compute the same function?"""
    import torch
    import torch_models

    import minisegnet as ms

    problems = torch_models.copy_weights(ms_model, torch_model)
    x, _ = batch(entry, seed=3)
    ms_model.eval()
    torch_model.eval()
    with ms.no_grad():
        a = ms_model(ms.tensor(x)).numpy()
    with torch.no_grad():
        b = torch_model(torch.from_numpy(x)).numpy()
    if a.shape != b.shape:
        return {"ok": False, "detail": f"output shapes {a.shape} vs {b.shape}"}
    rel = float(np.abs(a - b).max() / max(1e-12, float(np.abs(b).max())))
    n_ms = sum(int(np.prod(p.shape)) for p in ms_model.parameters())
    n_t = sum(p.numel() for p in torch_model.parameters())
    ok = not problems and rel < 1e-3 and n_ms == n_t
    detail = f"max rel diff {rel:.1e}"
    if problems:
        detail += f"; unmatched keys: {problems[:3]}"
    if n_ms != n_t:
        detail += f"; parameters {n_ms} vs {n_t}"
    return {"ok": ok, "rel_diff": rel, "params": n_ms, "params_torch": n_t, "detail": detail}


# ----------------------------------------------------------------------------- saved bytes
def _root(array):
    while getattr(array, "base", None) is not None and hasattr(array.base, "nbytes"):
        array = array.base
    return array


def ms_saved_bytes(loss, exclude_arrays) -> dict:
    """Bytes the graph behind ``loss`` holds for backward (see the module docstring)."""
    excluded = {id(_root(a)) for a in exclude_arrays}
    seen: set[int] = set()
    out = {"float": 0, "int": 0, "int_values": 0, "by_function": {}}

    def account(value, owner):
        if hasattr(value, "creator") and hasattr(value, "data"):  # a Tensor
            value = value.data
        elif hasattr(value, "data") and hasattr(value, "kernel") and hasattr(value, "nbytes"):
            value = value.data  # PoolIndices
        if isinstance(value, (tuple, list)):
            for v in value:
                account(v, owner)
            return
        if not (hasattr(value, "nbytes") and hasattr(value, "dtype") and hasattr(value, "shape")):
            return
        root = _root(value)
        if id(root) in excluded or id(root) in seen:
            return
        seen.add(id(root))
        kind = "int" if np.dtype(root.dtype).kind in "iub" else "float"
        out[kind] += int(root.nbytes)
        if kind == "int":
            out["int_values"] += int(root.size)
        out["by_function"][owner] = out["by_function"].get(owner, 0) + int(root.nbytes)

    stack, visited = [loss.creator], set()
    while stack:
        fn = stack.pop()
        if fn is None or id(fn) in visited:
            continue
        visited.add(id(fn))
        saved = getattr(fn, "saved", None)
        if saved is not None and hasattr(saved, "__dict__"):
            for value in vars(saved).values():
                account(value, type(fn).__name__)
        for t in fn.inputs:
            if t.creator is not None:
                stack.append(t.creator)
    out["total"] = out["float"] + out["int"]
    return out


def torch_saved_bytes(runner: TorchRunner) -> dict:
    import torch

    params = {p.untyped_storage().data_ptr() for p in runner.model.parameters()}
    params |= {b.untyped_storage().data_ptr() for b in runner.model.buffers()}
    params |= {runner.x.untyped_storage().data_ptr(), runner.target.untyped_storage().data_ptr()}
    storages = {}

    def pack(t):
        s = t.untyped_storage()
        if s.data_ptr() not in params:
            storages[s.data_ptr()] = (s.nbytes(), t.dtype)
        return t

    runner.model.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = loss_of(runner.F, runner.model(runner.x), runner.target)
    del loss
    out = {"float": 0, "int": 0, "int_values": 0}
    for nbytes, dtype in storages.values():
        kind = "float" if dtype.is_floating_point else "int"
        out[kind] += nbytes
        if kind == "int":
            out["int_values"] += nbytes // torch.empty((), dtype=dtype).element_size()
    out["total"] = out["float"] + out["int"]
    return out


# ----------------------------------------------------------------------------- peak RSS
def _proc_status() -> dict:
    values = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmRSS", "VmHWM")):
                    key, v = line.split(":")
                    values[key] = int(v.split()[0]) * 1024
    except OSError:
        pass
    return values


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_of(fn) -> dict:
    import gc

    gc.collect()
    before = _proc_status().get("VmRSS")
    if not _reset_peak():
        import resource

        fn()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        return {"peak": peak, "rise": None if before is None else peak - before}
    fn()
    peak = _proc_status().get("VmHWM")
    return {"peak": peak, "rise": None if (peak is None or before is None) else peak - before}


def worker(spec: dict) -> dict:
    """Runs in a fresh process: peak RSS of one training step and one inference batch."""
    entry, framework = spec["entry"], spec["framework"]
    entry["size"] = tuple(entry["size"])
    if framework == "torch":
        import torch

        torch.set_num_threads(spec["threads"])
        runner = TorchRunner(entry)
    else:
        import minisegnet as ms

        ms.backend.use(framework)
        runner = MsRunner(entry)
    runner.train_step()  # warm-up: JIT, caches, optimiser state
    runner.infer()
    train = _peak_of(runner.train_step)
    infer = _peak_of(runner.infer)
    return {
        "train_peak": train["peak"],
        "train_rise": train["rise"],
        "infer_peak": infer["peak"],
        "infer_rise": infer["rise"],
    }


def peak_rss(entry, framework: str, threads: int, timeout: float = 600) -> dict:
    spec = {"entry": entry, "framework": framework, "threads": threads}
    env = dict(os.environ)
    env["NUMBA_NUM_THREADS"] = str(threads)
    # Arrays above 64 KB get their own mapping, returned to the system when freed: without this,
    # glibc raises its threshold after the first large free and keeps freed memory resident, so
    # the warm-up step's leftovers would hide the measured step's rise.
    env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- the section
def time_fn(fn, warmup, reps) -> float:
    for _ in range(warmup):
        t0 = time.perf_counter()
        fn()
        if time.perf_counter() - t0 > 1.0:  # a slow step: three timed runs are enough
            reps = min(reps, 3)
    return median_ms(time_call(fn, 0, reps))


def _reps_for(fn, reps: int) -> int:
    """``reps``, or 3 when one call takes over a second (three timed runs are enough)."""
    t0 = time.perf_counter()
    fn()
    return min(reps, 3) if time.perf_counter() - t0 > 1.0 else reps


def run(settings, have_torch: bool, log) -> list[dict]:
    from bench_common import numba_threads

    import minisegnet as ms

    threads = numba_threads()
    warmup, reps = (0, 1) if settings.quick else (1, 5)
    selected = plan(settings.quick)
    if settings.models:
        selected = [
            e for e in selected if e["name"] in settings.models or e["label"] in settings.models
        ]
    rows = []
    for entry in selected:
        row = {
            "model": entry["label"],
            "name": entry["name"],
            "batch": entry["batch"],
            "size": list(entry["size"]),
            "config": entry["config"],
        }
        rows.append(row)
        try:
            with ms.backend.use("numba"):
                model = build_ms(entry)
                randomize_ms(model)
                row["params"] = sum(int(np.prod(p.shape)) for p in model.parameters())
                tmodel = None
                if have_torch:
                    tmodel = build_torch(entry)
                    row["mirror"] = mirror_check(model, tmodel, entry)
                r = MsRunner(entry, model)
                if have_torch:
                    tr = TorchRunner(entry, tmodel)
                    for what, ms_fn, torch_fn in (
                        ("train", r.train_step, tr.train_step),
                        ("infer", r.infer, tr.infer),
                    ):
                        runs = {
                            "numba": (lambda: ms.backend.use("numba"), ms_fn),
                            "torch": (contextlib.nullcontext, torch_fn),
                        }
                        times = interleaved(runs, warmup, _reps_for(ms_fn, reps))
                        row[f"{what}_ms"] = times["numba"][1]  # medians
                        row[f"torch_{what}_ms"] = times["torch"][1]
                else:
                    row["train_ms"] = time_fn(r.train_step, warmup, reps)
                    row["infer_ms"] = time_fn(r.infer, warmup, reps)
                if "profile" in settings.sections:
                    from bench_ops import profile_callable

                    row["profile"] = profile_callable(
                        r.train_step, ("minisegnet.autograd",), reps=1 if settings.quick else 2
                    )
                loss = r.training_graph_loss()
                exclude = [p.data for p in model.parameters()] + [r.x.data, r.target]
                exclude += [b for _, b in model.named_buffers() if hasattr(b, "nbytes")]
                row["saved"] = ms_saved_bytes(loss, exclude)
                del loss
            log(
                f"  {entry['label']:24s} numba  train {row['train_ms']:8.1f} ms  "
                f"infer {row['infer_ms']:8.1f} ms"
            )
            if have_torch:
                row["torch_saved"] = torch_saved_bytes(tr)
                row["ratio_train"] = row["train_ms"] / row["torch_train_ms"]
                row["ratio_infer"] = row["infer_ms"] / row["torch_infer_ms"]
                log(
                    f"  {entry['label']:24s} torch  train {row['torch_train_ms']:8.1f} ms  "
                    f"infer {row['torch_infer_ms']:8.1f} ms"
                )
            one_worker = not settings.quick or entry["name"] == "segnet_basic"  # quick: one only
            if settings.memory_subprocess and "memory" in settings.sections and one_worker:
                row["rss"] = peak_rss(entry, "numba", threads)
                if have_torch:
                    row["torch_rss"] = peak_rss(entry, "torch", threads)
        except Exception as error:
            row["error"] = short_error(error)
            log(f"  {entry['label']:24s} failed: {row['error']}")
    return rows


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        print(json.dumps(worker(json.loads(sys.argv[2]))))
    else:
        print("usage: bench_models.py --worker JSON (internal; run benchmarks/run.py)")
        sys.exit(2)

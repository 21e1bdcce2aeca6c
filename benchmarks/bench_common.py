"""Shared pieces of the benchmark suite: timing, frameworks (minisegnet backends and PyTorch),
the machine description.

Timing rule used everywhere: ``warmup`` untimed runs (Numba compiles, caches warm, the allocator
settles), then ``reps`` timed runs; we report the **median** of the timed runs. The garbage
collector is collected before and disabled during the timed runs. On a GPU the device is
synchronised before every clock read.

A *framework* is where an op runs: ``minisegnet`` on one backend (``numpy``, ``numba``, ``cuda``,
``cuda-emu``) or ``torch`` (PyTorch CPU, with as many threads as Numba uses). Both expose the same
functional names (``F.conv2d``, ``F.max_pool2d``, ...), so one benchmark case is written once and
runs on both.
"""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field

import numpy as np


# ----------------------------------------------------------------------------- timing
def median_ms(samples) -> float:
    """Median of a list of seconds, in milliseconds (nan for an empty list)."""
    return 1e3 * statistics.median(samples) if samples else float("nan")


@contextlib.contextmanager
def quiet_gc():
    """Collect once, then keep the garbage collector out of the timed region."""
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def time_call(fn, warmup: int, reps: int, sync=lambda: None) -> list[float]:
    """Seconds taken by ``fn()`` in each of ``reps`` runs after ``warmup`` untimed runs."""
    for _ in range(warmup):
        fn()
    samples = []
    with quiet_gc():
        for _ in range(reps):
            sync()
            t0 = time.perf_counter()
            fn()
            sync()
            samples.append(time.perf_counter() - t0)
    return samples


IDLE_S = 0.15
"""Pause before each timed call of ``interleaved``: longer than OpenBLAS's ~0.1 s of spinning."""


def interleaved(runs, warmup, reps):
    """Milliseconds of each run, taken in turn within every repetition: runs is name ->
    (context factory, fn). The 2-core machine this was written on changes speed by up to 2x
    within minutes (sgemm 1024^3 measured 302 then 194 GFLOP/s); timed one after the other, a
    framework's whole block can land in a slow phase and the ratio with it. Interleaved, every
    repetition sees both under the same conditions, and the minimum (the least disturbed
    repetition) and the median both make a ratio.

    Each timed call follows an untimed call of the same run and a pause of ``IDLE_S``. A
    framework leaves its threads busy for a while after its last call: OpenBLAS's workers spin
    (yielding) for up to 2^28 cycles, about 0.1 s, before they sleep, and on two cores that
    took PyTorch's next SegNet-small step from 29 to 87 ms. The pause lets them sleep, so
    neither framework pays for the other's threads; the untimed call warms its own caches, as
    the previous step of a training loop would."""
    samples = {name: [] for name in runs}
    with quiet_gc():
        for rep in range(warmup + reps):
            for name, (context, fn) in runs.items():
                with context():
                    fn()  # warms this run's caches and threads
                    time.sleep(IDLE_S)  # lets every thread pool go idle
                    t0 = time.perf_counter()
                    fn()
                    seconds = time.perf_counter() - t0
                if rep >= warmup:
                    samples[name].append(1000 * seconds)
    return {name: (float(np.min(v)), float(np.median(v))) for name, v in samples.items()}


# ----------------------------------------------------------------------------- frameworks
def torch_or_none():
    """The ``torch`` module, or None when PyTorch is not installed (it is optional)."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def numba_threads() -> int:
    import numba

    return int(numba.get_num_threads())


@dataclass
class Framework:
    """One place ops can run: a minisegnet backend, or PyTorch CPU."""

    name: str  # "numba", "numpy", "cuda", "cuda-emu" or "torch"

    @property
    def is_torch(self) -> bool:
        return self.name == "torch"

    @property
    def label(self) -> str:
        return "PyTorch CPU" if self.is_torch else f"minisegnet {self.name}"

    # -- the functional namespace and the backend switch
    @property
    def F(self):
        if self.is_torch:
            import torch.nn.functional as F

            return F
        import minisegnet.functional as F

        return F

    def active(self):
        """Context in which this framework's ops run (switches the minisegnet backend)."""
        if self.is_torch:
            return contextlib.nullcontext()
        import minisegnet as ms

        return ms.backend.use(self.name)

    def no_grad(self):
        if self.is_torch:
            import torch

            return torch.no_grad()
        import minisegnet as ms

        return ms.no_grad()

    # -- data
    def array(self, a: np.ndarray):
        """A host array moved to where this framework keeps data (CuPy on ``cuda``)."""
        a = np.array(a, order="C", copy=True)  # (0-d arrays stay 0-d)
        if self.is_torch:
            import torch

            return torch.from_numpy(a)
        if self.name == "cuda":
            import cupy

            return cupy.asarray(a)
        return a

    def tensor(self, a: np.ndarray, requires_grad: bool = False):
        if self.is_torch:
            return self.array(a).requires_grad_(requires_grad)
        import minisegnet as ms

        return ms.tensor(self.array(a), requires_grad=requires_grad, dtype=a.dtype)

    def leaf(self, t):
        """A new leaf holding ``t``'s values, requiring grad (cut from any graph)."""
        if self.is_torch:
            return t.detach().clone().requires_grad_(True)
        import minisegnet as ms

        return ms.tensor(t.data.copy(), requires_grad=True, dtype=t.dtype)

    def shape(self, t) -> tuple[int, ...]:
        return tuple(t.shape)

    def nbytes(self, t) -> int:
        if self.is_torch:
            return int(t.element_size() * t.nelement())
        return int(t.nbytes)

    # -- gradients
    def backward(self, outputs, grads) -> None:
        if self.is_torch:
            import torch

            torch.autograd.backward(list(outputs), list(grads))
            return
        from minisegnet import autograd

        autograd.backward(list(outputs), list(grads))  # one pass, as PyTorch's above

    def clear_grads(self, leaves) -> None:
        for t in leaves:
            t.grad = None

    def sync(self) -> None:
        if self.name == "cuda":
            import cupy

            cupy.cuda.Device().synchronize()

    def available(self) -> str | None:
        """None when usable, else why not."""
        if self.is_torch:
            return None if torch_or_none() is not None else "PyTorch is not installed"
        import minisegnet as ms

        return ms.backend.get(self.name).unavailable_reason()


def configure_torch_threads() -> int | None:
    """Give PyTorch the same number of threads as Numba; return it (None without PyTorch)."""
    torch = torch_or_none()
    if torch is None:
        return None
    n = numba_threads()
    torch.set_num_threads(n)
    return n


# ----------------------------------------------------------------------------- environment
def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    keep = [f for f in ("avx2", "fma", "avx512f") if f in flags]
                    return " ".join(keep)
    except OSError:
        pass
    return ""


def blas_name() -> str:
    try:
        config = np.show_config(mode="dicts")
        blas = config["Build Dependencies"]["blas"]
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older NumPy without mode="dicts"
        return "unknown"


def environment() -> dict:
    import numba

    torch = torch_or_none()
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "blas": blas_name(),
        "numba": numba.__version__,
        "numba_threads": numba_threads(),
        "torch": torch.__version__ if torch is not None else None,
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "load_average": load_average(),
        "openmp_wakeup_us": openmp_wakeup_us(),
    }


class CpuShare:
    """How much of the machine's CPU time *other* processes took while we ran.

    /proc/stat's busy time of all cores minus our own (and our children's) CPU time, over
    elapsed time x cores. Near 0: a quiet machine. 0.5 on two cores: another process held a
    whole core, and every two-thread kernel (Numba's, OpenBLAS's, PyTorch's) was slowed down.
    """

    def __init__(self):
        self.start = self._snapshot()

    @staticmethod
    def _snapshot():
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # minus idle, iowait
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system
        return busy / os.sysconf("SC_CLK_TCK"), own, time.perf_counter()

    def others(self, restart: bool = True) -> float | None:
        """Share of all cores used by other processes since the last call (or creation)."""
        now = self._snapshot()
        if now is None or self.start is None:
            return None
        busy, own, wall = (a - b for a, b in zip(now, self.start))
        if restart:
            self.start = now
        cores = os.cpu_count() or 1
        return max(0.0, (busy - own) / (wall * cores)) if wall > 0 else None


def openmp_wakeup_us(launches: int = 300) -> float | None:
    """Median microseconds of one empty parallel Numba kernel on all of Numba's threads: the time
    to wake sleeping OpenMP workers (passive waiting) and join them, which every parallel region
    of either framework pays. It is this machine's most variable figure: 58-86 us on the 2-core
    machine on 2026-12-06 afternoon (4 us at the end of one run), when PyTorch's SegNet-Basic
    small training step took 27-37 ms (16-17 ms with spinning threads, which pay no wake-up);
    its small models' times, and so the small-model ratios, move with it more than
    minisegnet's (whose step took 26-28 ms on one Numba thread against 28-32 on two that
    afternoon). None without Numba's parallel layer."""
    try:
        from numba import njit, prange
    except ImportError:
        return None

    @njit(parallel=True)
    def touch(a):
        for i in prange(a.shape[0]):
            a[i] += 1.0

    a = np.zeros(64)
    try:
        touch(a)
    except Exception:  # no threading layer
        return None
    times = []
    for _ in range(launches):
        t0 = time.perf_counter()
        touch(a)
        times.append(time.perf_counter() - t0)
    return round(float(np.median(times)) * 1e6, 1)


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages: above the core count, other work shared the CPUs."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


# ----------------------------------------------------------------------------- run settings
@dataclass
class Settings:
    """What one run of the suite measures and how hard it tries."""

    quick: bool = False
    warmup: int = 2
    reps: int = 7
    numpy_reps: int = 2  # the NumPy references are slow: fewer repetitions
    backends: list[str] = field(default_factory=lambda: ["numba", "numpy"])
    torch: bool = True
    cuda_emu: bool = False
    ops: list[str] | None = None  # None: every op case
    models: list[str] | None = None  # None: every model
    sections: list[str] = field(
        default_factory=lambda: ["machine", "ops", "profile", "scaling", "models", "memory"]
    )
    memory_subprocess: bool = True  # peak RSS measured in a fresh process per model
    verbose_errors: bool = False  # print the traceback of a failing case

    def reps_for(self, framework: str) -> tuple[int, int]:
        """(warmup, reps) for a framework."""
        if framework == "numpy":
            return min(1, self.warmup), max(1, min(self.reps, self.numpy_reps))
        if framework == "cuda-emu":
            return min(1, self.warmup), max(1, min(self.reps, 2))
        return self.warmup, self.reps


def short_error(error: BaseException) -> str:
    """One line describing an exception, for the report."""
    text = f"{type(error).__name__}: {error}".replace("\n", " ")
    return text if len(text) < 200 else text[:197] + "..."


def fmt(value, digits: int = 2) -> str:
    """A number for a Markdown table ("-" for missing / nan)."""
    if value is None:
        return "-"
    if isinstance(value, float) and (value != value):  # nan
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.{digits}f}"
    return str(value)

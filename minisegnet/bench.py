"""``minisegnet bench``: the benchmark suite against PyTorch and this machine's limits.

    minisegnet bench                          # everything, about 10 minutes on 2 cores
    minisegnet bench --quick                  # tiny shapes, a smoke run (seconds)
    minisegnet bench --ops conv2d max_pool2d --sections ops profile
    minisegnet bench --models segnet_basic fcn8s --sections models memory
    python benchmarks/run.py [same options]   # the same, as a script

Sections: machine (sgemm, memcpy), ops (every op on every backend beside PyTorch), profile (where
an op's time goes), scaling (time vs image and batch size, plots), models (images/s, bytes held
for backward), memory (peak RSS per model, in fresh processes). Results go to ``--out``
(default ``benchmarks/results``): ``README.md`` (the report), ``results.json`` (every number) and
the PNG plots. See ``benchmarks/README.md`` for the method.

This module is the entry point and the orchestration: the options, the order of the sections,
the report. The measurements are the suite's modules in ``benchmarks/`` (``bench_common``,
``bench_ops``, ``bench_models``, ...): they import PyTorch, write files and take minutes, none of
which a library user needs, so they stay beside the package, not in it. :func:`suite_folder`
finds that folder (``$MINISEGNET_BENCHMARKS``, else ``benchmarks/`` next to the package: a
source checkout or an editable install) and :func:`main` imports its modules by name from there.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

__all__ = ["SECTIONS", "suite_folder", "build_parser", "add_arguments", "main"]


def suite_folder() -> Path | None:
    """The benchmark suite's folder: $MINISEGNET_BENCHMARKS, else benchmarks/ next to the
    package, else ./benchmarks (None: no such folder, e.g. a wheel install)."""
    for candidate in (
        os.environ.get("MINISEGNET_BENCHMARKS"),
        Path(__file__).resolve().parents[1] / "benchmarks",
        Path.cwd() / "benchmarks",
    ):
        if candidate and (Path(candidate) / "bench_common.py").is_file():
            return Path(candidate)
    return None


def _import_suite() -> Path | None:
    """Put the suite's folder on ``sys.path`` (its modules import each other by plain names)."""
    folder = suite_folder()
    if folder is not None and str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    return folder


SECTIONS = ["machine", "ops", "profile", "scaling", "models", "memory"]


def build_parser(parser_class=argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options; ``parser_class`` lets ``minisegnet bench`` report refusals its own way."""
    parser = parser_class(
        prog="minisegnet bench",
        description="Benchmark minisegnet's ops and models against PyTorch CPU and this "
        "machine's limits; write a Markdown report and PNG plots.",
    )
    add_arguments(parser)
    return parser


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny shapes and few repetitions: checks the suite runs, measures nothing meaningful",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=(suite_folder() or Path("benchmarks")) / "results",
        help="output directory (default: benchmarks/results)",
    )
    parser.add_argument("--ops", nargs="+", metavar="OP", help="only these op cases (see --list)")
    parser.add_argument("--models", nargs="+", metavar="MODEL", help="only these models")
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=SECTIONS,
        default=SECTIONS,
        help="which parts to run (default: all)",
    )
    parser.add_argument(
        "--backends",
        nargs="+",
        default=None,
        metavar="BACKEND",
        help="minisegnet backends for the op table (default: numba numpy, and "
        "cuda when a GPU is present)",
    )
    parser.add_argument(
        "--cuda-emu",
        action="store_true",
        help="also time the emulated CUDA kernels (cuda-emu) at tiny shapes",
    )
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions (default 7)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs first (default 2)")
    parser.add_argument(
        "--no-memory-subprocess",
        action="store_true",
        help="skip the peak-RSS measurement in fresh processes",
    )
    parser.add_argument("--list", action="store_true", help="list op cases and models, then exit")
    parser.add_argument(
        "--update",
        action="store_true",
        help="keep the other sections of OUT/results.json and re-measure only --sections "
        "(e.g. models on a quieter machine); the report says which run each section came from",
    )
    parser.add_argument(
        "--verbose-errors", action="store_true", help="print tracebacks of failing cases"
    )


def log(message: str) -> None:
    print(message, flush=True)


def settings_from(args):
    from bench_common import Settings

    s = Settings(quick=args.quick)
    if args.quick:  # the untimed first call of every case is the only warm-up
        s.warmup, s.reps, s.numpy_reps = 0, 1, 1
    if args.reps is not None:
        s.reps = max(1, args.reps)
    if args.warmup is not None:
        s.warmup = max(0, args.warmup)
    s.torch = not args.no_torch
    s.cuda_emu = args.cuda_emu
    s.ops, s.models = args.ops, args.models
    s.sections = list(args.sections)
    s.memory_subprocess = not args.no_memory_subprocess
    s.verbose_errors = args.verbose_errors
    if args.backends is not None:
        s.backends = list(args.backends)
    else:
        import minisegnet as ms

        s.backends = ["numba", "numpy"]
        if ms.backend.get("cuda").unavailable_reason() is None:
            s.backends.insert(1, "cuda")
    return s


def run_from_args(args, command: str = "minisegnet bench") -> int:
    import bench_common
    import bench_machine
    import bench_ops
    import bench_report

    if args.list:
        for case in bench_ops.op_cases(args.quick):
            print(f"op     {case.name:24s} {case.title}")
        import bench_models

        for entry in bench_models.plan(args.quick):
            print(f"model  {entry['label']:24s} batch {entry['batch']} {entry['size']}")
        return 0

    settings = settings_from(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    torch_threads = bench_common.configure_torch_threads() if settings.torch else None
    have_torch = settings.torch and torch_threads is not None
    results = {
        "command": command,
        "quick": settings.quick,
        "environment": bench_common.environment(),
        "settings": {
            "warmup": settings.warmup,
            "reps": settings.reps,
            "numpy_reps": settings.numpy_reps,
            "backends": settings.backends,
        },
    }
    previous = out / "results.json"
    contention_before, seconds_before = {}, {}
    if args.update and previous.is_file():
        kept = json.loads(previous.read_text())
        if kept.get("quick") != settings.quick:
            log("--update: the existing results were made with a different --quick; ignoring them")
        else:
            drop = {
                "machine": ["machine", "conv_gemm"],
                "ops": ["ops", "ops_cuda_emu", "targets", "switch_memory"],
                "profile": ["profiles"],
                "scaling": ["scaling"],
                "models": ["models"],
                "memory": ["models"],
            }
            stale = {key for name in settings.sections for key in drop[name]}
            runs = kept.get("runs") or [{"command": kept["command"],
                                         "date": kept["environment"]["date"],
                                         "sections": SECTIONS}]  # fmt: skip
            for key, value in kept.items():
                if key in stale or key in results:
                    continue
                if key in (
                    "elapsed_s", "other_cpu_share", "section_seconds", "load_end",
                    "openmp_wakeup_end_us",
                ):  # fmt: skip
                    continue
                results[key] = value
            results["runs"] = runs + [{"command": command, "date": results["environment"]["date"],
                                       "sections": list(settings.sections)}]  # fmt: skip
            contention_before = dict(kept.get("other_cpu_share") or {})
            seconds_before = dict(kept.get("section_seconds") or {})
    if settings.torch and not have_torch:
        log(
            "PyTorch is not installed: the tables will have no PyTorch column "
            "(pip install torch for the comparison)"
        )

    frameworks = []
    for name in settings.backends:
        fw = bench_common.Framework(name)
        reason = fw.available()
        if reason is None:
            frameworks.append(fw)
        else:
            log(f"backend {name}: skipped ({reason})")
            results.setdefault("skipped_backends", {})[name] = reason
    if have_torch:
        frameworks.append(bench_common.Framework("torch"))

    cases = bench_ops.op_cases(settings.quick)
    if settings.ops:
        unknown = sorted(set(settings.ops) - {c.name for c in cases})
        if unknown:
            log(f"unknown op case(s) {unknown}; known: {[c.name for c in cases]}")
            return 2
        cases = [c for c in cases if c.name in settings.ops]

    section_started = time.perf_counter()
    timings = results["section_seconds"] = {}
    contention = results["other_cpu_share"] = {}  # per section: see bench_common.CpuShare
    contention.update({k: v for k, v in contention_before.items() if k != "whole run"})
    timings.update(seconds_before)
    whole_run, per_section = bench_common.CpuShare(), bench_common.CpuShare()

    def section_done(name):
        nonlocal section_started
        timings[name] = round(time.perf_counter() - section_started, 1)
        contention[name] = per_section.others()
        section_started = time.perf_counter()

    if "machine" in settings.sections:
        log("== machine limits")
        results["machine"] = bench_machine.measure(settings.quick)
        m = results["machine"]
        log(
            f"  sgemm {m['sgemm_1024']['gflops']:.0f} GFLOP/s (square), "
            f"{m['sgemm_convlike']['gflops']:.0f} GFLOP/s (conv-like); "
            f"copy {m['memcopy']['gbs']:.1f} GB/s"
        )
        gemms = {}
        for case in cases:
            if case.gemm is not None and case.gemm not in gemms:
                w, r = (1, 2) if settings.quick else (1, 5)
                gemms[case.gemm] = bench_machine.conv_gemm_time(*case.gemm, w, r)
        results["conv_gemm"] = [
            {"ops": [c.name for c in cases if c.gemm == g], "shape": list(g), **v}
            for g, v in gemms.items()
        ]
        section_done("machine")

    if "ops" in settings.sections:
        log("== ops (median ms)")
        results["ops"] = bench_ops.run_cases(cases, frameworks, settings, log)
        if settings.cuda_emu:
            emu = bench_common.Framework("cuda-emu")
            reason = emu.available()
            if reason is None:
                log("== ops on cuda-emu (tiny shapes)")
                tiny = bench_ops.op_cases(quick=True)
                if settings.ops:
                    tiny = [c for c in tiny if c.name in settings.ops]
                others = [f for f in frameworks if f.name in ("numba", "torch")]
                results["ops_cuda_emu"] = bench_ops.run_cases(tiny, [emu] + others, settings, log)
            else:
                results["ops_cuda_emu_skipped"] = reason
        results["targets"] = bench_ops.check_targets(cases, results["ops"])
        results["switch_memory"] = switch_memory(cases, have_torch)
        section_done("ops")

    if "profile" in settings.sections:
        log("== profile: where the time goes (numba)")
        results["profiles"] = []
        numba = bench_common.Framework("numba")
        for case in cases:
            if case.target is None and case.gemm is None:
                continue
            try:
                p = bench_ops.profile_case(
                    numba, case, bench_ops.host_inputs(case), reps=1 if settings.quick else 2
                )
                results["profiles"].append(p)
                top = ", ".join(f"{q['function']} {q['ms']:.1f}" for q in p["parts"][:3])
                log(f"  {case.name:22s} {p['total_ms']:8.1f} ms: {top}, other {p['other_ms']:.1f}")
            except Exception as error:
                results["profiles"].append(
                    {"op": case.name, "error": bench_common.short_error(error)}
                )
                log(f"  {case.name}: profile failed: {bench_common.short_error(error)}")
        section_done("profile")

    if "scaling" in settings.sections:
        import bench_scaling

        log("== scaling")
        scale_fws = [f for f in frameworks if f.name in ("numba", "torch", "cuda")]
        results["scaling"] = bench_scaling.run(scale_fws, settings, log)
        results["scaling"]["plots"] = bench_scaling.plot(results["scaling"], out, log)
        section_done("scaling")

    if "models" in settings.sections or "memory" in settings.sections:
        import bench_models

        log("== models")
        results["models"] = bench_models.run(settings, have_torch, log)
        section_done("models")

    results["load_end"] = bench_common.load_average()
    results["openmp_wakeup_end_us"] = bench_common.openmp_wakeup_us()
    contention["whole run"] = whole_run.others()
    results["accuracy_md"] = find_accuracy(out)
    results["elapsed_s"] = time.perf_counter() - started
    results["plots"] = bench_report.plots(results, out, log)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    report = bench_report.markdown(results)
    (out / "README.md").write_text(report)
    log(f"wrote {out / 'README.md'} and {out / 'results.json'} in {results['elapsed_s']:.0f} s")
    return 0


def switch_memory(cases, have_torch: bool) -> dict | None:
    """Bytes of max_pool2d's switches here (uint8 window positions) and in PyTorch (int64)."""
    import numpy as np

    case = next((c for c in cases if c.name == "max_pool2d"), None)
    shape = case.inputs["x"].shape if case is not None else (8, 64, 128, 128)
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    out = {"input": list(shape)}
    try:
        import minisegnet as ms
        import minisegnet.functional as F

        _, idx = F.max_pool2d(ms.tensor(x), 2, 2, return_indices=True)
        out["minisegnet_bytes"] = int(idx.nbytes)
        out["minisegnet_dtype"] = str(idx.dtype)
    except Exception as error:
        from bench_common import short_error

        out["error"] = short_error(error)
        return out
    if have_torch:
        import torch

        _, tidx = torch.nn.functional.max_pool2d(torch.from_numpy(x), 2, 2, return_indices=True)
        out["torch_bytes"] = int(tidx.element_size() * tidx.nelement())
        out["torch_dtype"] = str(tidx.dtype)
        out["ratio"] = out["minisegnet_bytes"] / out["torch_bytes"]
    return out


def find_accuracy(out: Path) -> str | None:
    """Path of accuracy.md (written by benchmarks/accuracy.py), if it exists."""
    for candidate in (out / "accuracy.md", (suite_folder() or out) / "results" / "accuracy.md"):
        if candidate.is_file():
            return str(candidate)
    return None


def main(argv=None, prog: str = "minisegnet bench", parser_class=argparse.ArgumentParser) -> int:
    """Parse ``argv`` (default: the command line) and run; ``prog`` is recorded in the report.
    Exit code 2 with one line when the suite's folder is not here."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    if _import_suite() is None:
        print(
            "minisegnet: error: the benchmark suite (benchmarks/) is not part of an installed "
            "package; run from a source checkout (pip install -e .) or set "
            "MINISEGNET_BENCHMARKS to the benchmarks folder",
            file=sys.stderr,
        )
        return 2
    parser = build_parser(parser_class)
    args = parser.parse_args(argv)
    check_backends(parser, args.backends)
    return run_from_args(args, " ".join([prog] + argv))


def check_backends(parser, backends) -> None:
    """An unknown name in --backends is a usage error, before any benchmark runs."""
    import minisegnet as ms

    for name in backends or ():
        if name not in ms.backend.names():
            parser.error(
                f"--backends: unknown backend {name!r}; valid backends: "
                f"{', '.join(ms.backend.names())}"
            )

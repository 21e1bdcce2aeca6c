"""The benchmark suite runs end to end and writes its report; no timing is asserted anywhere.

``benchmarks/`` is a directory of scripts, not a package: the tests load ``benchmarks/run.py`` by
path (as ``minisegnet bench`` does).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import require_backend

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _load(name: str):
    """A module of benchmarks/ (registered under a private name, as dataclasses need)."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    if name != "run":  # run.py imports its siblings by these plain names
        return importlib.import_module(name)
    key = "_minisegnet_benchmarks_run"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, BENCH / "run.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]


def _have_torch() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def _require_torch_and_the_emulator(why: str) -> None:
    """Skip, with the reason, unless PyTorch is installed and cuda-emu runs here."""
    if not _have_torch():
        pytest.skip(f"PyTorch is not installed ({why})")
    require_backend("cuda-emu")


PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_quick_suite_writes_report_and_plots(tmp_path):
    run = _load("run")
    assert run.main(["--quick", "--out", str(tmp_path)]) == 0

    report = (tmp_path / "README.md").read_text()
    for heading in (
        "## Targets",
        "## This machine's limits",
        "## Ops",
        "## Where the time goes",
        "## Scaling",
        "## Models",
        "### Memory",
        "## Accuracy versus time",
    ):
        assert heading in report, heading
    plots = ["scaling_size.png", "scaling_batch.png", "models_throughput_memory.png"]
    if _have_torch():
        plots.append("ops_ratio.png")
    for name in plots:
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC, name
        assert f"]({name})" in report, name

    results = json.loads((tmp_path / "results.json").read_text())
    # The machine's OpenMP wake-up time is measured at both ends and shown beside the load.
    wakeups = [results["environment"]["openmp_wakeup_us"], results["openmp_wakeup_end_us"]]
    assert all(isinstance(v, float) and v > 0 for v in wakeups), wakeups
    assert "| OpenMP wake-up (empty two-thread Numba kernel" in report
    cases = [c.name for c in _load("bench_ops").op_cases(quick=True)]
    # Every op case ran on the numba backend (and on PyTorch when installed) without an error.
    frameworks = ["numba"] + (["torch"] if _have_torch() else [])
    rows = {(r["op"], r["framework"]): r for r in results["ops"]}
    for op in cases:
        for fw in frameworks:
            row = rows[(op, fw)]
            assert "error" not in row, (op, fw, row.get("error"))
            assert row["fwd_ms"] > 0 and row["bwd_ms"] > 0 and row["total_ms"] > 0
    # Every model trained, and the peak-RSS worker process reported for SegNet-Basic.
    for m in results["models"]:
        assert "error" not in m, (m["model"], m.get("error"))
        assert m["train_ms"] > 0 and m["saved"]["total"] > 0
        if _have_torch():
            assert m["mirror"]["ok"], (m["model"], m["mirror"]["detail"])
    basic = next(m for m in results["models"] if m["name"] == "segnet_basic")
    assert basic["rss"]["train_peak"] > 0
    assert {t["what"].split(":")[0] for t in _load("bench_report").all_targets(results)} >= {
        "conv2d",
        "max_pool2d",
        "max_unpool2d",
        "pyramid_pooling",
        "bilinear_x8",
        "pooling switches <= 1/8 of PyTorch's int64 index memory",
    }


def test_saved_bytes_counts_switches_once():
    """The graph walk finds the pooling switches (one byte per pooled value) and the saved
    activations, counting an array shared by two Functions once."""
    import minisegnet as ms
    import minisegnet.functional as F

    models = _load("bench_models")
    x = ms.tensor(np.random.default_rng(0).standard_normal((2, 3, 8, 8)), requires_grad=True)
    y, idx = F.max_pool2d(x, 2, 2, return_indices=True)  # (2, 3, 4, 4)
    loss = (y * y).sum() + (y * 2.0).sum()
    saved = models.ms_saved_bytes(loss, exclude_arrays=[x.data])
    assert saved["int"] == 2 * 3 * 4 * 4 * idx.data.itemsize
    assert saved["int_values"] == 2 * 3 * 4 * 4
    # y is saved by the product (y * y) -- once, however many Functions hold it.
    assert saved["float"] >= y.data.nbytes
    assert saved["total"] == saved["float"] + saved["int"]


def test_targets_are_reported_met_and_not_met():
    """The report marks a target met or not met from the measured ratio (no timing here)."""
    report = _load("bench_report")
    results = {
        "targets": [
            {
                "op": "conv2d",
                "target": "fwd+bwd <= 1.25x PyTorch",
                "limit": 1.25,
                "ratio": 1.1,
                "met": True,
            },
            {
                "op": "max_pool2d",
                "target": "fwd+bwd <= 0.5x PyTorch",
                "limit": 0.5,
                "ratio": 0.9,
                "met": False,
            },
        ],
        "switch_memory": {
            "minisegnet_bytes": 100,
            "torch_bytes": 800,
            "ratio": 0.125,
            "minisegnet_dtype": "uint8",
            "torch_dtype": "torch.int64",
        },
    }
    rows = {t["what"].split(":")[0]: t["met"] for t in report.all_targets(results)}
    assert rows["conv2d"] is True and rows["max_pool2d"] is False
    assert rows["pooling switches <= 1/8 of PyTorch's int64 index memory"] is True


def test_cli_bench_lists_the_cases(capsys):
    from minisegnet import cli

    assert cli.main(["bench", "--list"]) == 0
    out = capsys.readouterr().out
    assert "conv2d" in out and "segnet_basic" in out


def test_accuracy_script_smoke_run_writes_its_table(tmp_path):
    """``benchmarks/accuracy.py --smoke``: one real (tiny) training run through the command
    line in a subprocess, read back from its metrics log into the Markdown and JSON tables."""
    accuracy = _load("accuracy")
    assert accuracy.main(["--smoke", "--no-default", "--models", "segnet-basic"] +
                         ["--out", str(tmp_path)]) == 0  # fmt: skip
    rows = json.loads((tmp_path / "accuracy-smoke.json").read_text())
    assert [r["name"] for r in rows] == ["segnet-basic"]
    row = rows[0]
    assert row["status"] == "ok" and row["epochs"] == 1
    assert 0.0 <= row["final_miou"] <= 1.0 and row["best_within_budget"] == row["final_miou"]
    assert row["met"] is (row["best_within_budget"] >= row["target"])
    table = (tmp_path / "accuracy-smoke.md").read_text()
    assert "Smoke run" in table and "| segnet-basic | segnet-basic |" in table

    # A later invocation with two jobs at a time (one thread each on two cores) adds its rows and
    # keeps the earlier run's, in recipe order.
    assert accuracy.main(["--smoke", "--no-default", "--models", "pspnet", "fcn32s", "--jobs",
                          "2", "--out", str(tmp_path)]) == 0  # fmt: skip
    rows = json.loads((tmp_path / "accuracy-smoke.json").read_text())
    assert [r["name"] for r in rows] == ["fcn32s", "segnet-basic", "pspnet"]
    threads = max(1, (os.cpu_count() or 1) // 2)
    assert [r["threads"] for r in rows] == [threads, os.cpu_count(), threads]
    assert all(r["status"] == "ok" for r in rows)


def test_gradient_scale_is_each_layers_effective_step(tmp_path):
    """|dL/dW| / |W| of a conv followed by batch norm: doubling W leaves the output alone, halves
    the gradient, so the ratio falls four-fold; the other layers do not notice."""
    gradient_scale = _load("gradient_scale")
    from minisegnet import models

    x, y = gradient_scale.training_batch(2, 32)
    model = models.build("segnet", 5, preset="small", seed=0)
    before = gradient_scale.layer_ratios(model, x, y)
    model.zero_grad()
    layer = model.encoder.conv2_1
    layer.weight.data = layer.weight.data * 2
    after = gradient_scale.layer_ratios(model, x, y)
    assert list(before) == list(after) and "encoder.conv1_1" in before
    for name in before:
        expected = before[name] / 4 if name == "encoder.conv2_1" else before[name]
        # (not exact: batch norm's eps is added to a variance that quadrupled)
        np.testing.assert_allclose(after[name], expected, rtol=1e-2, err_msg=name)

    assert gradient_scale.main(["--models", "segnet-basic", "--seeds", "1", "--batch-size", "2",
                                "--size", "32", "--out", str(tmp_path)]) == 0  # fmt: skip
    report = (tmp_path / "gradient_scale.md").read_text()
    assert "### segnet-basic (2 x 3 x 32 x 32, seeds 0)" in report and "| conv1 |" in report
    saved = json.loads((tmp_path / "gradient_scale.json").read_text())
    assert all(v[0] > 0 and np.isfinite(v[0]) for v in saved[0]["layers"].values())


def test_gpu_check_rehearses_on_the_emulator(tmp_path):
    """benchmarks/gpu_check.py, meant for a machine with a GPU, runs end to end on cuda-emu beside
    PyTorch CPU: correctness of every selected op, timings, a training step, the default job."""
    _require_torch_and_the_emulator("the GPU check compares with it")
    gpu_check = _load("gpu_check")
    out = tmp_path / "gpu.md"
    argv = ["--backend", "cuda-emu", "--quick", "--out", str(out)]
    assert gpu_check.main(argv + ["--ops", "conv2d", "max_unpool2d", "cross_entropy"]) == 0
    text = out.read_text()
    assert text.startswith("# GPU check: no GPU: cuda-emu")
    for op in ("conv2d", "max_unpool2d", "cross_entropy"):
        assert f"| {op} | " in text
    assert "| NO |" not in text and "failed" not in text
    assert "## The default job, one epoch" in text and "validation mIoU" in text
    assert "launches per step" in text
    step_rows = [line for line in text.splitlines() if line.startswith("| segnet_basic")]
    assert step_rows and int(step_rows[0].rstrip(" |").rsplit("| ", 1)[1]) > 0  # launches
    assert gpu_check.main(argv + ["--ops", "no_such_op"]) == 2


def test_camvid_benchmark_runs_on_a_tiny_camvid(tmp_path):
    """benchmarks/camvid.py end to end on the tiny fixture: the report has the test table,
    the val checks, the data timing and the figure (numbers not asserted)."""
    from tests.camvid_fixture import make_camvid

    camvid = _load("camvid")
    root = make_camvid(tmp_path / "CamVid", h=48, w=64)
    out = tmp_path / "results"
    args = ["--root", str(root), "--epochs", "2", "--val-every", "1", "--size", "16",
            "--batch-size", "2", "--out", str(out), "--run-dir", str(tmp_path / "run"),
            "--partial", "--threads", "1", "--input-scale", "0.5", "--train-scale", "0.75,1.25",
            "--optimizer", "adam", "--lr", "0.01"]  # fmt: skip
    assert camvid.main(args) == 0
    text = (out / "camvid.md").read_text()
    assert "| global accuracy |" in text and "| bicyclist |" in text
    assert "| 2 |" in text and "ScaledCrop" in text and "partial run" in text
    assert "before the run" in text
    assert "--optimizer adam" in text and "The network works at 0.5x" in text
    assert "random scale 0.375-0.625 of the frame" in text
    assert (out / "camvid_test_frames.png").is_file()
    saved = json.loads((out / "camvid.json").read_text())
    assert saved["test"]["images"] == 3 and len(saved["val_checks"]) == 2


def test_gpu_kernels_rehearses_on_the_emulator(tmp_path):
    """benchmarks/gpu_kernels.py (issue 15's kernels against their fallbacks and PyTorch) runs
    in its tiny mode on cuda-emu, and replaces its own section of gpu.md, keeping the rest."""
    _require_torch_and_the_emulator("the kernel check compares with it")
    gpu_kernels = _load("gpu_kernels")
    out = tmp_path / "gpu.md"
    out.write_text("# GPU check: kept\n\nearlier text\n")
    argv = ["--backend", "cuda-emu", "--tiny", "--out", str(out)]
    assert gpu_kernels.main(argv) == 0
    assert gpu_kernels.main(argv) == 0  # a second run replaces the section
    text = out.read_text()
    assert text.startswith("# GPU check: kept\n\nearlier text\n")
    assert text.count(gpu_kernels.BEGIN) == 1 and text.count(gpu_kernels.END) == 1
    rows = [line for line in text.splitlines() if line.startswith("| conv") or
            line.startswith("| cross_entropy")]  # fmt: skip
    assert len(rows) == len(gpu_kernels.cases(tiny=True))
    assert "failed" not in text
    for row in rows:  # max rel err of both variants against PyTorch, below 1e-3
        errors = row.split(" | ")[8].split(", ")
        assert all(float(e) < 1e-3 for e in errors), row
    assert "cross_entropy | 2x5x6x7, 5 classes" in text and "| 1, 2 |" in text  # launches

"""benchmarks/crf.py runs end to end on its quick frame and writes its report (no timing is
asserted: the numbers are for benchmarks/results/crf.md)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "crf.py"


def test_crf_benchmark_quick(tmp_path):
    spec = importlib.util.spec_from_file_location("_minisegnet_bench_crf", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "crf.md"
    assert module.main(["--quick", "--threads", "1", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| minisegnet lattice, 1 thread |" in text
    assert "normalised rel. L2 error" in text and "busy" in text.lower()

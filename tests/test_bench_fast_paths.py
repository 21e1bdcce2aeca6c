"""benchmarks/bench_fast_paths.py runs end to end in its tiny mode and writes its report (no
timing is asserted; the errors it reports are checked to be small)."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_quick_run_writes_the_table_and_the_errors(tmp_path):
    pytest.importorskip("torch")
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    bench = importlib.import_module("bench_fast_paths")
    out = tmp_path / "fast_paths.md"
    assert bench.main(["--quick", "--out", str(out)]) == 0
    text = out.read_text()
    for _, label in bench.OP_NAMES:
        assert f"| {label} |" in text, label
    assert "SegNet-Basic training step" in text
    assert "## Error of each fast path" in text
    errors = [float(v) for v in re.findall(r"\| (\d\.\de-\d\d)", text)]
    assert len(errors) >= 8 and max(errors) < 1e-4  # float32 paths: all small, bound included

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
    assert re.search(r"OpenMP wake-up .* at start / end: [0-9]+ us / [0-9]+ us", text)
    assert "## Error of each fast path" in text
    table = text.split("## Error of each fast path")[1]
    rows = [line for line in table.splitlines() if re.match(r"\| [A-Za-z]", line)][1:]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    errors = [float(v) for row in cells for v in row[1:4] if v]
    bounds = [float(row[4]) for row in cells if row[4]]
    assert len(errors) >= 20 and max(errors) < 1e-4  # float32 paths: all small
    paths = [row[0] for row in cells]
    assert "Winograd F(2x2,7x7)" in paths and "direct 7x7 (stacked row-shift)" in paths
    assert len(bounds) == 4 and max(bounds) < 3e-2  # F2, F4, F6, F(2x2,7x7): useful bounds

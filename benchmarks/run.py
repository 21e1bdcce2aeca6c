"""Run the minisegnet benchmark suite and write the report (Markdown + PNG plots).

    python benchmarks/run.py                    # everything, about 10 minutes on 2 cores
    python benchmarks/run.py --quick            # tiny shapes, a smoke run (seconds)
    python benchmarks/run.py --ops conv2d max_pool2d --sections ops profile
    python benchmarks/run.py --models segnet_basic fcn8s --sections models memory
    minisegnet bench [same options]             # the same command

The options, the sections and the report are ``minisegnet/bench.py``'s (``minisegnet bench``
is the same entry point); this script runs it on the package of this checkout.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Run from a source checkout, the checkout's package is the one to measure (installed or not).
if (HERE.parent / "minisegnet" / "__init__.py").is_file() and str(HERE.parent) not in sys.path:
    sys.path.insert(0, str(HERE.parent))

from minisegnet.bench import SECTIONS, build_parser, main  # noqa: E402

__all__ = ["SECTIONS", "build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main(prog="python benchmarks/run.py"))

"""The lesson notebooks: each one runs top to bottom, headless, and is committed clean.

* ``test_lesson_runs[NN_name]``: executes the notebook with nbclient in a fresh kernel of *this*
  interpreter (working directory ``lessons/``, ``MPLBACKEND=Agg``, the repository on
  ``PYTHONPATH``); any failing cell fails the test, with the cell and its traceback in the
  message. The lessons aim for well under 2 minutes each on 2 cores; the time is printed, and
  with ``LESSON_BUDGET=SECONDS`` in the environment a slower notebook fails. That check is off
  by default: the project times nothing in its tests (a busy machine would fail them), the
  benchmarks measure speed.
* ``test_lesson_committed_without_outputs``: no outputs or execution counts in the files.
* ``test_lesson_shape``: every lesson has LaTeX math, a figure, and exercises checked by asserts,
  and is listed in ``lessons/README.md``.

The kernel: nbclient is given a kernelspec written into a temporary directory that points at
``sys.executable``, so the notebooks run in the same environment as pytest whether or not a
``python3`` kernelspec is installed (and never in some other interpreter's).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = ROOT / "lessons"
NOTEBOOKS = sorted(LESSONS.glob("[0-9][0-9]_*.ipynb"))
KERNEL_NAME = "minisegnet-lessons"
CELL_TIMEOUT = int(os.environ.get("LESSON_CELL_TIMEOUT", "600"))
LESSON_BUDGET = float(os.environ["LESSON_BUDGET"]) if os.environ.get("LESSON_BUDGET") else None


def _ids(paths):
    return [p.stem for p in paths]


def test_lessons_exist():
    assert NOTEBOOKS, f"no lesson notebooks (NN_name.ipynb) found in {LESSONS}"


@pytest.fixture(scope="session")
def lesson_kernel(tmp_path_factory):
    """A kernelspec for this interpreter, found through JUPYTER_PATH; returns its name."""
    kernelspec = pytest.importorskip("ipykernel.kernelspec")
    root = tmp_path_factory.mktemp("jupyter")
    kernelspec.write_kernel_spec(
        path=str(root / "kernels" / KERNEL_NAME),
        overrides={"display_name": "minisegnet lessons (pytest)"},
    )
    previous = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(root), previous]))
    yield KERNEL_NAME
    if previous is None:
        os.environ.pop("JUPYTER_PATH", None)
    else:
        os.environ["JUPYTER_PATH"] = previous


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_lesson_runs(path, lesson_kernel, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from nbclient.exceptions import CellExecutionError

    # The kernel inherits this process's environment.
    monkeypatch.setenv("MPLBACKEND", "Agg")
    pythonpath = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), pythonpath])))
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")

    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb,
        kernel_name=lesson_kernel,
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(LESSONS)}},
    )
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as error:
        pytest.fail(f"{path.name}: a cell failed:\n{error}", pytrace=False)
    elapsed = time.perf_counter() - start
    print(f"{path.name}: {elapsed:.1f} s")
    assert LESSON_BUDGET is None or elapsed <= LESSON_BUDGET, (
        f"{path.name} took {elapsed:.0f} s to run, over the {LESSON_BUDGET:.0f} s budget "
        "(lessons must run on a laptop CPU in about 2 minutes: shrink the inputs or the training)"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_lesson_committed_without_outputs(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    dirty = [
        i
        for i, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, (
        f"{path.name}: cells {dirty} carry outputs or execution counts; clear them before "
        "committing (Jupyter: Edit > Clear Outputs of All Cells, or "
        "`jupyter nbconvert --clear-output --inplace lessons/*.ipynb`)"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_lesson_shape(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    markdown = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "markdown")
    cells = nb["cells"]
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert re.search(r"\$[^$]+\$", markdown), f"{path.name}: no LaTeX math in its Markdown"
    assert re.search(r"\bplt\.|\.imshow\(|\.plot\(", code), f"{path.name}: draws no figure"
    heads = [
        i
        for i, c in enumerate(cells)
        if c["cell_type"] == "markdown" and re.search(r"^#+ *Exercises", "".join(c["source"]), re.M)
    ]
    assert heads, f"{path.name}: no '## Exercises' section"
    after = "\n".join("".join(c["source"]) for c in cells[heads[0] :] if c["cell_type"] == "code")
    assert re.search(r"^\s*assert ", after, re.M), f"{path.name}: its exercises check nothing"
    index = (LESSONS / "README.md").read_text(encoding="utf-8")
    assert path.name in index, f"{path.name} is not listed in lessons/README.md"


def test_every_lesson_listed_in_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in NOTEBOOKS if p.stem not in readme and p.name not in readme]
    assert not missing, f"README.md does not list lessons {missing}"


if __name__ == "__main__":  # pragma: no cover - `python tests/test_lessons.py` runs them all
    sys.exit(pytest.main([__file__, "-v", "-s"]))

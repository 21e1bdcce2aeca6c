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
* The student edition (``lessons/student/``, written by ``lessons/make_student.py``):
  ``test_student_edition_up_to_date`` runs the generator's ``--check``;
  ``test_exercises_marked_and_graded`` wants every exercise's solution between the markers and a
  grader cell (asserts or a ``grader.check_*`` call) right after it; ``test_lesson_runs``, when
  it reaches the first exercise, runs the *student* edition's cells of that exercise in the same
  kernel and wants them to stop with the stub's NotImplementedError message (the graders fail
  without an answer), then goes on with the instructor's cells. Running each whole student
  notebook up to its first stub (``test_student_notebook_stops_at_first_stub``) repeats every
  lesson's body, so it is opt-in: ``LESSONS_STUDENT_RUNS=1``. That graders fail a *wrong*
  answer is tested in ``tests/test_grader.py``.

The kernel: nbclient is given a kernelspec written into a temporary directory that points at
``sys.executable``, so the notebooks run in the same environment as pytest whether or not a
``python3`` kernelspec is installed (and never in some other interpreter's).
"""

from __future__ import annotations

import copy
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
STUDENT_NOTEBOOKS = [LESSONS / "student" / p.name for p in NOTEBOOKS]
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


def _client(path, lesson_kernel, monkeypatch):
    """An nbclient for ``path`` whose kernel inherits this environment plus the repository."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    pythonpath = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), pythonpath])))
    monkeypatch.setenv("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    nb = nbformat.read(path, as_version=4)
    return nbclient.NotebookClient(
        nb,
        kernel_name=lesson_kernel,
        timeout=CELL_TIMEOUT,
        resources={"metadata": {"path": str(path.parent)}},
    )


def _has_marker(source: str) -> bool:
    make_student = _make_student()
    return any(make_student.BEGIN.match(line) for line in source.split("\n"))


def _student_stops(client, path, index, expected):
    """Run the student edition's version of instructor cell ``index`` (and, when its stub sits
    in a function body, the grader cell after it) in the live kernel: it must fail with the
    stub's NotImplementedError message. The instructor cell then runs as usual."""
    import nbformat
    from nbclient.exceptions import CellExecutionError

    student = nbformat.read(LESSONS / "student" / path.name, as_version=4).cells[1:]  # setup cell
    instructor = client.nb.cells
    assert len(student) == len(instructor) and student[index].get("id") == instructor[index].get(
        "id"
    ), f"student/{path.name} does not match {path.name}: run `python lessons/make_student.py`"
    following = [i for i in range(index + 1, len(student)) if student[i].cell_type == "code"][:1]
    for i in [index] + following:
        try:
            client.execute_cell(copy.deepcopy(student[i]), i)
        except CellExecutionError as error:
            message = str(error)
            assert "NotImplementedError" in message and expected in message, (
                f"student/{path.name} should stop at its first stub ({expected!r}), but cell {i} "
                f"failed with:\n{message[-2000:]}"
            )
            return
    pytest.fail(f"student/{path.name}: the cells of its first exercise ran without stopping")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_lesson_runs(path, lesson_kernel, monkeypatch):
    """The instructor notebook runs; on the way, at its first exercise, the student edition's
    cells are run in the same kernel and must stop there with the stub's message (so the student
    check costs seconds, not a second run of the lesson)."""
    client = _client(path, lesson_kernel, monkeypatch)
    from nbclient.exceptions import CellExecutionError

    expected = _first_stub(path)
    checked = False
    start = time.perf_counter()
    try:
        with client.setup_kernel():
            for index, cell in enumerate(client.nb.cells):
                if not checked and cell.cell_type == "code" and _has_marker(cell.source):
                    _student_stops(client, path, index, expected)
                    checked = True
                client.execute_cell(cell, index)
    except CellExecutionError as error:
        pytest.fail(f"{path.name}: a cell failed:\n{error}", pytrace=False)
    elapsed = time.perf_counter() - start
    assert checked, f"{path.name}: no exercise"
    print(f"{path.name}: {elapsed:.1f} s (student edition stopped at {expected.split(' —')[0]})")
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


def _make_student():
    sys.path.insert(0, str(LESSONS))
    try:
        import make_student
    finally:
        sys.path.remove(str(LESSONS))
    return make_student


def test_student_edition_up_to_date(capsys):
    make_student = _make_student()
    assert make_student.main(["--check"]) == 0, capsys.readouterr().err


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_exercises_marked_and_graded(path):
    make_student = _make_student()
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    marked = [
        i
        for i, c in enumerate(cells)
        if c["cell_type"] == "code"
        and any(make_student.BEGIN.match(line) for line in "".join(c["source"]).split("\n"))
    ]
    assert marked, f"{path.name}: no exercise marked with '# BEGIN SOLUTION exercise N: name'"
    code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    assert "# Solution" not in code, f"{path.name}: an unmarked '# Solution' is left"
    for i in marked:
        after = [c for c in cells[i + 1 :] if c["cell_type"] == "code"][:1]
        grader = "".join(after[0]["source"]) if after else ""
        assert re.search(r"^\s*(assert |np\.testing\.|grader\.check_|check_)", grader, re.M), (
            f"{path.name}: the exercise in cell {i} is not followed by a grader cell with checks"
        )


LAYER_LESSONS = ("03", "04", "05", "06", "07", "08")


@pytest.mark.parametrize("prefix", LAYER_LESSONS)
def test_layer_lessons_have_write_the_layer_exercises(prefix):
    """At least two exercises where the student writes a forward or backward graded by
    ``grader.check_forward``/``check_backward`` (finite differences and the library's op)."""
    make_student = _make_student()
    (path,) = LESSONS.glob(f"{prefix}_*.ipynb")
    cells = [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"]]
    graded = 0
    for i, cell in enumerate(cells):
        lines = "".join(cell["source"]).split("\n")
        count = sum(bool(make_student.BEGIN.match(line)) for line in lines)
        if cell["cell_type"] != "code" or not count:
            continue
        after = [c for c in cells[i + 1 :] if c["cell_type"] == "code"][:1]
        if after and re.search(r"grader\.check_(forward|backward)", "".join(after[0]["source"])):
            graded += count
    assert graded >= 2, (
        f"{path.name}: {graded} write-the-layer exercises graded by lessons/grader.py"
    )


def _first_stub(path):
    make_student = _make_student()
    nb = json.loads(path.read_text(encoding="utf-8"))
    seen: set[str] = set()
    for i, cell in enumerate(nb["cells"]):
        if cell["cell_type"] == "code":
            _, found = make_student.strip_solutions(cell["source"], f"{path.name} cell {i}", seen)
            if found:
                return make_student.stub_message(*found[0])
    raise AssertionError(f"{path.name}: no exercise")


@pytest.mark.skipif(
    not os.environ.get("LESSONS_STUDENT_RUNS"),
    reason="runs each student notebook from its first cell (repeats every lesson's body); "
    "test_lesson_runs already checks the first stub in the instructor's kernel. "
    "Set LESSONS_STUDENT_RUNS=1 to run them.",
)
@pytest.mark.parametrize("path", STUDENT_NOTEBOOKS, ids=_ids(STUDENT_NOTEBOOKS))
def test_student_notebook_stops_at_first_stub(path, lesson_kernel, monkeypatch):
    assert path.exists(), f"{path} missing: run `python lessons/make_student.py`"
    expected = _first_stub(LESSONS / path.name)
    client = _client(path, lesson_kernel, monkeypatch)
    from nbclient.exceptions import CellExecutionError

    start = time.perf_counter()
    with pytest.raises(CellExecutionError) as raised:
        client.execute()
    print(f"student/{path.name}: stopped after {time.perf_counter() - start:.1f} s")
    message = str(raised.value)
    assert "NotImplementedError" in message and expected in message, (
        f"student/{path.name} should stop at its first stub ({expected!r}), but failed with:\n"
        f"{message[-2000:]}"
    )


def test_readme_gdb_recipe_points_at_the_store():
    """README's gdb breakpoint line is max pooling's ``y[i] = best;`` (a closing brace was)."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"break pooling\.cu:(\d+)", readme)
    assert match and "set breakpoint pending on" in readme
    kernel = (ROOT / "minisegnet" / "cuda" / "kernels" / "pooling.cu").read_text(encoding="utf-8")
    assert kernel.splitlines()[int(match[1]) - 1].strip() == "y[i] = best;"


def test_every_lesson_listed_in_readme():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    missing = [p.name for p in NOTEBOOKS if p.stem not in readme and p.name not in readme]
    assert not missing, f"README.md does not list lessons {missing}"


if __name__ == "__main__":  # pragma: no cover - `python tests/test_lessons.py` runs them all
    sys.exit(pytest.main([__file__, "-v", "-s"]))

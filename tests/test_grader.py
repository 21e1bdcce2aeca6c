"""The lessons' grader (lessons/grader.py) and student-edition generator (lessons/make_student.py)
fail wrong answers: a wrong forward, a backward that is not the forward's derivative, a backward
that is the derivative of a wrong forward, a wrong shape; and they pass the right ones. The
generator refuses malformed markers and replaces a region by a stub at its indentation."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import minisegnet as ms
import minisegnet.functional as F

LESSONS = Path(__file__).resolve().parents[1] / "lessons"
sys.path.insert(0, str(LESSONS))
import grader  # noqa: E402
import make_student  # noqa: E402

sys.path.remove(str(LESSONS))

RNG = np.random.default_rng(0)
X = RNG.normal(size=(2, 3, 5, 5))
W = RNG.normal(size=(4, 3, 3, 3))


def conv_forward(x, w):
    """A correct loop-free valid convolution (stride 1, no padding)."""
    windows = np.lib.stride_tricks.sliding_window_view(x, w.shape[2:], axis=(2, 3))
    return np.einsum("nchwij,ocij->nohw", windows, w)


def conv_backward(dy, x, w):
    k = w.shape[2]
    dx = np.zeros_like(x)
    dw = np.zeros_like(w)
    for i in range(k):
        for j in range(k):
            patch = x[:, :, i : i + dy.shape[2], j : j + dy.shape[3]]
            dw[:, :, i, j] = np.einsum("nohw,nchw->oc", dy, patch)
            dx[:, :, i : i + dy.shape[2], j : j + dy.shape[3]] += np.einsum(
                "nohw,oc->nchw", dy, w[:, :, i, j]
            )
    return dx, dw


def test_right_answers_pass(capsys):
    grader.check_forward("conv", conv_forward, F.conv2d, [X, W])
    grader.check_backward("conv", conv_forward, conv_backward, [X, W], reference=F.conv2d)
    grader.check_value("value", np.arange(3.0), np.arange(3.0))
    assert "matches the library's autograd" in capsys.readouterr().out


def test_wrong_forward_fails():
    def flipped(x, w):  # true convolution instead of cross-correlation
        return conv_forward(x, w[:, :, ::-1, ::-1])

    with pytest.raises(AssertionError, match="conv: your forward differs"):
        grader.check_forward("conv", flipped, F.conv2d, [X, W])


def test_backward_not_the_derivative_fails():
    def half(dy, x, w):
        dx, dw = conv_backward(dy, x, w)
        return dx, 0.5 * dw

    with pytest.raises(AssertionError, match="not the derivative of your forward"):
        grader.check_backward("conv", conv_forward, half, [X[:1, :2], W[:2, :2]])


def test_consistent_but_wrong_layer_fails_against_the_reference():
    # forward and backward of y = 2 conv(x, w): consistent, so only the reference catches it
    def forward(x, w):
        return 2 * conv_forward(x, w)

    def backward(dy, x, w):
        return conv_backward(2 * dy, x, w)

    small = [X[:1, :2], W[:2, :2]]
    grader.check_backward("double", forward, backward, small)  # self-consistent: passes
    with pytest.raises(AssertionError, match="gradient 0 differs"):
        grader.check_backward("double", forward, backward, small, reference=F.conv2d)


def test_wrong_shapes_and_counts_fail():
    with pytest.raises(AssertionError, match="shape"):
        grader.check_forward("conv", lambda x, w: conv_forward(x, w)[0], F.conv2d, [X, W])
    with pytest.raises(AssertionError, match="returned 1 gradients for 2 inputs"):
        grader.check_backward(
            "conv", conv_forward, lambda dy, x, w: conv_backward(dy, x, w)[0], [X[:1], W[:1]]
        )
    with pytest.raises(AssertionError, match="NaN"):
        grader.check_value("nan", np.array([np.nan]), np.array([0.0]))


def test_stub_replaces_region_at_its_indentation():
    source = (
        "def f(x):\n"
        "    # BEGIN SOLUTION exercise 2: the layer\n"
        "    return x + 1\n"
        "    # END SOLUTION\n"
        "print(f)"
    )
    text, found = make_student.strip_solutions(source, "cell", set())
    assert found == [("2", "the layer")]
    assert "x + 1" not in text and "SOLUTION" not in text
    namespace: dict = {}
    exec(text, namespace)
    with pytest.raises(NotImplementedError, match="exercise 2: the layer"):
        namespace["f"](1)


@pytest.mark.parametrize(
    "source, complaint",
    [
        ("# BEGIN SOLUTION exercise 1: a\nx = 1\n", "never closed"),
        ("x = 1\n# END SOLUTION\n", "without a BEGIN"),
        ("# BEGIN SOLUTION exercise 1: a\n# END SOLUTION\n", "empty"),
        ("# BEGIN SOLUTION exercise 1: a\n# BEGIN SOLUTION exercise 2: b\n", "inside the region"),
        ("# BEGIN SOLUTION exercise one: a\nx = 1\n# END SOLUTION", "malformed marker"),
    ],
)
def test_malformed_markers_refused(source, complaint):
    with pytest.raises(make_student.MarkerError, match=complaint):
        make_student.strip_solutions(source, "cell", set())


def test_duplicate_exercise_number_refused():
    seen: set[str] = set()
    make_student.strip_solutions("# BEGIN SOLUTION exercise 1: a\nx = 1\n# END SOLUTION", "c", seen)
    with pytest.raises(make_student.MarkerError, match="marked twice"):
        make_student.strip_solutions("# BEGIN SOLUTION exercise 1: b\ny\n# END SOLUTION", "d", seen)


def test_check_mode_sees_a_stale_student_edition(tmp_path, monkeypatch):
    (tmp_path / "student").mkdir()
    source = LESSONS / "00_tour_and_setup.ipynb"
    (tmp_path / source.name).write_text(source.read_text(encoding="utf-8"), encoding="utf-8")
    monkeypatch.setattr(make_student, "LESSONS", tmp_path)
    monkeypatch.setattr(make_student, "STUDENT", tmp_path / "student")
    assert make_student.main(["--check"]) == 1  # missing
    assert make_student.main([]) == 0
    assert make_student.main(["--check"]) == 0
    (tmp_path / "student" / "99_gone.ipynb").write_text("{}", encoding="utf-8")
    assert make_student.main(["--check"]) == 1  # no instructor notebook any more
    assert make_student.main([]) == 0 and not (tmp_path / "student" / "99_gone.ipynb").exists()


def test_tensors_are_float64():
    assert all(t.dtype == np.float64 for t in grader._tensors([np.zeros(2, np.float32)]))
    assert isinstance(grader._tensors([X])[0], ms.Tensor)


def test_explore_static_fallback_draws_each_setting(monkeypatch):
    """Without ipywidgets (forced by MINISEGNET_NO_WIDGETS) the lessons' sliders become the same
    figure drawn for the defaults and for each argument's last value."""
    pytest.importorskip("matplotlib")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    sys.path.insert(0, str(LESSONS))
    try:
        import _utils
    finally:
        sys.path.remove(str(LESSONS))
    calls = []
    monkeypatch.setenv("MINISEGNET_NO_WIDGETS", "1")
    assert not _utils.widgets_available()
    drawn = _utils.explore(lambda a, b: calls.append((a, b)), a=[1, 2, 3], b=[False, True])
    assert calls == [(1, False), (3, False), (1, True)] and len(drawn) == 3
    monkeypatch.delenv("MINISEGNET_NO_WIDGETS")
    if _utils.widgets_available():
        calls.clear()
        assert _utils.explore(lambda a: calls.append(a), a=[5, 6]) == []
        assert calls == [5], "interact draws the default once"

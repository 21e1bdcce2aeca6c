"""Graders for the lessons' write-the-layer exercises (the cell after each exercise calls one).

A student writes a layer's forward and/or backward as plain NumPy functions on float64 arrays.
Two independent checks grade it, so that neither a wrong forward nor a wrong backward passes:

    check_forward(name, mine, reference, arrays)
        mine(*arrays) must equal reference(*tensors).data (the library's own op, in float64)
        to ~1e-10: the forward is right.

    check_backward(name, forward, backward, arrays)
        1. Central finite differences (``minisegnet.gradcheck``, float64, eps = 1e-6) of the
           student's own forward must equal the student's backward: the backward is the
           derivative of the forward. A backward that is the derivative of something else fails.
        2. With ``reference`` given, the student's gradients for a random upstream gradient dy
           must equal the library's autograd gradients of the reference op: both are right.

``backward(dy, *arrays)`` returns one gradient per array (a tuple, or a single array when there
is one input). Every failure raises AssertionError (GradcheckError is one) naming the exercise,
the input and how far off it is; a passing check prints one line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

import minisegnet as ms
from minisegnet.autograd import Function
from minisegnet.gradcheck import GradcheckError, gradcheck

__all__ = ["check_forward", "check_backward", "check_value"]


def _tensors(arrays, requires_grad=False):
    return [
        ms.tensor(np.asarray(a, np.float64), dtype=np.float64, requires_grad=requires_grad)
        for a in arrays
    ]


def _compare(name: str, what: str, got, expected, rtol: float, atol: float) -> None:
    got = np.asarray(got)
    expected = np.asarray(expected)
    if got.shape != expected.shape:
        raise AssertionError(f"{name}: {what} has shape {got.shape}, expected {expected.shape}")
    if not np.all(np.isfinite(got)):
        raise AssertionError(f"{name}: {what} holds NaN or infinity")
    if not np.allclose(got, expected, rtol=rtol, atol=atol):
        diff = np.abs(got - expected)
        where = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
        raise AssertionError(
            f"{name}: {what} differs from the library's reference; largest difference "
            f"{diff.max():.3g} at {where}: yours {got[where]:.8g}, reference {expected[where]:.8g}"
        )


def check_value(name: str, got, expected, rtol: float = 1e-10, atol: float = 1e-12) -> None:
    """``got`` equals ``expected`` (shape and values, float64 tolerance)."""
    _compare(name, "your result", got, expected, rtol, atol)
    print(f"{name}: matches the reference")


def check_forward(
    name: str,
    mine: Callable[..., np.ndarray],
    reference: Callable[..., ms.Tensor],
    arrays: Sequence[np.ndarray],
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> None:
    """``mine(*arrays)`` equals the library's ``reference(*tensors)`` computed in float64."""
    arrays = [np.asarray(a, np.float64) for a in arrays]
    got = mine(*[a.copy() for a in arrays])
    with ms.backend.use("numpy"):
        expected = reference(*_tensors(arrays)).data
    _compare(name, "your forward", got, expected, rtol, atol)
    print(f"{name}: forward matches the library's reference on shape {arrays[0].shape}")


def check_backward(
    name: str,
    forward: Callable[..., np.ndarray],
    backward: Callable[..., object],
    arrays: Sequence[np.ndarray],
    reference: Callable[..., ms.Tensor] | None = None,
    seed: int = 0,
) -> None:
    """The student's ``backward`` is the derivative of ``forward`` (finite differences, float64)
    and, with ``reference``, equals the library's autograd gradients."""
    arrays = [np.asarray(a, np.float64) for a in arrays]

    class Student(Function):
        def forward(self, *xs):
            self.save(xs=[x.copy() for x in xs])
            return np.asarray(forward(*[x.copy() for x in xs]), np.float64)

        def backward(self, dy):
            grads = backward(np.asarray(dy, np.float64).copy(), *self.saved.xs)
            grads = grads if isinstance(grads, tuple) else (grads,)
            if len(grads) != len(self.saved.xs):
                raise AssertionError(
                    f"{name}: backward returned {len(grads)} gradients for "
                    f"{len(self.saved.xs)} inputs"
                )
            for i, (g, x) in enumerate(zip(grads, self.saved.xs)):
                if np.shape(g) != x.shape:
                    raise AssertionError(
                        f"{name}: gradient {i} has shape {np.shape(g)}, its input {x.shape}"
                    )
            return tuple(np.asarray(g, np.float64) for g in grads)

    with ms.backend.use("numpy"):
        try:
            gradcheck(Student.apply, _tensors(arrays, requires_grad=True), seed=seed)
        except GradcheckError as error:
            raise GradcheckError(
                f"{name}: your backward is not the derivative of your forward: {error}"
            ) from None
        if reference is not None:
            ref_inputs = _tensors(arrays, requires_grad=True)
            out = reference(*ref_inputs)
            dy = np.random.default_rng(seed + 1).standard_normal(out.shape)
            out.backward(dy)
            grads = backward(dy.copy(), *[a.copy() for a in arrays])
            grads = grads if isinstance(grads, tuple) else (grads,)
            for i, (g, t) in enumerate(zip(grads, ref_inputs)):
                _compare(name, f"gradient {i}", g, t.grad, 1e-8, 1e-10)
    print(
        f"{name}: backward passes the float64 finite-difference check"
        + (" and matches the library's autograd" if reference is not None else "")
    )

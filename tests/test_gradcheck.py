"""The gradient checker itself: it passes correct backwards and catches wrong ones."""

from __future__ import annotations

import numpy as np
import pytest

import minisegnet as ms
from minisegnet.autograd import Function
from minisegnet.gradcheck import GradcheckError, gradcheck


class Cube(Function):
    def forward(self, x):
        self.save(x=x)
        return x**3

    def backward(self, dy):
        return dy * 3 * self.saved.x**2


class CubeWrongOneElement(Cube):
    """A planted bug: the gradient of element 5 is off by 1%."""

    def backward(self, dy):
        dx = super().backward(dy)
        dx.reshape(-1)[5] *= 1.01
        return dx


class CubeWrongEverywhere(Cube):
    def backward(self, dy):
        return dy * 2 * self.saved.x**2  # 2 instead of 3


def _x(shape):
    rng = np.random.default_rng(0)
    return ms.tensor(rng.uniform(0.5, 1.5, shape), dtype=np.float64, requires_grad=True)


def test_correct_backward_passes_both_modes():
    x = _x((4, 5))
    assert gradcheck(Cube.apply, [x], mode="full")
    assert gradcheck(Cube.apply, [x], mode="directional")


def test_full_mode_catches_a_single_wrong_element_and_names_it():
    x = _x((3, 4))
    with pytest.raises(GradcheckError, match=r"inputs\[0\].*element \(1, 1\)"):
        gradcheck(CubeWrongOneElement.apply, [x], mode="full")


def test_directional_mode_catches_a_wrong_backward():
    x = _x((60, 60))  # large: auto picks directional
    with pytest.raises(GradcheckError, match="directional derivative"):
        gradcheck(CubeWrongEverywhere.apply, [x])


def test_reports_which_of_several_inputs_is_wrong():
    class MulWrongB(Function):
        def forward(self, a, b):
            self.save(a=a, b=b)
            return a * b

        def backward(self, dy):
            return dy * self.saved.b, dy * self.saved.a * 1.1

    a, b = _x((2, 3)), _x((2, 3))
    with pytest.raises(GradcheckError, match=r"inputs\[1\]"):
        gradcheck(MulWrongB.apply, [a, b])


def test_requires_float64_and_something_to_check():
    with pytest.raises(TypeError, match="float64"):
        gradcheck(Cube.apply, [ms.tensor([1.0], requires_grad=True)])
    with pytest.raises(ValueError, match="nothing to check"):
        gradcheck(Cube.apply, [ms.tensor([1.0], dtype=np.float64)])

"""Moving a tensor between host memory (NumPy) and a GPU (CuPy); the gradient moves back.

The only op allowed to take inputs that are not on the active backend's device (it is how data
gets there): ``Function.apply`` checks every other op's inputs (``minisegnet/arrays.py``).
"""

from __future__ import annotations

from minisegnet.arrays import device_of, to_device
from minisegnet.autograd import Function


class ToDevice(Function):
    crosses_devices = True

    def forward(self, x, device: str):
        self.save(source=device_of(x))
        return to_device(x, device)

    def backward(self, dy):
        return to_device(dy, self.saved.source)

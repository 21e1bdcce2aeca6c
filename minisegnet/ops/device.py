"""Moving a tensor between the CPU (NumPy) and a GPU (CuPy); the gradient moves back."""

from __future__ import annotations

import numpy as np

from minisegnet.autograd import Function


def _to(array, device: str):
    if device == "cpu":
        return array if isinstance(array, np.ndarray) else array.get()
    if device == "cuda":
        from minisegnet import backend

        reason = backend.get("cuda").unavailable_reason()
        if reason is not None:
            raise backend.BackendUnavailable(f"to('cuda'): {reason}")
        import cupy

        return cupy.asarray(array)
    raise ValueError(f"device: expected 'cpu' or 'cuda', got {device!r}")


class ToDevice(Function):
    def forward(self, x, device: str):
        self.save(source="cpu" if isinstance(x, np.ndarray) else "cuda")
        return _to(x, device)

    def backward(self, dy):
        return _to(dy, self.saved.source)

"""``Parameter``: a tensor that a Module learns (it requires grad and is listed by parameters())."""

from __future__ import annotations

from minisegnet.tensor import Tensor


class Parameter(Tensor):
    """A leaf tensor with ``requires_grad=True`` that Modules register automatically."""

    def __init__(self, data, requires_grad: bool = True, dtype=None):
        super().__init__(data, requires_grad=requires_grad, dtype=dtype)

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"

"""Test inputs chosen so that finite differences mean something.

* ``distinct(shape)``: a shuffled linspace, so no two values are equal (no ties inside a max-pool
  window) and none is near 0 (no ReLU input at its kink).
* ``assert_matches(actual, expected, dtype)``: backend-versus-reference comparison with the
  tolerances the project promises (about 1e-5 relative in float32, 1e-10 in float64).
* ``tensor_of(array)``: a tensor keeping the array's dtype.
* ``assert_cross_entropy_matches_torch(...)``: our loss and gradient against PyTorch's.
* ``record_launches(monkeypatch, *modules)``: the names of the CUDA kernels launched.
"""

from __future__ import annotations

import numpy as np

import minisegnet as ms


def distinct(shape, seed: int = 0, dtype=np.float64, low: float = -2.0, high: float = 2.0):
    """All-distinct values in [low, high], none within (high-low)/(4n) of zero, shuffled."""
    n = int(np.prod(shape))
    values = np.linspace(low, high, 2 * n + 1)
    values = values[np.abs(values) > (high - low) / (8 * n + 4)]  # keep away from 0
    rng = np.random.default_rng(seed)
    chosen = rng.choice(values, size=n, replace=False)
    return chosen.reshape(shape).astype(dtype)


def assert_matches(actual, expected, dtype=np.float32, what: str = "values"):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != {expected.shape}"
    if np.dtype(dtype) == np.float64:
        rtol, atol = 1e-10, 1e-12
    else:
        rtol, atol = 1e-5, 1e-5 * max(1.0, float(np.abs(expected).max(initial=0)))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=what)


def tensor_of(array, requires_grad: bool = False):
    """A tensor keeping the array's dtype (ms.tensor makes float data float32 by default)."""
    array = np.asarray(array)
    return ms.tensor(array, requires_grad=requires_grad, dtype=array.dtype)


def record_launches(monkeypatch, *modules: str) -> list[str]:
    """Spy on the kernel launches of the CUDA wrapper ``modules`` (dotted names): each launch
    still runs, and its kernel's name is appended to the list returned (clear it between
    checks)."""
    from minisegnet.cuda import launch as launch_module

    seen: list[str] = []
    real = launch_module.launch

    def spy(source_file, kernel_name, *args, **kwargs):
        seen.append(kernel_name)
        return real(source_file, kernel_name, *args, **kwargs)

    for module in modules:
        monkeypatch.setattr(f"{module}.launch", spy)
    return seen


def assert_cross_entropy_matches_torch(logits, target, weight, grad_atol: float):
    """Our mean ``cross_entropy`` (on the active backend, ignore_index 255) against PyTorch's,
    value and gradient. Call it after ``pytest.importorskip("torch")``."""
    import torch

    import minisegnet.functional as F

    x = ms.tensor(logits, requires_grad=True)
    loss = F.cross_entropy(x, target, weight)
    loss.backward()
    logits_t = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(
        logits_t, torch.tensor(target), torch.tensor(weight), ignore_index=255
    )
    expected.backward()
    np.testing.assert_allclose(loss.item(), expected.item(), rtol=1e-5)
    np.testing.assert_allclose(x.grad, logits_t.grad.numpy(), rtol=1e-4, atol=grad_atol)

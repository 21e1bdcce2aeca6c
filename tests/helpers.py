"""Test inputs chosen so that finite differences mean something.

* ``distinct(shape)``: a shuffled linspace, so no two values are equal (no ties inside a max-pool
  window) and none is near 0 (no ReLU input at its kink).
* ``assert_matches(actual, expected, dtype)``: backend-versus-reference comparison with the
  tolerances the project promises (about 1e-5 relative in float32, 1e-10 in float64).
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

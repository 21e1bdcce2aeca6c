"""Checking a backward pass against central finite differences.

For a function f of inputs x_1..x_k returning a tensor y, reduce y to a scalar with a fixed
random projection r (same shape as y):  L(x) = sum(r * f(x)). Backpropagation gives dL/dx_i for
every element. Central differences give the same numbers with no calculus at all:

    dL/dx[j]  ~=  (L(x + eps e_j) - L(x - eps e_j)) / (2 eps)          error O(eps^2)

* Full mode (small inputs): every element j of every input is perturbed and compared. Because r
  is random, a wrong entry anywhere in the Jacobian shows up with probability 1.
* Directional mode (large inputs): for a few random directions u,
      (L(x + eps u) - L(x - eps u)) / (2 eps)   must equal   sum(dL/dx * u)
  which checks the whole gradient at the cost of two forward passes per direction.

Work in float64: with eps = 1e-6 the truncation error is ~1e-12 and the rounding error
~1e-10, so a relative tolerance of 1e-5 separates bugs from noise. Choose inputs away from
kinks (ReLU at 0, ties inside a max-pool window): there the function is not differentiable and
finite differences measure something else.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from minisegnet.arrays import to_host
from minisegnet.tensor import Tensor

__all__ = ["gradcheck", "GradcheckError"]


class GradcheckError(AssertionError):
    """The analytic and numerical gradients disagree; the message says where and by how much."""


def _loss(fn, inputs, projection):
    out = fn(*inputs)
    if isinstance(out, tuple):
        out = out[0]
    return float((out.data.astype(np.float64) * projection).sum()), out


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Tensor],
    *,
    eps: float = 1e-6,
    atol: float = 1e-6,
    rtol: float = 1e-4,
    max_full_elements: int = 2000,
    directions: int = 6,
    seed: int = 0,
    mode: str = "auto",
) -> bool:
    """Check ``fn(*inputs)``'s backward against central differences; raise on disagreement.

    ``inputs``: tensors; the float64 ones with ``requires_grad=True`` are checked (others, such
    as integer labels, are passed through). ``mode``: "full", "directional", or "auto" (full when
    the checked inputs hold at most ``max_full_elements`` numbers). Returns True when all agree;
    raises :class:`GradcheckError` naming the input, the element (or direction), both values and
    the difference otherwise.
    """
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise ValueError("gradcheck: no input has requires_grad=True, nothing to check")
    for i in checked:
        if inputs[i].dtype != np.float64:
            raise TypeError(
                f"gradcheck: inputs[{i}] is {inputs[i].dtype}; finite differences need float64"
            )
        if not inputs[i].data.flags.c_contiguous:  # perturbing works on a flat view
            inputs[i].data = inputs[i].xp.ascontiguousarray(inputs[i].data)
    rng = np.random.default_rng(seed)

    # Analytic gradient of L = sum(r * f(x)).
    for i in checked:
        inputs[i].grad = None
    out = fn(*inputs)
    if isinstance(out, tuple):
        out = out[0]
    projection = rng.standard_normal(out.shape)
    out.backward(out.xp.asarray(projection))
    analytic = {}
    for i in checked:
        g = inputs[i].grad
        analytic[i] = np.zeros(inputs[i].shape) if g is None else np.asarray(to_host(g), np.float64)

    total = sum(inputs[i].size for i in checked)
    if mode == "auto":
        mode = "full" if total <= max_full_elements else "directional"

    if mode == "full":
        for i in checked:
            data = inputs[i].data
            flat = data.reshape(-1)
            for j in range(flat.size):
                original = flat[j].item()
                flat[j] = original + eps
                plus, _ = _loss(fn, inputs, projection)
                flat[j] = original - eps
                minus, _ = _loss(fn, inputs, projection)
                flat[j] = original
                numeric = (plus - minus) / (2 * eps)
                value = analytic[i].reshape(-1)[j]
                if not abs(numeric - value) <= atol + rtol * abs(numeric):
                    where = tuple(int(k) for k in np.unravel_index(j, data.shape))
                    raise GradcheckError(
                        f"gradient of inputs[{i}] (shape {data.shape}) at element {where}: "
                        f"backward gives {value:.8g}, finite differences give {numeric:.8g} "
                        f"(difference {abs(numeric - value):.3g}, tolerance "
                        f"{atol + rtol * abs(numeric):.3g})"
                    )
    elif mode == "directional":
        for d in range(directions):
            units = {i: rng.standard_normal(inputs[i].shape) for i in checked}
            originals = {i: inputs[i].data.copy() for i in checked}
            xp = inputs[checked[0]].xp
            for i in checked:
                inputs[i].data = originals[i] + eps * xp.asarray(units[i])
            plus, _ = _loss(fn, inputs, projection)
            for i in checked:
                inputs[i].data = originals[i] - eps * xp.asarray(units[i])
            minus, _ = _loss(fn, inputs, projection)
            for i in checked:
                inputs[i].data = originals[i]
            numeric = (plus - minus) / (2 * eps)
            value = sum(float((analytic[i] * units[i]).sum()) for i in checked)
            scale = sum(float(np.abs(analytic[i] * units[i]).sum()) for i in checked)
            if not abs(numeric - value) <= atol + rtol * max(abs(numeric), scale * 1e-3):
                # Localise: which input's part of the directional derivative is off.
                parts = []
                for i in checked:
                    inputs[i].data = originals[i] + eps * xp.asarray(units[i])
                    p, _ = _loss(fn, inputs, projection)
                    inputs[i].data = originals[i] - eps * xp.asarray(units[i])
                    m, _ = _loss(fn, inputs, projection)
                    inputs[i].data = originals[i]
                    part_numeric = (p - m) / (2 * eps)
                    part_value = float((analytic[i] * units[i]).sum())
                    parts.append(
                        f"inputs[{i}] (shape {inputs[i].shape}): backward {part_value:.8g}, "
                        f"finite differences {part_numeric:.8g}"
                    )
                raise GradcheckError(
                    f"directional derivative {d} disagrees: backward gives {value:.8g}, finite "
                    f"differences give {numeric:.8g} (difference {abs(numeric - value):.3g}); "
                    + "; ".join(parts)
                )
    else:
        raise ValueError(f"gradcheck: mode must be 'auto', 'full' or 'directional', got {mode!r}")
    return True

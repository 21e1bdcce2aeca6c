"""The reverse-mode autograd engine: ``Function``, the graph it builds, and ``backward``.

How it works, in one paragraph. Every operation on tensors is a :class:`Function`. Calling
``SomeFunction.apply(a, b, k=3)`` runs ``forward`` on the plain arrays inside ``a`` and ``b`` and
returns a new tensor that remembers the function instance as its ``creator``. The function
instance remembers its input tensors and whatever arrays ``forward`` chose to ``save``. That is
the whole graph: tensors point to the function that made them, functions point to their inputs.
``loss.backward()`` walks that graph from the loss to the leaves in reverse topological order,
calling each function's ``backward`` with the gradient of its output, and adding (``+=``) the
gradients it returns into the gradients of its inputs; the ``+=`` is what makes a tensor used
twice (a diamond in the graph) receive the sum of both contributions.

Writing a new op is writing one subclass::

    class Exp(Function):
        def forward(self, x):
            y = np.exp(x)
            self.save(y=y)                 # what backward needs, by name
            return y

        def backward(self, dy):
            return dy * self.saved.y       # one gradient per tensor input

After ``backward`` has run through a function, its saved arrays are released (so a long network
does not keep every intermediate alive), unless ``retain_graph=True`` was passed.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from types import SimpleNamespace

import numpy as np

from minisegnet.arrays import check_on_backend

__all__ = ["Function", "no_grad", "enable_grad", "is_grad_enabled", "backward"]

_grad_state = threading.local()


def is_grad_enabled() -> bool:
    """False inside ``with no_grad():`` (in this thread), True otherwise."""
    return getattr(_grad_state, "enabled", True)


@contextmanager
def no_grad():
    """Run operations without recording the graph (evaluation, optimiser updates)."""
    previous = is_grad_enabled()
    _grad_state.enabled = False
    try:
        yield
    finally:
        _grad_state.enabled = previous


@contextmanager
def enable_grad():
    """Record the graph again inside a ``no_grad`` block."""
    previous = is_grad_enabled()
    _grad_state.enabled = True
    try:
        yield
    finally:
        _grad_state.enabled = previous


class _Freed:
    """Stands in for ``saved`` after backward released it; any access explains what happened."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attribute):
        self.explain()

    def explain(self):
        raise RuntimeError(
            f"{self._name}.backward: its saved arrays were freed by an earlier backward(); "
            "to backpropagate through the same graph twice, call backward(retain_graph=True) "
            "the first time"
        )


class Function:
    """One differentiable operation.

    Subclasses define:

    ``forward(self, *arrays, **options) -> array or tuple of arrays``
        Plain arrays in (the tensors' data, in the order given to ``apply``; non-tensor
        arguments pass through unchanged), plain arrays out. Save what backward needs with
        ``self.save(name=array)``.

    ``backward(self, *grads) -> gradient or tuple of gradients``
        One incoming gradient per output (``None`` for an output nothing depended on; a
        function with several outputs must accept that). Returns one gradient per *tensor*
        input, in order (``None`` where an input needs none).

    ``differentiable_outputs``: how many of the outputs, counted from the first, carry gradients
    (pooling returns values and indices; the indices carry none).
    """

    differentiable_outputs: int | None = None  # None: all of them
    # Every op computes where the active backend does, on inputs that live there (the device
    # rule, ``minisegnet/arrays.py``); only ``ToDevice`` moves data across and sets this.
    crosses_devices = False
    # True where ``backward`` returns arrays it allocated in that call, one per input and held by
    # nothing else (no view, no saved array, no array returned twice). The engine may then add
    # other gradients of the same tensor into them in place instead of allocating a sum (the
    # average poolings: PSPNet's four bins and the concatenation all send a gradient to one map).
    fresh_gradients = False

    def __init__(self):
        self.saved = SimpleNamespace()
        self.inputs: tuple = ()
        self.needs_grad: tuple[bool, ...] = ()

    def save(self, **arrays) -> None:
        """Keep arrays for backward, by name: ``self.save(x=x, idx=idx)``; read ``self.saved.x``."""
        for name, value in arrays.items():
            setattr(self.saved, name, value)

    def release(self) -> None:
        """Drop saved arrays and input references once backward no longer needs them."""
        self.saved = _Freed(type(self).__name__)
        self.inputs = ()

    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define forward")

    def backward(self, *grads):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define backward")

    @classmethod
    def apply(cls, *args, **kwargs):
        """Run forward on the tensors' arrays; record the node when a gradient is needed."""
        from minisegnet.tensor import Tensor

        fn = cls()
        tensor_inputs = tuple(a for a in args if isinstance(a, Tensor))
        if not cls.crosses_devices:
            check_on_backend(cls.__name__, [t.data for t in tensor_inputs])
        raw_args = tuple(a.data if isinstance(a, Tensor) else a for a in args)
        outputs = fn.forward(*raw_args, **kwargs)
        single = not isinstance(outputs, tuple)
        if single:
            outputs = (outputs,)

        record = is_grad_enabled() and any(t.requires_grad for t in tensor_inputs)
        n_diff = len(outputs) if cls.differentiable_outputs is None else cls.differentiable_outputs
        results = []
        for i, out in enumerate(outputs):
            if isinstance(out, np.generic):  # NumPy reductions to () return scalars
                out = np.asarray(out)
            grad_out = record and i < n_diff
            results.append(Tensor.from_array(out, requires_grad=grad_out))
        if record:
            fn.inputs = tensor_inputs
            fn.needs_grad = tuple(t.requires_grad for t in tensor_inputs)
            fn.outputs_meta = [(r.shape, r.dtype) for r in results[:n_diff]]
            # Outputs are referenced weakly by position: the node needs their count, shape and
            # dtype (to build zero gradients for unused outputs), not the tensors themselves.
            for i, r in enumerate(results[:n_diff]):
                r.creator = fn
                r.output_index = i
        else:
            fn.release()
        return results[0] if single else tuple(results)


def _topological_order(roots) -> list[Function]:
    """Functions reachable from the tensors ``roots``, each after every function that consumes
    its output.

    Iterative depth-first search (a recursive one would hit Python's recursion limit on a
    ResNet-101).
    """
    order: list[Function] = []
    visited: set[int] = set()
    stack = [(root.creator, False) for root in reversed(roots) if root.creator is not None]
    while stack:
        fn, expanded = stack.pop()
        if expanded:
            order.append(fn)
            continue
        if id(fn) in visited:
            continue
        visited.add(id(fn))
        stack.append((fn, True))
        for t in fn.inputs:
            if t.creator is not None and id(t.creator) not in visited:
                stack.append((t.creator, False))
    order.reverse()  # consumers first
    return order


def _root_gradient(root, grad, which: str | None):
    """The starting gradient of one root: ``grad`` checked against its shape, or 1 for a
    scalar. ``which`` names the root in messages ("tensor 2") when there are several."""
    xp = root.xp
    if not root.requires_grad:
        raise RuntimeError(
            f"backward: {which or 'this tensor'} does not require grad (no input had "
            "requires_grad=True, or it was computed under no_grad())"
        )
    if grad is None:
        if root.size != 1:
            raise RuntimeError(
                f"backward: grad must be given for a non-scalar output "
                f"({which + ', ' if which else ''}shape {root.shape}); pass grad=array of the "
                "same shape, or reduce to a scalar first"
            )
        return xp.ones(root.shape, dtype=root.dtype)
    grad = grad.data if hasattr(grad, "creator") else xp.asarray(grad, dtype=root.dtype)
    if grad.shape != root.shape:
        raise ValueError(
            f"backward: grad must have the output's shape {root.shape}, got {grad.shape}"
            + (f" ({which})" if which else "")
        )
    return grad


def _roots_and_gradients(root, grad):
    """``backward``'s arguments as two lists: the tensors and their starting gradients."""
    if not isinstance(root, (list, tuple)):
        return [root], [_root_gradient(root, grad, None)]
    roots = list(root)
    if not roots:
        raise ValueError("backward: got an empty list of tensors")
    if not all(hasattr(r, "creator") for r in roots):
        kinds = sorted({type(r).__name__ for r in roots if not hasattr(r, "creator")})
        raise TypeError(f"backward: expected a list of tensors, got {', '.join(kinds)} in it")
    if grad is None:
        grad = [None] * len(roots)
    elif not (isinstance(grad, (list, tuple)) and len(grad) == len(roots)):
        got = f"{len(grad)} of them" if isinstance(grad, (list, tuple)) else type(grad).__name__
        raise ValueError(
            f"backward: grad must be None or a list of {len(roots)} gradients, one per tensor, "
            f"got {got}"
        )
    return roots, [_root_gradient(r, g, f"tensor {i}") for i, (r, g) in enumerate(zip(roots, grad))]


def backward(root, grad=None, retain_graph: bool = False) -> None:
    """Backpropagate from tensor ``root``; leaves that require grad receive ``.grad``.

    ``root`` may also be a list or tuple of tensors, with ``grad`` None or a list of one
    gradient (or None, for a scalar) per tensor, as ``torch.autograd.backward(tensors,
    grad_tensors)``: one pass for all of them, so what they share is gone through once and its
    gradients summed there. (One ``backward`` call per tensor goes through the shared part each
    time and makes a new ``.grad`` sum at every leaf each time: the pyramid pooling benchmark's
    four bins of one map took 77 ms of backward that way, 57 ms in one pass.)"""
    roots, grads = _roots_and_gradients(root, grad)
    xp = roots[0].xp
    for r in roots:
        if r.creator is not None and isinstance(r.creator.saved, _Freed):
            r.creator.saved.explain()

    # Gradients of non-leaf outputs, keyed by (function id, output index), and of the leaves
    # (keyed by id(leaf); they reach ``.grad`` once, at the end). Sums the engine allocated
    # itself (``own_sums``: nothing else holds them) take later contributions in place, instead
    # of a new array for every ``a + b`` (8x512x60x60: 14.8 ms for ``a + b``, 5.4 ms for
    # ``a += b``), and so do the gradients of ops that declare ``fresh_gradients``. Any other
    # gradient an op returned is never modified: ops may return the same array twice (``Add``
    # hands ``dy`` to both inputs) or a view of what they saved.
    pending: dict[tuple[int, int], object] = {}
    leaf_grads: dict[int, object] = {}
    leaves: dict[int, object] = {}
    own_sums: dict[int, object] = {}

    def add(t, g, fresh=False):
        """Add gradient ``g`` to what ``t`` has received in this pass; ``fresh``: nothing else
        holds ``g`` (``Function.fresh_gradients``), so it may serve as the sum."""
        if t.creator is None:
            leaves[id(t)] = t
            sums, key = leaf_grads, id(t)
        else:
            if t._retains_grad:  # before any sum below changes g: .grad gets g's value now
                t._accumulate_grad(g)
            sums, key = pending, (id(t.creator), t.output_index)
        if key not in sums:
            sums[key] = g
            if fresh:
                own_sums[id(g)] = g
        elif id(sums[key]) in own_sums:
            sums[key] += g  # g itself is dropped here, fresh or not
        elif fresh:  # a + b == b + a exactly: the fresh array takes the sum
            g += sums[key]
            sums[key] = g
            own_sums[id(g)] = g
        else:
            total = sums[key] + g
            own_sums[id(total)] = total
            sums[key] = total

    for r, g in zip(roots, grads):
        add(r, g)
    for fn in _topological_order(roots):
        n_out = len(fn.outputs_meta)
        grads_out = tuple(pending.pop((id(fn), i), None) for i in range(n_out))
        for g in grads_out:
            own_sums.pop(id(g), None)
        if all(g is None for g in grads_out):
            continue
        if n_out > 1:  # functions with several outputs get zeros for the unused ones
            grads_out = tuple(
                xp.zeros(shape, dtype=dtype) if g is None else g
                for g, (shape, dtype) in zip(grads_out, fn.outputs_meta)
            )
        grads_in = fn.backward(*grads_out)
        if not isinstance(grads_in, tuple):
            grads_in = (grads_in,)
        if len(grads_in) != len(fn.inputs):
            raise RuntimeError(
                f"{type(fn).__name__}.backward returned {len(grads_in)} gradients "
                f"for {len(fn.inputs)} tensor inputs"
            )
        for t, g, needed in zip(fn.inputs, grads_in, fn.needs_grad):
            if not needed or g is None:
                continue
            if isinstance(g, np.generic):
                g = np.asarray(g)
            if g.shape != t.shape:
                raise RuntimeError(
                    f"{type(fn).__name__}.backward returned a gradient of shape {g.shape} "
                    f"for an input of shape {t.shape}"
                )
            add(t, g, fresh=fn.fresh_gradients)
        if not retain_graph:
            fn.release()
    for key, g in leaf_grads.items():
        leaves[key]._accumulate_grad(g)

"""``Module``: the base class of layers and networks, and the containers built on it.

A module holds parameters (learned tensors), buffers (saved state that is not learned, such as
batch norm's running statistics) and child modules, each registered just by assigning it to an
attribute::

    class TwoLayer(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Linear(2, 16)            # a child module
            self.scale = nn.Parameter(np.ones(1))  # a parameter

Names are dotted paths (``fc1.weight``), the same in ``named_parameters()`` and ``state_dict()``,
so weights saved from one model load into another built the same way.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterator

import numpy as np

from minisegnet import backend
from minisegnet.arrays import to_device, to_host
from minisegnet.nn.parameter import Parameter
from minisegnet.tensor import array_module, target_dtype


class StateDictError(ValueError):
    """Raised by ``load_state_dict`` with every mismatch listed, not just the first."""


class Module:
    """Base class: subclasses define ``forward``; calling the module calls it (and its hooks)."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_forward_hooks", OrderedDict())
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise RuntimeError(
                f"{type(self).__name__}: call super().__init__() before assigning attributes"
            )
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        for table in (self._parameters, self._buffers, self._modules):
            table.pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name: str, array) -> None:
        """Keep ``array`` (not learned) in the state dict under ``name``; ``None`` is allowed.

        Like a parameter, a new buffer is put where the active backend keeps its arrays."""
        if array is not None:
            array = to_device(array, backend.current().device)
        object.__setattr__(self, name, array)
        self._buffers[name] = array

    def _set_buffer(self, name: str, array) -> None:
        """Replace a buffer's array (running statistics are updated this way)."""
        object.__setattr__(self, name, array)
        self._buffers[name] = array

    # ------------------------------------------------------------------ traversal
    def named_children(self) -> Iterator[tuple[str, Module]]:
        yield from self._modules.items()

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, Module]]:
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        seen = set()
        for module_name, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                if p is None or id(p) in seen:
                    continue
                seen.add(id(p))
                yield (f"{module_name}.{name}" if module_name else name), p

    def parameters(self) -> Iterator[Parameter]:
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self) -> Iterator[tuple[str, object]]:
        for module_name, module in self.named_modules():
            for name, b in module._buffers.items():
                if b is not None:
                    yield (f"{module_name}.{name}" if module_name else name), b

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    # ------------------------------------------------------------------ modes and grads
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def apply(self, fn: Callable[[Module], None]) -> Module:
        for m in self.modules():
            fn(m)
        return self

    def to(self, target) -> Module:
        """Move every parameter and buffer: ``model.to("cuda")``, ``model.to(np.float64)``.

        An optimiser's state follows its parameters to the new device at its next step (see
        ``minisegnet/optim/optimizer.py``). Moving drops the gradients.
        """
        for m in self.modules():
            for p in list(m._parameters.values()):
                if p is None:
                    continue
                if isinstance(target, str) and target in ("cpu", "cuda"):
                    p.data = to_device(p.data, target)
                else:
                    p.data = p.data.astype(target_dtype("Module.to", target))
                p.grad = None
            for name, b in list(m._buffers.items()):
                if b is None:
                    continue
                if isinstance(target, str) and target in ("cpu", "cuda"):
                    m._set_buffer(name, to_device(b, target))
                elif b.dtype.kind == "f":
                    m._set_buffer(name, b.astype(target_dtype("Module.to", target)))
        return self

    # ------------------------------------------------------------------ calling
    def forward(self, *args, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    def __call__(self, *args, **kwargs):
        output = self.forward(*args, **kwargs)
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, output)
            if result is not None:
                output = result
        return output

    def register_forward_hook(self, hook: Callable) -> Callable[[], None]:
        """Call ``hook(module, inputs, output)`` after every forward; returns a remover.

        The lessons use this to capture activations and pooling switches.
        """
        key = object()
        self._forward_hooks[key] = hook

        def remove():
            self._forward_hooks.pop(key, None)

        return remove

    # ------------------------------------------------------------------ state
    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """Every parameter and buffer as a host NumPy array, keyed by dotted name."""
        state = OrderedDict()
        for name, p in self.named_parameters():
            state[name] = to_host(p.data).copy()
        for name, b in self.named_buffers():
            state[name] = to_host(b).copy()
        return state

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays into parameters and buffers, checking names and shapes.

        Every problem (missing names, unexpected names, shape mismatches) is collected and
        reported together in one :class:`StateDictError`; nothing is loaded when any is found.
        With ``strict=False`` missing and unexpected names are allowed, shape mismatches are not.
        """
        own = OrderedDict()
        for name, p in self.named_parameters():
            own[name] = ("param", p)
        for module_name, module in self.named_modules():
            for bname, b in module._buffers.items():
                if b is not None:
                    full = f"{module_name}.{bname}" if module_name else bname
                    own[full] = ("buffer", (module, bname, b))
        problems = []
        for name in own:
            if name not in state and strict:
                problems.append(f"missing: {name}")
        for name in state:
            if name not in own and strict:
                problems.append(f"unexpected: {name}")
        for name, (kind, item) in own.items():
            if name not in state:
                continue
            current = item.data if kind == "param" else item[2]
            given = np.asarray(state[name])
            if tuple(given.shape) != tuple(current.shape):
                problems.append(
                    f"shape mismatch for {name}: model has {tuple(current.shape)}, "
                    f"state has {tuple(given.shape)}"
                )
        if problems:
            raise StateDictError(
                f"load_state_dict into {type(self).__name__} found {len(problems)} problem(s):\n  "
                + "\n  ".join(problems)
            )
        for name, (kind, item) in own.items():
            if name not in state:
                continue
            given = np.asarray(state[name])
            if kind == "param":
                xp = array_module(item.data)
                item.data = xp.asarray(given, dtype=item.data.dtype).copy()
            else:
                module, bname, b = item
                xp = array_module(b)
                module._set_buffer(bname, xp.asarray(given, dtype=b.dtype).copy())

    # ------------------------------------------------------------------ printing
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = []
        for name, child in self._modules.items():
            child_repr = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child_repr}")
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n" + "\n".join(lines) + "\n)"


class _Container(Module):
    """Indexing, ``len`` and iteration over the children, in the order they were added."""

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class Sequential(_Container):
    """Children called in order, each on the previous one's output."""

    def __init__(self, *modules: Module):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], (OrderedDict, dict)):
            for name, m in modules[0].items():
                setattr(self, name, m)
        else:
            for i, m in enumerate(modules):
                setattr(self, str(i), m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def append(self, module: Module) -> Sequential:
        setattr(self, str(len(self)), module)
        return self


class ModuleList(_Container):
    """A list of modules whose parameters are registered (a plain list would hide them)."""

    def __init__(self, modules=()):
        super().__init__()
        for m in modules:
            self.append(m)

    def append(self, module: Module) -> ModuleList:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList.append: expected a Module, got {type(module).__name__}")
        setattr(self, str(len(self._modules)), module)
        return self


class Identity(Module):
    def forward(self, x):
        return x

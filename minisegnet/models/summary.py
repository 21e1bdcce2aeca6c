"""``summary(model, input_shape)``: every layer's output shape, parameters, multiply-adds, memory.

It runs one forward pass on a random input with a forward hook on every layer (every module
without children), so the shapes are the real ones for that input size -- FCN's 100-pixel
padding, the ceil-mode pools and the crops all show up. The result is a :class:`Summary`: ``str()``
gives the table, ``.rows`` the structured list (one :class:`LayerRow` per call, in execution
order; a layer called twice appears twice), and the totals are attributes. Operations written in
a ``forward`` rather than as modules (FCN's skip additions, PSPNet's upsampling and concatenation
in the pyramid module and after the classifier) have no row of their own.

Columns, per row:

* ``output_shape``: shape of the output (of the values, for a pool that also returns switches).
* ``params``: number of the layer's own Parameters (fixed weights, such as FCN's bilinear
  upsampling kept as buffers, are counted separately in ``fixed``).
* ``macs``: multiply-accumulates of convolutions, transposed convolutions and linear layers:
  conv ``N*Cout*Ho*Wo * (Cin/groups)*kh*kw``; transposed conv ``N*Cin*H*W * (Cout/groups)*kh*kw``
  (each input pixel is spread over a kh x kw footprint of every output channel; FCN's fixed
  diagonal upsampling counts what it computes, one class per group); linear
  ``N*out*in``. Elementwise layers (BN, ReLU, pooling, interpolation) are counted as 0; they are
  memory-bound, and their cost shows in the memory column instead.
* ``activation_bytes``: bytes of the output values (what the layer adds to a forward pass's memory
  if they are kept for backward), ``switch_bytes``: bytes of the pooling switches, if any.

Totals: ``total_params`` (= ``model.num_parameters()``, each Parameter once even when shared),
``total_fixed``, ``total_macs``, ``total_activation_bytes``, ``total_switch_bytes`` and
``param_bytes``.
The pass runs under ``no_grad`` in eval mode by default (``training=True`` runs it in training
mode, e.g. to see PSPNet's auxiliary head; batch-norm running statistics are restored after).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from minisegnet.autograd import no_grad
from minisegnet.tensor import Tensor

__all__ = ["summary", "Summary", "LayerRow"]


@dataclass
class LayerRow:
    name: str
    type: str
    output_shape: tuple
    params: int
    fixed: int
    macs: int
    activation_bytes: int
    switch_bytes: int


def _nbytes(obj) -> int:
    """Bytes held by an array, a Tensor, or a switch object (summing its array attributes)."""
    if obj is None:
        return 0
    if isinstance(obj, Tensor):
        return _nbytes(obj.data)
    nbytes = getattr(obj, "nbytes", None)
    if isinstance(nbytes, (int, np.integer)):
        return int(nbytes)
    if hasattr(obj, "__dict__"):
        return sum(_nbytes(v) for v in vars(obj).values() if hasattr(v, "nbytes"))
    return 0


def _values_and_switches(output):
    """Split a layer's output into (values tensor, switches or None)."""
    if isinstance(output, tuple):
        values = output[0]
        rest = output[1] if len(output) == 2 else None
        return values, rest
    return output, None


def _macs(module, inputs, values) -> int:
    from minisegnet import nn
    from minisegnet.models.fcn import FixedConvTranspose2d

    weight = getattr(module, "weight", None)
    w_shape = None
    if weight is not None:
        w_shape = tuple(weight.shape)
    if isinstance(module, nn.Conv2d) and w_shape is not None:
        # weight (Cout, Cin/groups, kh, kw); every output element sums Cin/groups*kh*kw products
        return int(values.size) * int(np.prod(w_shape[1:]))
    if isinstance(module, FixedConvTranspose2d) and module._diagonal() is not None:
        w_shape = tuple(module._diagonal().shape)  # runs per class: (C, 1, k, k)
    if isinstance(module, (nn.ConvTranspose2d, FixedConvTranspose2d)) and w_shape is not None:
        # weight (Cin, Cout/groups, kh, kw); every input element is multiplied into a footprint
        x = inputs[0]
        return int(x.size) * int(np.prod(w_shape[1:]))
    if isinstance(module, nn.Linear):
        return int(values.size) * int(module.in_features)
    return 0


class Summary:
    """The result of :func:`summary`: ``rows`` plus totals; ``str(s)`` is the table."""

    def __init__(self, model_name: str, input_shape, rows, total_params, total_fixed, param_bytes):
        self.model_name = model_name
        self.input_shape = tuple(input_shape)
        self.rows: list[LayerRow] = rows
        self.total_params = int(total_params)
        self.total_fixed = int(total_fixed)
        self.param_bytes = int(param_bytes)
        self.total_macs = sum(r.macs for r in rows)
        self.total_activation_bytes = sum(r.activation_bytes for r in rows)
        self.total_switch_bytes = sum(r.switch_bytes for r in rows)

    def to_list(self) -> list[dict]:
        """The rows as plain dicts (for JSON, pandas, a notebook table)."""
        return [asdict(r) for r in self.rows]

    def __str__(self) -> str:
        header = ("layer", "type", "output shape", "params", "MACs", "memory", "switches")
        lines = [
            (
                r.name,
                r.type,
                "x".join(str(d) for d in r.output_shape),
                f"{r.params:,}" + (f" (+{r.fixed:,} fixed)" if r.fixed else ""),
                _human(r.macs, ""),
                _human_bytes(r.activation_bytes),
                _human_bytes(r.switch_bytes) if r.switch_bytes else "",
            )
            for r in self.rows
        ]
        widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]
        right = {3, 4, 5, 6}

        def fmt(cells):
            return "  ".join(
                c.rjust(w) if i in right else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths))
            ).rstrip()

        rule = "-" * len(fmt(header))
        out = [
            f"{self.model_name}, input {'x'.join(str(d) for d in self.input_shape)}",
            rule,
            fmt(header),
            rule,
        ]
        out += [fmt(line) for line in lines]
        out += [
            rule,
            f"parameters:          {self.total_params:,} ({_human_bytes(self.param_bytes)})",
        ]
        if self.total_fixed:
            out.append(f"fixed weights:       {self.total_fixed:,} (buffers, not learned)")
        out += [
            f"multiply-adds:       {self.total_macs:,} ({_human(self.total_macs, 'MAC')})",
            f"activations:         {_human_bytes(self.total_activation_bytes)} "
            "(all layer outputs of one forward pass)",
        ]
        if self.total_switch_bytes:
            out.append(f"pooling switches:    {_human_bytes(self.total_switch_bytes)}")
        return "\n".join(out)

    def __repr__(self) -> str:
        return (
            f"Summary({self.model_name}, layers={len(self.rows)}, params={self.total_params:,}, "
            f"macs={self.total_macs:,})"
        )


def _human(n: int, unit: str) -> str:
    for factor, prefix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if n >= factor:
            return f"{n / factor:.2f} {prefix}{unit}".rstrip()
    return f"{n} {unit}".rstrip()


def _human_bytes(n: int) -> str:
    for factor, unit in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= factor:
            return f"{n / factor:.2f} {unit}"
    return f"{n} B"


def summary(model, input_shape, training: bool = False, dtype=np.float32, seed: int = 0) -> Summary:
    """Run ``model`` once on a random input of ``input_shape`` and tabulate every layer.

    ``input_shape`` is (N, C, H, W) or (C, H, W) (then N = 1).
    """
    from minisegnet import backend

    shape = tuple(int(d) for d in input_shape)
    if len(shape) == 3:
        shape = (1,) + shape
    if len(shape) != 4 or min(shape) < 1:
        raise ValueError(
            f"summary: input_shape must be (N, C, H, W) or (C, H, W), got {input_shape}"
        )
    xp = backend.current().xp
    x = Tensor(xp.asarray(np.random.default_rng(seed).standard_normal(shape).astype(dtype)))

    layers = [
        (name, m) for name, m in model.named_modules() if name and (not m._modules or m._parameters)
    ]
    rows: list[LayerRow] = []

    def hook_for(name):
        def hook(module, inputs, output):
            values, sw = _values_and_switches(output)
            own_params = sum(p.size for p in module._parameters.values() if p is not None)
            fixed = _fixed_count(module)
            rows.append(
                LayerRow(
                    name=name,
                    type=type(module).__name__,
                    output_shape=tuple(values.shape) if hasattr(values, "shape") else (),
                    params=int(own_params),
                    fixed=int(fixed),
                    macs=_macs(module, inputs, values),
                    activation_bytes=_nbytes(values),
                    switch_bytes=_nbytes(sw),
                )
            )

        return hook

    modes = [(m, m.training) for m in model.modules()]
    saved_buffers = [
        (m, n, b.copy())
        for m in model.modules()
        for n, b in m._buffers.items()
        if b is not None and training
    ]
    removers = [m.register_forward_hook(hook_for(name)) for name, m in layers]
    try:
        model.train(training)
        with no_grad():
            model(x)
    finally:
        for remove in removers:
            remove()
        for m, mode in modes:
            object.__setattr__(m, "training", mode)
        for m, n, b in saved_buffers:
            m._set_buffer(n, b)

    total_fixed = sum(_fixed_count(m) for m in model.modules())
    param_bytes = sum(_nbytes(p) for p in model.parameters())
    return Summary(
        type(model).__name__, shape, rows, model.num_parameters(), total_fixed, param_bytes
    )


def _fixed_count(module) -> int:
    """Weights a layer uses but does not learn (FCN's fixed bilinear kernels), else 0."""
    from minisegnet.models.fcn import FixedConvTranspose2d

    if isinstance(module, FixedConvTranspose2d):
        return int(np.prod(module.weight.shape))
    return 0

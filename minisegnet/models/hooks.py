"""Capturing what happens inside a network: activations and pooling switches, by layer name.

Built on ``Module.register_forward_hook``: a hook ``hook(module, inputs, output)`` runs after the
module's forward. :class:`Recorder` attaches one to each named layer and keeps the outputs;
:func:`capture` runs one forward pass with a recorder; :func:`switches` returns only the pooling
switches (what SegNet's and DeconvNet's decoders unpool with)::

    acts = models.capture(net, x, ["encoder.relu1_2", "encoder.pool1"])
    values, idx = acts["encoder.pool1"]          # a pool with return_indices gives both
    sw = models.switches(net, x)                 # {"encoder.pool1": idx, ...}

Names are those of ``model.named_modules()`` (the same dotted paths as the state dict without the
``.weight``). An unknown name is an error listing the valid ones. Outputs are detached tensors
(no graph is kept), captured under ``no_grad`` and in the model's current train/eval mode.
"""

from __future__ import annotations

from collections import OrderedDict

from minisegnet.autograd import no_grad
from minisegnet.tensor import Tensor

__all__ = ["Recorder", "capture", "switches", "leaf_names"]


def leaf_names(model) -> list[str]:
    """Names of the modules that have no children (the layers), in registration order."""
    return [name for name, m in model.named_modules() if name and not m._modules]


def _detach(output):
    if isinstance(output, Tensor):
        return output.detach()
    if isinstance(output, tuple):
        return tuple(_detach(o) for o in output)
    return output


class Recorder:
    """Context manager recording the outputs of the named layers on every forward pass.

    ``outputs[name]`` is the latest output of that layer; ``calls[name]`` counts the calls (a
    layer used twice keeps its last output, and ``history=True`` keeps all of them in
    ``outputs[name]`` as a list).
    """

    def __init__(self, model, names=None, history: bool = False):
        modules = dict(model.named_modules())
        names = leaf_names(model) if names is None else list(names)
        unknown = [n for n in names if n not in modules or n == ""]
        if unknown:
            raise ValueError(
                f"capture: unknown layer name(s) {unknown}; valid names include "
                f"{leaf_names(model)[:40]}{' ...' if len(leaf_names(model)) > 40 else ''}"
            )
        self.model, self.names, self.history = model, names, history
        self.outputs: OrderedDict = OrderedDict()
        self.calls: dict[str, int] = {}
        self._removers = []
        self._modules = [modules[n] for n in names]

    def _hook_for(self, name):
        def hook(module, inputs, output):
            value = _detach(output)
            self.calls[name] = self.calls.get(name, 0) + 1
            if self.history:
                self.outputs.setdefault(name, []).append(value)
            else:
                self.outputs[name] = value

        return hook

    def __enter__(self) -> Recorder:
        for name, module in zip(self.names, self._modules):
            self._removers.append(module.register_forward_hook(self._hook_for(name)))
        return self

    def __exit__(self, *exc) -> None:
        for remove in self._removers:
            remove()
        self._removers = []


def capture(model, input, names=None, history: bool = False) -> OrderedDict:
    """Run ``model(input)`` once and return ``{name: output}`` for the named layers.

    ``names=None`` captures every leaf layer. The model's mode is left as it is (call
    ``model.eval()`` first for inference behaviour: batch norm with running statistics, no
    dropout). A pooling layer that returns switches gives ``(values, switches)``.
    """
    with Recorder(model, names, history) as recorder, no_grad():
        model(input)
    return recorder.outputs


def switches(model, input) -> OrderedDict:
    """``{pool name: switches}`` of every max pool that returns its indices, in forward order."""
    from minisegnet import nn

    pools = [
        name
        for name, m in model.named_modules()
        if isinstance(m, nn.MaxPool2d) and getattr(m, "return_indices", False)
    ]
    outputs = capture(model, input, pools)
    return OrderedDict((name, outputs[name][1]) for name in outputs)

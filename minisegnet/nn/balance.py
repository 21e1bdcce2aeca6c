"""Balanced initialisation: every batch-normalised convolution starts with a comparable step.

    scales = nn.balance_init_(model, lambda: loss_of(model(x), y))

Why the weight's scale is free. When a convolution's output goes straight into batch norm
(training mode), BN(conv(x, c*W)) = BN(conv(x, W)) for any c > 0: the normalisation divides the
scale out (a bias before BN is removed with the mean). So the loss does not change, but its
gradient does, dL/d(cW) = (1/c) dL/dW. An SGD step of size lr * g turns W's direction by about

    r * lr,      r = |dL/dW| / |W|       (Frobenius norms; r falls as 1/c^2 when W -> c*W)

radians, so r is the layer's effective learning rate, set by |W| alone. He's initialisation picks
|W| to keep activations at unit scale through a plain stack, which batch norm makes irrelevant;
what |W| still decides is r.

Why balance it. In a deep batch-normalised stack without shortcuts, r at initialisation grows
from the loss back towards the input, because each BN + ReLU + conv on the way back amplifies the
gradient a little (Yang et al., "A mean field theory of batch normalization", ICLR 2019). With
``benchmarks/gradient_scale.py`` on the small presets at 64x64: SegNet's first two layers start
with 10 times the decoder's median r, DeconvNet's with 27 times (SegNet-Basic, 8 layers deep,
0.7). One global lr then takes steps 10-30x too large at the bottom of the encoder, or too small
at the top of the decoder; the network trains, but slowly.

What this does. Measure r of every convolution whose output feeds a BatchNorm on one batch, take
the median, and multiply the weights of the layers above it by c = sqrt(r / median), which brings
their r down to the median; the other layers are left as they are. Nothing else changes: the
loss on that batch is the same before and after (checked, else an error), the running
statistics and every other buffer (dropout's step counters) are restored, and no gradient is
left behind. Weight decay later pulls each norm towards its own equilibrium; the balance is a
starting point, which is when it matters. It is a data-dependent initialisation like LSUV (Mishkin & Matas, "All you need
is a good init", ICLR 2016), which rescales layers for their forward variance; this one rescales
for the backward.

Measured on the built-in data (``benchmarks/results/accuracy.md``; small presets, 64x64, lr 0.1,
one warm-up epoch, one CPU thread): SegNet (weight decay 1e-4, 15 epochs) 0.84 mean IoU without
it, 0.92 with it (0.81 against 0.65 after 5 epochs), and 0.93 with it at the default 5e-4 in 12
epochs; DeconvNet (5e-4, 12 epochs) 0.65 without, 0.91 with. Use it with ``minisegnet train
--balance-init``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from minisegnet.arrays import to_host
from minisegnet.autograd import no_grad
from minisegnet.nn.conv import Conv2d, ConvTranspose2d
from minisegnet.nn.normalization import BatchNorm2d

__all__ = ["batch_normalised_convs", "effective_steps", "balance_init_"]


def batch_normalised_convs(model, run: Callable[[], object]) -> list[str]:
    """Names of the Conv2d / ConvTranspose2d layers whose output is the input of a BatchNorm2d,
    found by calling ``run()`` (a forward pass of ``model``) with hooks on every layer."""
    conv_outputs: dict[int, str] = {}
    kept = []  # the outputs stay alive during the pass, so their ids cannot be reused
    found: list[str] = []
    removers = []

    def on_conv(name):
        def hook(module, inputs, output):
            kept.append(output)
            conv_outputs[id(output)] = name

        return hook

    def on_norm(module, inputs, output):
        name = conv_outputs.get(id(inputs[0]))
        if name is not None and name not in found:
            found.append(name)

    for name, module in model.named_modules():
        if isinstance(module, (Conv2d, ConvTranspose2d)):
            removers.append(module.register_forward_hook(on_conv(name)))
        elif isinstance(module, BatchNorm2d):
            removers.append(module.register_forward_hook(on_norm))
    try:
        with no_grad():
            run()
    finally:
        for remove in removers:
            remove()
    return found


def effective_steps(model, loss: Callable[[], object], names) -> dict[str, float]:
    """r = |dL/dW| / |W| of the layers ``names`` (modules of ``model``) after one backward pass of
    ``loss()``; the gradients are cleared again."""
    modules = dict(model.named_modules())
    model.zero_grad()
    loss().backward()
    steps = {}
    for name in names:
        weight = modules[name].weight
        grad = to_host(weight.grad) if weight.grad is not None else np.zeros(1)
        grad_norm = np.linalg.norm(grad.astype(np.float64))
        steps[name] = float(grad_norm / np.linalg.norm(weight.numpy().astype(np.float64)))
    model.zero_grad()
    return steps


def balance_init_(model, loss: Callable[[], object], rtol: float = 1e-3) -> dict[str, float]:
    """Scale the batch-normalised convolutions of ``model`` whose effective step r exceeds the
    median so that they start at the median (see the module docstring); returns the scale of
    every such layer (1.0 for those left alone).

    ``loss()`` runs the model forward on one batch and returns the scalar training loss. The
    model is put in training mode for the measurement (batch norm must use batch statistics
    for the invariance) and left in the mode it was in; its buffers (running statistics,
    dropout step counters) are as before the call.
    """
    was_training = model.training
    buffer_names = {name for name, _ in model.named_buffers()}
    buffers = {k: v for k, v in model.state_dict().items() if k in buffer_names}  # host copies
    model.train()
    try:
        names = batch_normalised_convs(model, loss)
        if not names:
            raise ValueError(
                f"balance_init_: {type(model).__name__} has no convolution followed by batch "
                "norm; its weight scales are not free, so there is nothing to balance"
            )
        _restore_buffers(model, buffers)  # measured with the buffers (dropout masks) given
        steps = effective_steps(model, loss, names)
        median = float(np.median(list(steps.values())))
        _restore_buffers(model, buffers)  # the same dropout masks for both evaluations
        with no_grad():
            before = float(loss().numpy())
        modules = dict(model.named_modules())
        scales, originals = {}, {}
        for name in names:
            scale = math.sqrt(steps[name] / median) if steps[name] > median else 1.0
            if scale != 1.0:
                weight = modules[name].weight
                originals[name] = weight.data
                weight.data = weight.data * weight.dtype.type(scale)  # a new array
            scales[name] = scale
        _restore_buffers(model, buffers)
        with no_grad():
            after = float(loss().numpy())
        if not abs(after - before) <= rtol * abs(before):
            for name, original in originals.items():  # undo: the invariance did not hold
                modules[name].weight.data = original
            raise ValueError(
                f"balance_init_: the loss changed from {before:.6g} to {after:.6g} when the "
                "batch-normalised convolutions were rescaled, so some of them also feed "
                "something other than their batch norm; the weights were left unchanged"
            )
    finally:
        _restore_buffers(model, buffers)
        model.train(was_training)
    return scales


def _restore_buffers(model, buffers: dict) -> None:
    """Put back the running statistics and dropout counters saved in ``buffers``."""
    model.load_state_dict(buffers, strict=False)

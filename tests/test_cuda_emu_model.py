"""A whole network on cuda-emu: the small SegNet-Basic (LRN, convolutions, batch norm, ReLU, max
pooling with switches, unpooling, cross-entropy) and the small PSPNet (dilated convolutions,
adaptive average pooling, bilinear upsampling) run forward and backward with the CUDA kernels
and match the numpy backend (the op files' references)."""

from __future__ import annotations

import numpy as np
import pytest

import minisegnet as ms
import minisegnet.functional as F
from minisegnet import models
from tests.test_cuda_common import needs_emu

pytestmark = needs_emu


def _run(model, backend, shape, seed=0):
    n, _, h, w = shape
    x = ms.tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))
    labels = np.random.default_rng(seed + 1).integers(0, 5, (n, h, w))
    labels[:, :2, :3] = 255  # some ignored pixels
    for p in model.parameters():
        p.grad = None
    with ms.backend.use(backend):
        out = model(x)
        if isinstance(out, tuple):
            out = out[0]
        loss = F.cross_entropy(out, labels, ignore_index=255)
        loss.backward()
    return loss.item(), out.numpy(), {n: p.grad for n, p in model.named_parameters()}


def _compare(model, shape):
    loss_ref, out_ref, grads_ref = _run(model, "numpy", shape)
    loss, out, grads = _run(model, "cuda-emu", shape)
    assert loss == pytest.approx(loss_ref, rel=1e-5)
    np.testing.assert_allclose(out, out_ref, rtol=1e-4, atol=1e-4 * np.abs(out_ref).max())
    for name, g_ref in grads_ref.items():
        if g_ref is None:  # e.g. PSPNet's auxiliary head, unused in eval mode
            assert grads[name] is None, name
            continue
        assert grads[name] is not None, f"{name}: no gradient on cuda-emu"
        # biases followed by batch norm have a zero gradient: compare on the layer's own scale,
        # with an absolute floor for those round-off-sized values
        scale = np.abs(g_ref).max()
        np.testing.assert_allclose(
            grads[name], g_ref, rtol=2e-3, atol=2e-3 * scale + 1e-6, err_msg=name
        )


def test_segnet_basic_trains_the_same_on_cuda_emu():
    model = models.build("segnet_basic", 5, preset="small")  # training mode: batch statistics
    _compare(model, (2, 3, 23, 29))  # odd sizes: 23 -> 12 -> 6 -> 3 -> 2 and back


def test_pspnet_matches_on_cuda_emu():
    model = models.build("pspnet", 5, preset="small")
    model.eval()  # no dropout (its masks differ per call), batch norm with running statistics
    _compare(model, (1, 3, 33, 41))

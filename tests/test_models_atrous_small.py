"""The small presets of DeepLab (LargeFOV, v2 on VGG16 and ResNet), dilation8 and U-Net (valid,
padded): forward + backward on Numba with every parameter receiving a gradient, outputs of the
input's size (odd sizes included), and a forward on cuda-emu that matches the numpy reference."""

from __future__ import annotations

import numpy as np
import pytest

import minisegnet as ms
import minisegnet.functional as F
from minisegnet import models, optim
from tests.conftest import backend_or_skip

NEW = [
    "deeplab_largefov",
    "deeplab_v2_vgg",
    "deeplab_v2_resnet",
    "dilation8",
    "unet",
    "unet_padded",
]
K = 4


def _x(shape, seed=0):
    return ms.tensor(np.random.default_rng(seed).standard_normal(shape).astype(np.float32))


def _labels(n, h, w, seed=1):
    return np.random.default_rng(seed).integers(0, K, (n, h, w))


def test_names_are_registered():
    for name in NEW:
        assert name in models.names()
        assert models.small_preset(name) == models.SMALL_PRESETS[name]
    assert (
        models.build("deeplab-v2-resnet", K, preset="small").config["name"] == "deeplab_v2_resnet"
    )


@pytest.mark.parametrize("name", NEW)
def test_training_step_on_numba_reaches_every_parameter(name):
    with backend_or_skip("numba"):
        model = models.build(name, K, preset="small", seed=0).train()
        opt = optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        h, w = 33, 41  # odd sizes
        before = {n: p.numpy().copy() for n, p in model.named_parameters()}
        out = model(_x((2, 3, h, w)))
        assert out.shape == (2, K, h, w)
        loss = F.cross_entropy(out, _labels(2, h, w))
        loss.backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        assert not missing, f"{name}: no gradient for {missing}"
        zero = [n for n, p in model.named_parameters() if not np.any(p.grad)]
        assert not zero, f"{name}: all-zero gradient for {zero}"
        assert all(np.all(np.isfinite(p.grad)) for p in model.parameters())
        opt.step()
        moved = [n for n, p in model.named_parameters() if not np.array_equal(p.numpy(), before[n])]
        assert len(moved) == len(before)
        assert np.isfinite(loss.item())


@pytest.mark.parametrize("name", NEW)
def test_eval_output_has_the_input_size(name):
    model = models.build(name, K, preset="small", seed=0).eval()
    with ms.no_grad():
        y = model(_x((1, 3, 24, 17), seed=2))
    assert y.shape == (1, K, 24, 17) and np.all(np.isfinite(y.numpy()))


@pytest.mark.parametrize("name", NEW)
def test_forward_on_cuda_emu_matches_numpy(name):
    model = models.build(name, K, preset="small", seed=0, width=0.0625).eval()
    x = _x((1, 3, 17, 20), seed=3)
    with ms.backend.use("numpy"), ms.no_grad():
        ref = model(x).numpy()
    with backend_or_skip("cuda-emu"), ms.no_grad():
        out = model(x).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def _f64(shape, seed):
    data = np.random.default_rng(seed).standard_normal(shape)
    return ms.tensor(data, dtype=np.float64, requires_grad=True)


@pytest.mark.parametrize("hidden", [None, 3])
def test_gradcheck_aspp(hidden):
    """ASPP's four dilated branches and their sum against central differences (float64, numpy
    references). Whole networks are not gradient-checked: their max pools over ReLU zeros tie,
    and a finite difference across a tie measures the jump, not the derivative."""
    from minisegnet.gradcheck import gradcheck
    from minisegnet.models.deeplab import ASPP

    aspp = ASPP(2, 3, rates=(1, 2, 3, 4), hidden=hidden, dropout=0.0, seed=0).to(np.float64)
    with ms.backend.use("numpy"):
        assert gradcheck(aspp, [_f64((1, 2, 5, 6), 0)])


def test_gradcheck_context_module_and_unet_mirroring():
    from minisegnet.gradcheck import gradcheck
    from minisegnet.models.context import ContextModule
    from minisegnet.models.unet import _mirror, mirror_index

    context = ContextModule(2, "large", noise=0.05, seed=0).to(np.float64)
    x = ms.tensor(2.0 + np.random.default_rng(1).random((1, 2, 6, 5)), dtype=np.float64,
                  requires_grad=True)  # fmt: skip
    rows, cols = mirror_index(4, 5, 6), mirror_index(3, 4, 2)
    with ms.backend.use("numpy"):
        assert gradcheck(context, [x], mode="directional")
        assert gradcheck(lambda t: _mirror(_mirror(t, 2, rows), 3, cols), [_f64((1, 2, 4, 3), 2)])


def test_saved_networks_load_back(tmp_path):
    from minisegnet import io

    for name in ("deeplab_v2_resnet", "unet", "dilation8"):
        model = models.build(name, K, preset="small", seed=0).eval()
        io.save(model, tmp_path / name)
        loaded = io.load_model(tmp_path / name).eval()
        assert type(loaded) is type(model) and loaded.config == model.config
        x = _x((1, 3, 20, 24))
        with ms.no_grad():
            np.testing.assert_array_equal(loaded(x).numpy(), model(x).numpy())

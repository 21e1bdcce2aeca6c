"""CRF as RNN (minisegnet/nn/crf.py): gradients of the mean-field layers against central finite
differences in float64 with the exact filter, the lattice filter's backward against its
transpose, the layer against the post-processing CRF, and a few steps of training."""

from __future__ import annotations

import numpy as np
import pytest

import minisegnet as ms
from minisegnet.gradcheck import gradcheck
from minisegnet.nn.crf import DenseCRF, GaussianMessage
from minisegnet.ops import crf as crf_ops
from tests.test_crf import scene


def small(h=5, w=6, labels=3, seed=0):
    img, p, truth = scene(h, w, labels, seed)
    logits = np.log(p.astype(np.float64))[None]
    return img, logits, truth


@pytest.mark.parametrize("normalization", crf_ops.NORMALIZATIONS)
def test_gradcheck_exact_float64(normalization):
    img, logits, _ = small()
    layer = DenseCRF(
        3, theta_alpha=3.0, theta_beta=20.0, theta_gamma=1.5, iterations=3,
        normalization=normalization, method="exact", dtype=np.float64,
    )  # fmt: skip
    x = ms.tensor(logits, requires_grad=True, dtype=np.float64)

    def fn(x, w1, w2, mu):
        layer.w1, layer.w2, layer.compatibility = w1, w2, mu
        return layer(x, img[None])

    w1 = ms.tensor(np.array(1.3), requires_grad=True, dtype=np.float64)
    w2 = ms.tensor(np.array(0.7), requires_grad=True, dtype=np.float64)
    mu = ms.tensor(
        1.0 - np.eye(3) + 0.1 * np.arange(9).reshape(3, 3), requires_grad=True, dtype=np.float64
    )
    assert gradcheck(fn, [x, w1, w2, mu], mode="full")


def test_lattice_message_backward_is_the_transpose():
    img, _, _ = small(9, 11)
    f = crf_ops.crf_features(img, crf_ops.CRFParams(theta_alpha=4.0), np.float64)[0]
    message = crf_ops.make_filter(f, "lattice", "symmetric")
    v = ms.tensor(np.random.default_rng(0).random((99, 3)), requires_grad=True, dtype=np.float64)
    out = GaussianMessage.apply(v, message)
    r = np.random.default_rng(1).random((99, 3))
    (out * ms.tensor(r, dtype=np.float64)).sum().backward()
    # <message(v), r> is linear in v with gradient message^T r; check it against the forward
    u = np.random.default_rng(2).random((99, 3))
    np.testing.assert_allclose((message(u) * r).sum(), (u * v.grad).sum(), rtol=1e-9)
    assert gradcheck(lambda v: GaussianMessage.apply(v, message), [v], mode="directional")


def test_layer_matches_post_processing():
    """With the initial weights, the layer's softmax is ops.crf.dense_crf's result."""
    img, p, _ = scene(12, 14, 3, seed=2)
    params = crf_ops.CRFParams(theta_alpha=5.0, iterations=4)
    want = crf_ops.dense_crf(img, p.astype(np.float64), params, method="exact")
    layer = DenseCRF(3, theta_alpha=5.0, iterations=4, method="exact", dtype=np.float64)
    out = layer(ms.tensor(np.log(p.astype(np.float64))[None], dtype=np.float64), img[None])
    got = ms.functional.softmax(out, dim=1).data[0]
    np.testing.assert_allclose(got, want, rtol=1e-7, atol=1e-9)
    lattice = DenseCRF(3, theta_alpha=5.0, iterations=4)
    out = lattice(ms.tensor(np.log(p)[None]), img[None])
    assert out.dtype == np.float32
    assert (out.data[0].argmax(0) == want.argmax(0)).mean() > 0.97


def test_fused_update_matches_readable_one():
    rng = np.random.default_rng(0)
    u, m1, m2 = (rng.random((50, 4)) for _ in range(3))
    mu = rng.random((4, 4))
    want = crf_ops.mean_field_update_ref(u, [m1, m2], [0.5, 2.0], mu)
    got = np.empty_like(u)
    crf_ops._update2(u, m1.copy(), m2, 0.5, 2.0, mu, got)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_training_lowers_the_loss():
    """The CRF's own weights learn: a few SGD steps on one noisy image lower cross-entropy."""
    img, p, truth = scene(10, 12, 3, seed=4)
    layer = DenseCRF(3, w1=1.0, w2=1.0, theta_alpha=5.0, iterations=3, dtype=np.float64,
                     method="exact")  # fmt: skip
    x = ms.tensor(np.log(p.astype(np.float64))[None], dtype=np.float64)
    target = ms.tensor(truth[None])
    losses = []
    for _ in range(6):
        loss = ms.functional.cross_entropy(layer(x, img[None]), target)
        layer.zero_grad()
        loss.backward()
        for param in layer.parameters():
            param.data -= 0.5 * param.grad
        losses.append(float(loss.data))
    assert losses[-1] < 0.9 * losses[0], losses


def test_bad_input():
    img, logits, _ = small()
    layer = DenseCRF(3, method="exact")
    with pytest.raises(ValueError, match="logits must have shape"):
        layer(ms.tensor(logits[:, :2]), img[None])
    with pytest.raises(ValueError, match="images must have shape"):
        layer(ms.tensor(logits), img)
    with pytest.raises(ValueError, match=r"images\[0\].*must match"):
        layer(ms.tensor(logits), img[None, :4])
    with pytest.raises(ValueError, match="theta_gamma"):
        DenseCRF(3, theta_gamma=0)
    with pytest.raises(ValueError, match="method"):
        DenseCRF(3, method="cuda")

"""Dropout: the counter-based hash on every backend, statistics of the mask, scaling, eval mode,
whole-channel dropout, reproducible layers (resumable from a state dict), errors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minisegnet as ms
import minisegnet.functional as F
import minisegnet.nn as nn
from minisegnet.gradcheck import gradcheck
from minisegnet.ops import dropout as drop
from tests.conftest import FIXTURE_OK
from tests.helpers import distinct

CUDA_MODULE = "minisegnet.cuda.normalization"
importlib.import_module(CUDA_MODULE)  # the kernels under test: missing is a failure, not a skip

shapes = st.lists(st.integers(1, 5), min_size=1, max_size=4).map(tuple)
shapes_4d = st.tuples(*(st.integers(1, 4) for _ in range(4)))
probabilities = st.floats(0.0, 1.0)
seeds = st.integers(0, 2**64 - 1)


def python_mask(shape, p, seed, per_channel=False):
    """The contract's formula with Python integers, one element at a time."""
    out_shape = drop.mask_shape(shape, per_channel)
    keep = [(drop.hash64(seed, i) >> 40) * 2.0**-24 >= p for i in range(int(np.prod(out_shape)))]
    scale = 0.0 if p == 1 else 1 / (1 - p)
    return (np.array(keep, np.float64) * scale).astype(np.float32).reshape(out_shape)


# --------------------------------------------------------------------------- the hash
def test_hash_known_values():
    """Pinned outputs, so a change of the hash (which would desynchronise backends and change
    every saved experiment) is noticed. z for (seed 0, i 0) is SplitMix64's first output."""
    assert drop.hash64(0, 0) == 0xE220A8397B1DCDAF
    assert [round((drop.hash64(0, i) >> 40) * 2**-24, 4) for i in range(4)] == [
        0.8833, 0.4315, 0.0264, 0.9709,
    ]  # fmt: skip
    np.testing.assert_array_equal(drop.dropout_mask_ref((4,), 0.5, 0, False), [2, 0, 0, 2])


@given(shape=shapes, p=probabilities, seed=seeds, per_channel=st.booleans())
def test_reference_matches_the_python_definition(shape, p, seed, per_channel):
    if per_channel and len(shape) < 2:
        shape = shape + (2,)
    np.testing.assert_array_equal(
        drop.dropout_mask_ref(shape, p, seed, per_channel), python_mask(shape, p, seed, per_channel)
    )


@FIXTURE_OK
@given(shape=shapes, p=probabilities, seed=seeds, per_channel=st.booleans())
def test_backends_draw_the_same_mask(kernel_backend, shape, p, seed, per_channel):
    if per_channel and len(shape) < 2:
        shape = shape + (3,)
    mask = drop.dropout_mask(shape, p, seed, per_channel)
    expected = drop.dropout_mask_ref(shape, p, seed, per_channel)
    assert mask.shape == expected.shape
    np.testing.assert_array_equal(np.asarray(mask), expected)


def test_same_seed_same_output_on_numpy_and_numba():
    x = np.random.default_rng(0).normal(0, 1, (4, 8, 6, 5)).astype(np.float32)
    outputs = []
    for name in ("numpy", "numba"):
        with ms.backend.use(name):
            outputs.append(F.dropout(ms.tensor(x), 0.3, seed=1234).numpy())
            outputs.append(F.dropout2d(ms.tensor(x), 0.3, seed=1234).numpy())
    np.testing.assert_array_equal(outputs[0], outputs[2])
    np.testing.assert_array_equal(outputs[1], outputs[3])
    assert not np.array_equal(F.dropout(ms.tensor(x), 0.3, seed=1235).numpy(), outputs[0])


# --------------------------------------------------------------------------- statistics
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9])
def test_keep_fraction_and_scale(cpu_backend, p):
    n = 200_000
    x = np.linspace(0.5, 1.5, n).astype(np.float32)
    with ms.backend.use(cpu_backend):
        y = F.dropout(ms.tensor(x), p, seed=7).numpy()
    kept = y != 0
    # Binomial(n, 1-p): 5 standard deviations
    assert abs(kept.mean() - (1 - p)) < 5 * np.sqrt(p * (1 - p) / n)
    np.testing.assert_allclose(y[kept], x[kept] * np.float32(1 / (1 - p)), rtol=1e-6)
    # neighbours are not correlated: P(both kept) = (1 - p)^2
    both = (kept[1:] & kept[:-1]).mean()
    assert abs(both - (1 - p) ** 2) < 5 * np.sqrt((1 - p) ** 2 / n)


def test_different_seeds_give_independent_masks():
    a = drop.dropout_mask_numba((100_000,), 0.5, 1, False) != 0
    b = drop.dropout_mask_numba((100_000,), 0.5, 2, False) != 0
    assert abs((a == b).mean() - 0.5) < 5 * np.sqrt(0.25 / 100_000)


def test_dropout2d_zeroes_whole_planes(cpu_backend):
    p = 0.4
    x = np.random.default_rng(0).uniform(0.5, 1.5, (50, 400, 3, 2)).astype(np.float32)
    with ms.backend.use(cpu_backend):
        y = F.dropout2d(ms.tensor(x), p, seed=3).numpy()
    zero_planes = (y == 0).all(axis=(2, 3))
    kept_planes = (y != 0).all(axis=(2, 3))
    assert np.all(zero_planes | kept_planes), "a plane was partly dropped"
    np.testing.assert_allclose(y[kept_planes], x[kept_planes] / (1 - p), rtol=1e-6)
    count = zero_planes.size
    assert abs(zero_planes.mean() - p) < 5 * np.sqrt(p * (1 - p) / count)


def test_float64_scale_is_exact():
    x = ms.tensor(np.ones((1000,)), dtype=np.float64)
    y = F.dropout(x, 0.3, seed=0).numpy()
    assert y.dtype == np.float64
    assert set(np.unique(y)) == {0.0, 1 / 0.7}


# --------------------------------------------------------------------------- modes, gradient
def test_eval_and_p_zero_are_the_identity():
    x = ms.tensor(np.ones((2, 3, 4, 4)))
    assert F.dropout(x, 0.5, training=False) is x
    assert F.dropout2d(x, 0.5, training=False) is x
    assert F.dropout(x, 0.0, seed=1) is x
    layer, layer2d = nn.Dropout(0.5, seed=0).eval(), nn.Dropout2d(0.5, seed=0).eval()
    assert layer(x) is x and layer2d(x) is x
    assert int(layer.step) == 0  # no mask drawn in eval mode


def test_p_one_drops_everything():
    x = ms.tensor(np.ones((3, 4)), requires_grad=True)
    y = F.dropout(x, 1.0, seed=0)
    assert np.all(y.numpy() == 0) and np.all(np.isfinite(y.numpy()))
    y.sum().backward()
    assert np.all(x.grad == 0)


@given(shape=shapes_4d, p=st.floats(0.05, 0.95), seed=seeds, per_channel=st.booleans())
def test_gradcheck_with_a_fixed_mask(shape, p, seed, per_channel):
    x = ms.tensor(distinct(shape, seed % 1000), dtype=np.float64, requires_grad=True)
    fn = F.dropout2d if per_channel else F.dropout
    with ms.backend.use("numpy"):
        assert gradcheck(lambda x: fn(x, p, seed=seed), [x], mode="full")


def test_gradient_is_the_mask():
    x = ms.tensor(np.full((200,), 3.0), requires_grad=True)
    y = F.dropout(x, 0.25, seed=11)
    y.backward(np.ones(200, np.float32))
    np.testing.assert_array_equal(x.grad, y.numpy() / 3.0)


# --------------------------------------------------------------------------- layers
def test_layer_draws_a_new_mask_each_call_reproducibly():
    x = ms.tensor(np.ones((64, 64)))
    a, b = nn.Dropout(0.5, seed=42), nn.Dropout(0.5, seed=42)
    first, second = a(x).numpy(), a(x).numpy()
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(b(x).numpy(), first)
    np.testing.assert_array_equal(b(x).numpy(), second)
    assert int(a.step) == 2
    np.testing.assert_array_equal(first, F.dropout(x, 0.5, seed=drop.derive_seed(42, 0)).numpy())


def test_layer_state_resumes_the_mask_sequence():
    x = ms.tensor(np.ones((8, 4, 3, 3)))
    model = nn.Sequential(nn.Dropout2d(0.5, seed=5), nn.Dropout(0.3, seed=6))
    model(x)
    state = model.state_dict()
    assert {"0.seed", "0.step", "1.seed", "1.step"} <= set(state)
    expected = model(x).numpy()
    resumed = nn.Sequential(nn.Dropout2d(0.5, seed=99), nn.Dropout(0.3))  # other seeds
    resumed.load_state_dict(state)
    np.testing.assert_array_equal(resumed(x).numpy(), expected)


def test_seed_none_follows_numpy_global_seed():
    x = ms.tensor(np.ones((32, 32)))
    np.random.seed(3)
    a = nn.Dropout(0.5)(x).numpy()
    f = F.dropout(x, 0.5).numpy()
    np.random.seed(3)
    b = nn.Dropout(0.5)(x).numpy()
    g = F.dropout(x, 0.5).numpy()
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(f, g)


# --------------------------------------------------------------------------- errors
def test_errors_name_the_argument():
    x = ms.tensor(np.ones((2, 3, 4, 4)))
    for p in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"p must be a probability in \[0, 1\]"):
            F.dropout(x, p)
        with pytest.raises(ValueError, match=r"Dropout2d: dropout: p must be a probability"):
            nn.Dropout2d(p)
    with pytest.raises(TypeError, match="p must be a number"):
        F.dropout(x, "0.5")
    with pytest.raises(TypeError, match="seed must be an integer"):
        F.dropout(x, 0.5, seed=1.5)
    with pytest.raises(TypeError, match="seed must be an integer"):
        nn.Dropout(0.5, seed="x")
    with pytest.raises(ValueError, match=r"dropout2d: input must be \(N, C, H, W\).*\(3, 4\)"):
        F.dropout2d(ms.tensor(np.ones((3, 4))), 0.5)
    with pytest.raises(TypeError, match="input must be a minisegnet Tensor"):
        F.dropout(np.ones(3), 0.5)

"""minisegnet.functional as the one public entry: PyTorch's argument names (``dim``), the
deprecated ``axis`` of cat and stack, and the checks the nn layers share with it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import minisegnet as ms
import minisegnet.functional as F
import minisegnet.nn as nn
from minisegnet.gradcheck import gradcheck
from minisegnet.ops import geometry
from tests.helpers import distinct


def t64(shape, seed=0):
    return ms.tensor(distinct(shape, seed), dtype=np.float64, requires_grad=True)


def test_package_cat_and_stack_are_the_checked_entries():
    assert ms.cat is F.cat and ms.stack is F.stack
    with pytest.raises(AttributeError, match="no attribute 'catt'"):
        ms.catt  # noqa: B018


@pytest.mark.parametrize("dim", [0, 1, 2, -1, -2, -3])
def test_stack_inserts_the_new_axis_where_numpy_does(dim):
    a, b = t64((2, 3), 1), t64((2, 3), 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # dim= is the current name: no deprecation warning
        out = F.stack([a, b], dim=dim)
    np.testing.assert_array_equal(out.numpy(), np.stack([a.numpy(), b.numpy()], axis=dim))
    assert gradcheck(lambda a, b: F.stack([a, b * 2], dim=dim), [a, b])


@pytest.mark.parametrize("dim", [0, 1, -1, -2])
def test_cat_matches_numpy_along_dim(dim):
    a, b = t64((2, 3), 3), t64((2, 3), 4)
    out = F.cat([a, b], dim)
    np.testing.assert_array_equal(out.numpy(), np.concatenate([a.numpy(), b.numpy()], axis=dim))
    assert gradcheck(lambda a, b: F.cat([a, b], dim=dim) ** 2, [a, b])


def test_axis_still_works_with_a_deprecation_warning():
    a, b = t64((2, 3), 5), t64((2, 1), 6)
    with pytest.warns(DeprecationWarning, match="cat: axis= is deprecated, use dim="):
        out = ms.cat([a, b], axis=1)
    assert out.shape == (2, 4)
    with pytest.warns(DeprecationWarning, match="stack: axis= is deprecated"):
        assert ms.stack([a, a], axis=1).shape == (2, 2, 3)


def test_cat_and_stack_errors_name_the_argument():
    a = t64((2, 3), 7)
    with pytest.raises(ValueError, match=r"cat: dim must be in \[-2, 2\), got 2"):
        F.cat([a, a], dim=2)
    with pytest.raises(ValueError, match=r"stack: dim must be in \[-3, 2\], got 3"):
        F.stack([a, a], dim=3)
    with pytest.raises(TypeError, match=r"cat: tensors\[1\] must be a minisegnet Tensor"):
        F.cat([a, np.ones((2, 3))])
    with pytest.raises(TypeError, match=r"tensors\[1\] has dtype float32, tensors\[0\] has"):
        F.cat([a, ms.tensor(np.ones((2, 3), np.float32))])
    with pytest.raises(ValueError, match="stack: tensors must be a non-empty sequence"):
        F.stack([])


def test_pad_checks_its_widths_before_the_op_runs():
    x = t64((1, 2, 3), 8)
    with pytest.raises(ValueError, match=r"at most 2 per axis of a 3-d tensor, got \(1, 2, 3\)"):
        F.pad(x, (1, 2, 3))
    with pytest.raises(ValueError, match=r"a 3-d tensor, got \(1, 1, 1, 1, 1, 1, 1, 1\)"):
        F.pad(x, (1, 1) * 4)
    with pytest.raises(ValueError, match=r"negative padding \(cropping\) is not supported"):
        F.pad(x, (1, -1))


def test_layers_and_functions_share_one_check_with_their_own_name():
    with pytest.raises(ValueError, match="Upsample: mode must be 'nearest' or 'bilinear'"):
        nn.Upsample(scale_factor=2, mode="bicubic")
    with pytest.raises(ValueError, match="F: give exactly one of size and scale_factor"):
        geometry.check_resize_options("F", (2, 2), 2.0, "nearest", None)
    with pytest.raises(TypeError, match="LocalResponseNorm: size must be an integer >= 1"):
        nn.LocalResponseNorm(2.5)
    with pytest.raises(TypeError, match="local_response_norm: size must be an integer >= 1"):
        F.local_response_norm(t64((1, 2, 3), 9), 2.5)
    with pytest.raises(ValueError, match="Dropout: dropout: p must be a probability"):
        nn.Dropout(1.5)
    with pytest.raises(TypeError, match="dropout: seed must be an integer"):
        nn.Dropout(0.5, seed=1.5)


def test_tensor_reductions_take_pytorch_names_and_numpy_aliases():
    x = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    t = ms.tensor(x)
    for name in ("sum", "mean", "max"):
        expected = getattr(x, name)(axis=1, keepdims=True)
        np.testing.assert_array_equal(getattr(t, name)(dim=1, keepdim=True).numpy(), expected)
        np.testing.assert_array_equal(getattr(t, name)(1, True).numpy(), expected)
        np.testing.assert_array_equal(getattr(t, name)(axis=1, keepdims=True).numpy(), expected)
        with pytest.raises(TypeError, match=f"{name}: give dim= or axis=, not both"):
            getattr(t, name)(dim=1, axis=1)
    np.testing.assert_array_equal(t.argmax(dim=2).numpy(), x.argmax(axis=2))
    assert t.argmax(dim=2, keepdim=True).shape == (2, 3, 1)
    np.testing.assert_array_equal(t.argmax(axis=0).numpy(), x.argmax(axis=0))

"""Optimiser updates against hand computation; parameter groups; schedules."""

from __future__ import annotations

import numpy as np
import pytest

from minisegnet import nn, optim


def _param(values):
    p = nn.Parameter(np.array(values), dtype=np.float64)
    return p


def test_sgd_plain_momentum_nesterov_and_weight_decay_by_hand():
    g1, g2 = np.array([1.0, -2.0]), np.array([0.5, 0.5])
    for nesterov in (False, True):
        p = _param([1.0, 2.0])
        opt = optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=nesterov)
        w = np.array([1.0, 2.0])
        v = None
        for g in (g1, g2):
            p.grad = g.copy()
            opt.step()
            d = g + 0.01 * w
            v = d.copy() if v is None else 0.9 * v + d
            w = w - 0.1 * (d + 0.9 * v if nesterov else v)
            np.testing.assert_allclose(p.data, w, rtol=1e-12)


def test_sgd_without_momentum():
    p = _param([1.0])
    opt = optim.SGD([p], lr=0.5)
    p.grad = np.array([2.0])
    opt.step()
    np.testing.assert_allclose(p.data, [0.0])


def test_adam_by_hand():
    p = _param([1.0, -1.0])
    opt = optim.Adam([p], lr=0.01, betas=(0.9, 0.99), eps=1e-8)
    m = v = np.zeros(2)
    w = np.array([1.0, -1.0])
    for t, g in enumerate([np.array([0.1, -0.3]), np.array([0.2, 0.4])], start=1):
        p.grad = g.copy()
        opt.step()
        m = 0.9 * m + 0.1 * g
        v = 0.99 * v + 0.01 * g * g
        w = w - 0.01 * (m / (1 - 0.9**t)) / (np.sqrt(v / (1 - 0.99**t)) + 1e-8)
        np.testing.assert_allclose(p.data, w, rtol=1e-12)


def test_param_groups_have_their_own_lr_mult_and_decay():
    w, b = _param([1.0]), _param([1.0])
    opt = optim.SGD(
        [{"params": [w]}, {"params": [b], "lr_mult": 2.0, "weight_decay": 0.0}],
        lr=0.1,
        weight_decay=0.5,
    )
    w.grad, b.grad = np.array([1.0]), np.array([1.0])
    opt.step()
    np.testing.assert_allclose(w.data, [1 - 0.1 * (1 + 0.5)])
    np.testing.assert_allclose(b.data, [1 - 0.2 * 1])


def test_parameters_without_grad_are_skipped():
    p = _param([1.0])
    opt = optim.SGD([p], lr=1.0)
    opt.step()
    np.testing.assert_array_equal(p.data, [1.0])


def test_optimizer_errors_name_the_argument():
    with pytest.raises(ValueError, match="lr"):
        optim.SGD([_param([1.0])], lr=-1)
    with pytest.raises(ValueError, match="params"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="nesterov"):
        optim.SGD([_param([1.0])], lr=0.1, nesterov=True)
    p = _param([1.0])
    with pytest.raises(ValueError, match="more than one group"):
        optim.SGD([{"params": [p]}, {"params": [p]}], lr=0.1)


def test_optimizer_state_dict_round_trip_continues_identically():
    def run(split):
        p = _param([1.0, 2.0])
        opt = optim.SGD([p], lr=0.1, momentum=0.9)
        grads = [np.array([1.0, 0.5]), np.array([-0.5, 0.2]), np.array([0.3, 0.3])]
        for k, g in enumerate(grads):
            if k == split:
                state = opt.state_dict()
                q = _param(p.data.copy())
                opt = optim.SGD([q], lr=0.1, momentum=0.9)
                opt.load_state_dict(state)
                p = q
            p.grad = g
            opt.step()
        return p.data

    np.testing.assert_array_equal(run(split=None), run(split=2))


def test_poly_schedule_values():
    opt = optim.SGD([_param([1.0])], lr=0.01)
    sched = optim.PolyLR(opt, max_iter=100, power=0.9)
    assert opt.lr == pytest.approx(0.01)
    lrs = [sched.step() for _ in range(100)]
    assert lrs[49] == pytest.approx(0.01 * (1 - 50 / 100) ** 0.9)
    assert lrs[-1] == 0.0
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_step_constant_and_warmup():
    opt = optim.SGD([_param([1.0])], lr=1.0)
    sched = optim.StepLR(opt, step_size=10, gamma=0.1)
    assert [sched.factor(i) for i in (0, 9, 10, 25)] == pytest.approx([1, 1, 0.1, 0.01])
    warm = optim.ConstantLR(opt, warmup_iters=4)
    assert [warm.factor(i) for i in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1, 1, 1])
    with pytest.raises(ValueError, match="max_iter"):
        optim.PolyLR(opt, max_iter=0)


def test_group_lr_follows_schedule():
    w = _param([0.0])
    opt = optim.SGD([{"params": [w], "lr_mult": 10.0}], lr=0.01)
    sched = optim.PolyLR(opt, max_iter=10)
    sched.step()
    assert opt.group_lr(opt.param_groups[0]) == pytest.approx(10 * 0.01 * 0.9**0.9)

"""Module registration, state_dict round trips and their errors, modes, repr, a toy training run."""

from __future__ import annotations

import numpy as np
import pytest

import minisegnet as ms
import minisegnet.functional as F
from minisegnet import nn, optim


class MLP(nn.Module):
    def __init__(self, seed=0):
        super().__init__()
        self.fc1 = nn.Linear(2, 16, seed=seed)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(16, 2, seed=seed + 1)
        self.register_buffer("calls", np.zeros(1))

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def test_registration_and_names():
    m = MLP()
    names = [n for n, _ in m.named_parameters()]
    assert names == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert set(m.state_dict()) == set(names) | {"calls"}
    assert m.num_parameters() == 2 * 16 + 16 + 16 * 2 + 2
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1))
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    ml = nn.ModuleList([nn.Linear(1, 1), nn.Linear(1, 1)])
    assert len(list(ml.parameters())) == 4 and len(ml) == 2
    with pytest.raises(TypeError, match="expected a Module"):
        ml.append(3)


def test_shared_parameter_listed_once():
    m = nn.Module()
    m.a = nn.Linear(2, 2)
    m.b = m.a
    assert len(list(m.parameters())) == 2


def test_train_eval_propagates():
    m = MLP()
    m.eval()
    assert all(not x.training for x in m.modules())
    m.train()
    assert all(x.training for x in m.modules())


def test_state_dict_round_trip_gives_identical_outputs():
    a, b = MLP(seed=0), MLP(seed=5)
    x = ms.tensor(np.random.default_rng(0).normal(size=(4, 2)))
    assert not np.allclose(a(x).numpy(), b(x).numpy())
    b.load_state_dict(a.state_dict())
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


def test_load_state_dict_lists_every_mismatch_and_loads_nothing():
    m = MLP()
    before = m.fc1.weight.data.copy()
    state = m.state_dict()
    state["fc1.weight"] = np.zeros((3, 3))  # wrong shape
    del state["fc2.bias"]  # missing
    state["extra.weight"] = np.zeros(1)  # unexpected
    with pytest.raises(nn.StateDictError) as info:
        m.load_state_dict(state)
    message = str(info.value)
    assert "3 problem(s)" in message
    assert "missing: fc2.bias" in message
    assert "unexpected: extra.weight" in message
    assert "shape mismatch for fc1.weight: model has (16, 2), state has (3, 3)" in message
    np.testing.assert_array_equal(m.fc1.weight.data, before)


def test_load_state_dict_non_strict_allows_partial():
    m = MLP()
    m.load_state_dict({"fc1.bias": np.ones(16)}, strict=False)
    np.testing.assert_array_equal(m.fc1.bias.data, np.ones(16))
    with pytest.raises(nn.StateDictError, match="shape mismatch"):
        m.load_state_dict({"fc1.bias": np.ones(3)}, strict=False)


def test_zero_grad_and_repr():
    m = MLP()
    F.cross_entropy(m(ms.tensor(np.ones((2, 2)))), [0, 1]).backward()
    assert all(p.grad is not None for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    text = repr(m)
    assert "(fc1): Linear(in_features=2, out_features=16, bias=True)" in text
    assert "(act): ReLU()" in text


def test_forward_hook_sees_output_and_can_be_removed():
    m = MLP()
    seen = []
    remove = m.fc1.register_forward_hook(lambda mod, inp, out: seen.append(out.shape))
    m(ms.tensor(np.ones((3, 2))))
    remove()
    m(ms.tensor(np.ones((3, 2))))
    assert seen == [(3, 16)]


def test_linear_rejects_wrong_feature_count():
    with pytest.raises(ValueError, match="2 features"):
        nn.Linear(2, 3)(ms.tensor(np.ones((4, 5))))


def test_module_without_super_init_is_explained():
    class Broken(nn.Module):
        def __init__(self):
            self.x = 1

    with pytest.raises(RuntimeError, match="super"):
        Broken()


def test_two_layer_mlp_learns_xor_like_problem():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (256, 2)).astype(np.float32)
    y = ((x[:, 0] * x[:, 1]) > 0).astype(np.int64)  # XOR of signs: not linearly separable
    model = MLP(seed=3)
    opt = optim.SGD(model.parameters(), lr=0.5, momentum=0.9)
    losses = []
    for _ in range(150):
        loss = F.cross_entropy(model(ms.tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]
    accuracy = (model(ms.tensor(x)).numpy().argmax(1) == y).mean()
    assert accuracy > 0.9

"""Training on tiny data: the loss falls, Ctrl-C leaves a checkpoint, a resumed run ends exactly
like an uninterrupted one, a diverging run stops cleanly, bad checkpoints are refused."""

from __future__ import annotations

import json
import signal

import numpy as np
import pytest

from minisegnet import checkpoint as ckpt
from minisegnet.train import (
    ConfigError,
    TrainConfig,
    Trainer,
    TrainingDiverged,
    TrainingInterrupted,
    load_for_inference,
    param_groups,
)


def tiny(**overrides) -> TrainConfig:
    options = dict(size=32, train_images=12, val_images=6, batch_size=4, epochs=2, seed=1)
    options.update(overrides)
    return TrainConfig(**options)


def run(config, run_dir, **kwargs):
    trainer = Trainer(config, run_dir, progress=False, log=lambda *_: None, **kwargs)
    trainer.fit()
    return trainer


def without_times(history):
    return [{k: v for k, v in h.items() if not k.endswith("seconds")} for h in history]


def test_loss_falls_on_tiny_data(tmp_path):
    trainer = run(tiny(model="segnet-basic", epochs=6, lr=0.05), tmp_path / "run")
    losses = [h["train_loss"] for h in trainer.history]
    assert losses[-1] < 0.6 * losses[0], losses
    for name in (
        "checkpoint.safetensors",
        "checkpoint.json",
        "model.safetensors",
        "model.json",
        "metrics.jsonl",
        "metrics.md",
        "curves.png",
        "predictions.png",
    ):
        assert (tmp_path / "run" / name).is_file(), name
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == list(range(1, 7))
    record = json.loads(lines[-1])
    assert set(record["val"]) >= {"pixel_acc", "mean_acc", "miou", "fwiou", "iou"}


def interrupt_at(step):
    """on_step callback that presses Ctrl-C (SIGINT) after optimisation step ``step``."""
    count = {"n": 0}

    def on_step(trainer):
        count["n"] += 1
        if count["n"] == step:
            signal.raise_signal(signal.SIGINT)

    return on_step


@pytest.mark.parametrize("model, extra", [
    ("segnet", {}),
    ("pspnet", {"class_weights": "median"}),  # dropout masks, the auxiliary loss, class weights
    ("deconvnet", {"balance_init": True}),  # balanced once at the start, never again on resume
    ("segnet-basic", {"optimizer": "adam"}),  # Adam's moments and step count are saved
])  # fmt: skip
def test_interrupted_and_resumed_run_equals_uninterrupted(tmp_path, model, extra):
    config = tiny(model=model, epochs=2, **extra)  # 3 steps per epoch
    whole = run(config, tmp_path / "whole")

    with pytest.raises(TrainingInterrupted) as info:
        run(tiny(model=model, epochs=2, **extra), tmp_path / "cut", on_step=interrupt_at(4))
    assert info.value.checkpoint == tmp_path / "cut" / "checkpoint.safetensors"
    document, _, _ = ckpt.load(tmp_path / "cut")
    assert (document["epoch"], document["batch"]) == (1, 1)  # mid-epoch 2

    resumed = Trainer.from_checkpoint(tmp_path / "cut", progress=False, log=lambda *_: None)
    resumed.fit()
    a, b = whole.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert without_times(whole.history) == without_times(resumed.history)
    log = [json.loads(x) for x in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert without_times(log) == without_times(whole.history)


def test_ctrl_c_handler_is_restored(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    run(tiny(epochs=1), tmp_path / "run")
    assert signal.getsignal(signal.SIGINT) is before


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    def poison(trainer):
        if trainer.epoch == 1 and trainer.batch == 2:  # during epoch 2: break a weight
            p = next(iter(trainer.model.parameters()))
            p.data[...] = np.nan

    good = None

    def remember(trainer):
        nonlocal good
        if trainer.epoch == 1 and trainer.batch == 1 and good is None:
            good = ckpt.load(tmp_path / "run")[0]
        poison(trainer)

    with pytest.raises(TrainingDiverged) as info:
        run(tiny(epochs=3), tmp_path / "run", on_step=remember)
    message = str(info.value)
    assert "nan" in message and "epoch 2" in message and "checkpoint" in message
    assert "--lr" in message
    document, arrays, _ = ckpt.load(tmp_path / "run")
    assert document["epoch"] == 1 and document["batch"] == 0  # the end of epoch 1, untouched
    assert document == good
    assert all(np.isfinite(a).all() for a in arrays.values() if a.dtype.kind == "f")


def test_corrupt_checkpoint_is_refused(tmp_path):
    run(tiny(epochs=1), tmp_path / "run")
    path = tmp_path / "run" / "checkpoint.safetensors"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # flip bits inside a tensor
    path.write_bytes(bytes(data))
    with pytest.raises(ckpt.CheckpointError, match="corrupt"):
        ckpt.load(path)
    path.write_bytes(bytes(data[: len(data) // 2]))  # truncated
    with pytest.raises(ckpt.CheckpointError, match="corrupt|not a safetensors"):
        Trainer.from_checkpoint(tmp_path / "run", progress=False)
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        ckpt.load(tmp_path / "nowhere")


def test_checkpoint_of_another_model_lists_mismatches(tmp_path):
    run(tiny(epochs=1, model="segnet-basic"), tmp_path / "run")
    with pytest.raises(ckpt.CheckpointError) as info:
        load_for_inference(tmp_path / "run", model="segnet")
    message = str(info.value)
    assert "mismatches" in message and "missing: encoder.conv1_1.weight" in message
    assert "unexpected: conv1.weight" in message
    with pytest.raises(
        ckpt.CheckpointError, match=r"shape mismatch for conv1.weight: .*\(16, 3, 7, 7\)"
    ):
        load_for_inference(tmp_path / "run", width=0.125)


def test_resume_refuses_changed_settings(tmp_path):
    run(tiny(epochs=1), tmp_path / "run")
    with pytest.raises(ConfigError, match="--lr 0.5 differs"):
        Trainer.from_checkpoint(tmp_path / "run", progress=False, overrides={"lr": 0.5})
    more = Trainer.from_checkpoint(
        tmp_path / "run", progress=False, log=lambda *_: None, overrides={"epochs": 2}
    )
    more.fit()  # extending a finished run is allowed
    assert [h["epoch"] for h in more.history] == [1, 2]


def test_inference_loads_both_checkpoint_and_weights_files(tmp_path):
    trainer = run(tiny(epochs=1), tmp_path / "run")
    for path in (tmp_path / "run", tmp_path / "run" / "model.safetensors"):
        model, info = load_for_inference(path)
        assert info["class_names"][0] == "background" and info["palette"].shape == (5, 3)
        for name, array in trainer.model.state_dict().items():
            np.testing.assert_array_equal(model.state_dict()[name], array)


def test_param_groups_give_biases_double_lr_and_no_decay():
    from minisegnet.train import build_model

    model = build_model("segnet", 6)
    groups = {g["name"]: g for g in param_groups(model, 5e-4, 2.0)}
    assert groups["biases"]["lr_mult"] == 2.0 and groups["biases"]["weight_decay"] == 0
    assert groups["weights"]["lr_mult"] == 1.0 and groups["weights"]["weight_decay"] == 5e-4
    assert groups["norm scales"]["weight_decay"] == 0
    counted = sum(p.size for g in groups.values() for p in g["params"])
    assert counted == model.num_parameters()


def test_warmup_ramps_the_lr_then_follows_the_poly_schedule(tmp_path):
    lrs = []  # the lr set for the next step, recorded after each step
    config = tiny(epochs=2, lr=0.04, warmup_epochs=1.0)  # 12 images / batch 4: 3 steps an epoch
    run(config, tmp_path / "run", on_step=lambda t: lrs.append(t.optimizer.lr))
    steps = 6
    expected = [0.04 * (1 - i / steps) ** 0.9 * min(1.0, (i + 1) / 3) for i in range(1, steps + 1)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-12)
    assert lrs[0] < lrs[1] and lrs[2] > lrs[3]  # rising during the first epoch, then decaying


@pytest.mark.parametrize("overrides, match", [
    ({"model": "enet"}, "valid models: deconvnet, deeplab-largefov"),
    ({"backend": "tpu"}, "valid backends: numpy, numba"),
    ({"epochs": 0}, "--epochs must be a positive integer"),
    ({"lr": float("nan")}, "--lr must be a finite number"),
    ({"class_weights": "inverse"}, "--class-weights"),
    ({"warmup_epochs": -1.0}, "--warmup-epochs must be a finite number >= 0"),
    ({"optimizer": "rmsprop"}, "--optimizer must be sgd or adam, got 'rmsprop'"),
    ({"input_scale": 0.0}, r"--input-scale must be a number in \(0, 4\], got 0.0"),
    ({"input_scale": 0.5}, "--input-scale 0.5: the built-in data is generated at --size"),
    ({"train_scale": "2,1"}, "--train-scale needs 0 < LOW <= HIGH <= 8, got '2,1'"),
    ({"train_scale": "0.5"}, "--train-scale must be two numbers LOW,HIGH"),
    ({"train_scale": "a,b"}, "--train-scale must be two numbers LOW,HIGH"),
])  # fmt: skip
def test_bad_config(overrides, match):
    with pytest.raises(ConfigError, match=match):
        tiny(**overrides).check()


def test_tune_threads_sets_passive_waiting_once_and_respects_the_user(monkeypatch):
    from minisegnet.train import tune_threads

    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    assert tune_threads() == ["OMP_WAIT_POLICY=PASSIVE"]
    import os

    assert os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    assert tune_threads() == []  # already set: nothing to do
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    assert tune_threads() == [] and os.environ["OMP_WAIT_POLICY"] == "ACTIVE"


def test_balance_init_rescales_the_start_and_is_saved(tmp_path):
    """--balance-init scales the hot convolutions before the first step (the first checkpoint
    holds the balanced weights), logs what it did, and is refused for models without BN."""
    lines, saved = [], {}

    def first_checkpoint(trainer):
        if not saved:  # after step 1 the checkpoint on disk is still the one taken before it
            _, arrays, _ = ckpt.load(trainer.run_dir)
            saved.update(arrays)

    balanced = Trainer(
        tiny(model="segnet", epochs=1, balance_init=True), tmp_path / "bal", progress=False,
        log=lines.append, on_step=first_checkpoint,
    )  # fmt: skip
    start = {k: v.copy() for k, v in balanced.model.state_dict().items()}
    balanced.fit()
    assert lines[0].startswith("balanced the initial step of 26 batch-normalised convolutions")
    ratio = np.linalg.norm(saved["encoder.conv1_2.weight"]) / np.linalg.norm(
        start["encoder.conv1_2.weight"]
    )
    assert ratio > 1.5  # the first encoder layers are the hottest: scaled up
    np.testing.assert_array_equal(saved["classifier.weight"], start["classifier.weight"])
    document, _, _ = ckpt.load(tmp_path / "bal")
    assert document["config"]["balance_init"] is True
    with pytest.raises(ConfigError, match="--balance-init: fcn8s has no batch norm"):
        Trainer(tiny(model="fcn8s", balance_init=True), tmp_path / "fcn", progress=False)
    with pytest.raises(ConfigError, match="--balance-init must be true or false"):
        tiny(balance_init="yes").check()

"""The device rule (``minisegnet/arrays.py``): the active backend decides where arrays live.

These run on any machine: ``tests/fake_device.py`` stands in for CuPy with arrays that refuse
implicit conversion to NumPy and mixing with host arrays, and for the GPU launcher with one that
refuses host arrays and records every launch. Everything else is the real ``cuda`` code path.
"""

from __future__ import annotations

import numpy as np
import pytest

import minisegnet as ms
import minisegnet.functional as F
from minisegnet import backend, nn, optim
from minisegnet.arrays import DeviceError, device_of, to_device, to_host
from tests.fake_device import FakeDeviceArray, fake_cupy, simulated_gpu
from tests.test_cuda_common import EMU_REASON

pytestmark = pytest.mark.skipif(
    EMU_REASON is not None, reason=f"the stand-in GPU runs kernels in cuda-emu: {EMU_REASON}"
)


@pytest.fixture
def gpu():
    """The stand-in GPU, with the ``cuda`` backend in force; yields the launch log."""
    with simulated_gpu() as log, backend.use("cuda"):
        yield log


# ----------------------------------------------------------------------------- new data


def test_new_tensors_live_where_the_backend_says(gpu):
    host = np.arange(6, dtype=np.float32).reshape(2, 3)
    for t in (ms.tensor(host), ms.zeros(2, 3), ms.ones(2, 3), ms.randn(2, 3, seed=0)):
        assert isinstance(t.data, FakeDeviceArray) and t.device == "cuda"
    t = ms.tensor(host)
    np.testing.assert_array_equal(t.numpy(), host)  # .numpy() comes back
    assert type(t.numpy()) is np.ndarray
    with backend.use("numba"):  # a host backend: device data given to ms.tensor comes back
        assert ms.tensor(t.data).device == "cpu"


def test_the_stand_in_refuses_what_cupy_refuses(gpu):
    a = fake_cupy.asarray(np.ones(3, np.float32))
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a)
    with pytest.raises(TypeError, match="Unsupported type"):
        _ = a + np.ones(3, np.float32)


def test_to_moves_and_the_gradient_moves_back(gpu):
    with backend.use("numba"):
        x = ms.tensor(np.array([1.0, -2.0, 3.0]), requires_grad=True)
    y = x.to("cuda")
    assert y.device == "cuda" and x.device == "cpu"
    (y * y).sum().backward()
    assert type(x.grad) is np.ndarray  # the leaf is on the host: its gradient came back
    np.testing.assert_allclose(x.grad, [2.0, -4.0, 6.0])
    with pytest.raises(ValueError, match="to: expected a device .* got 'tpu'"):
        x.to("tpu")
    with pytest.raises(ValueError, match="Module.to: expected a device .* got 'gpu'"):
        nn.Conv2d(1, 1, 1).to("gpu")


# ----------------------------------------------------------------------------- ops refuse


def test_an_op_on_two_devices_names_both(gpu):
    a = ms.ones(2, 2)
    with backend.use("numba"):
        b = ms.ones(2, 2)
    with pytest.raises(DeviceError, match=r"Add: inputs are on two devices \(input 0 on cuda, "):
        a + b


def test_an_op_off_the_backend_device_says_how_to_move(gpu):
    with backend.use("numba"):
        x = ms.ones(1, 1, 4, 4)
    with pytest.raises(DeviceError, match=r"computes on cuda.*\.to\('cuda'\)"):
        F.relu(x)
    y = ms.ones(1, 1, 4, 4)
    with backend.use("numba"), pytest.raises(DeviceError, match=r"computes on cpu.*\.to\('cpu'\)"):
        F.relu(y)


def test_launch_refuses_host_arrays_under_cuda_and_device_arrays_elsewhere(gpu):
    from minisegnet.cuda import elementwise

    with pytest.raises(DeviceError, match="'x'.*host memory.*launches on the GPU.*to\\('cuda'\\)"):
        elementwise.relu_forward(np.ones((2, 3), np.float32))
    assert len(gpu) == 0  # refused before anything ran
    device = fake_cupy.asarray(np.ones((2, 3), np.float32))
    assert isinstance(elementwise.relu_forward(device), FakeDeviceArray)
    with backend.use("cuda-emu"):
        with pytest.raises(DeviceError, match="GPU array.*'cuda-emu' runs kernels on the CPU"):
            elementwise.relu_forward(device)


def test_targets_indices_and_weights_of_either_kind_are_moved(gpu):
    logits = ms.randn(2, 3, 4, 4, seed=1)
    target = np.random.default_rng(0).integers(0, 3, (2, 4, 4))
    expected = None
    for given in (target, fake_cupy.asarray(target), target.tolist(), ms.tensor(target)):
        value = F.cross_entropy(logits, given, weight=[1.0, 2.0, 0.5]).item()
        expected = value if expected is None else expected
        assert value == pytest.approx(expected, rel=1e-6)
    with backend.use("numba"):
        host_target = ms.tensor(target)
    with pytest.raises(DeviceError, match="cross_entropy: target is a tensor on cpu"):
        F.cross_entropy(logits, host_target)

    x = ms.randn(1, 2, 4, 4, seed=2)
    y, idx = F.max_pool2d(x, 2, return_indices=True)
    idx.data = idx.data.get()  # switches handed over in host memory
    out = F.max_unpool2d(y, idx, 2)
    assert out.device == "cuda"


# ----------------------------------------------------------------------------- modules


def test_model_to_moves_parameters_and_buffers_and_the_optimiser_follows(gpu):
    with backend.use("numba"):
        model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU())
        opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        x = ms.randn(2, 3, 6, 6, seed=0)
        model(x).sum().backward()
        opt.step()  # momentum buffers now exist, on the host
    model.to("cuda")
    assert all(p.device == "cuda" for p in model.parameters())
    assert all(isinstance(b, FakeDeviceArray) for _, b in model.named_buffers())
    model(ms.randn(2, 3, 6, 6, seed=0)).sum().backward()
    opt.step()  # the state follows its parameters to the device
    assert all(isinstance(v, FakeDeviceArray) for s in opt.state.values() for v in s.values())
    state = model.state_dict()  # saving works from the device: host arrays
    assert all(type(v) is np.ndarray for v in state.values())
    opt.to("cpu")
    assert all(type(v) is np.ndarray for s in opt.state.values() for v in s.values())


def test_weights_saved_from_the_device_load_on_the_host(gpu, tmp_path):
    from minisegnet import io

    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
    assert all(p.device == "cuda" for p in model.parameters())  # built under cuda: on the GPU
    io.save(model, tmp_path / "model")
    with backend.use("numba"):
        host = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
        io.load(host, tmp_path / "model")
    for (name, a), (_, b) in zip(model.state_dict().items(), host.state_dict().items()):
        np.testing.assert_array_equal(a, b, err_msg=name)


def test_running_statistics_on_another_device_are_an_error(gpu):
    x = ms.randn(2, 3, 4, 4, seed=0)
    with pytest.raises(DeviceError, match="running_mean is on cpu and the input on cuda"):
        F.batch_norm(x, np.zeros(3, np.float32), np.ones(3, np.float32), training=True)


def test_to_device_and_to_host_helpers():
    a = np.arange(3)
    assert to_host(a) is not None and device_of(a) == "cpu"
    assert to_device(a, "cpu") is not None
    with pytest.raises(ValueError, match="device"):
        to_device(a, "gpu")
    if backend.get("cuda").unavailable_reason() is not None:
        with pytest.raises(backend.BackendUnavailable, match="to\\('cuda'\\)"):
            to_device(a, "cuda")


# ----------------------------------------------------------------------------- the job


@pytest.mark.parametrize(
    "name", ["fcn32s", "fcn16s", "fcn8s", "deconvnet", "segnet", "segnet_basic", "pspnet"]
)
def test_every_network_trains_evaluates_and_predicts_on_the_device(name, tmp_path):
    from minisegnet import train

    with simulated_gpu() as log:
        config = train.TrainConfig(
            model=name, backend="cuda", epochs=1, size=40, batch_size=2,
            train_images=2, val_images=2, preview_images=1,
        )  # fmt: skip
        trainer = train.Trainer(config, tmp_path / "run", progress=False, log=lambda *a: None)
        record = trainer.fit()
        assert np.isfinite(record["val"]["miou"])
        assert all(p.device == "cuda" for p in trainer.model.parameters())
        assert len(log) > 0  # every launch was checked by the stand-in launcher
        assert (tmp_path / "run" / "predictions.png").exists()  # written from the device


def test_checkpoints_resume_on_either_backend(tmp_path):
    """One epoch on (stand-in) cuda then one on numba, and the other way round, match the same
    two epochs on numba within float32 noise."""
    from minisegnet import train

    def config(backend_name, epochs):
        return train.TrainConfig(
            model="segnet_basic", backend=backend_name, epochs=epochs, size=32, batch_size=2,
            train_images=4, val_images=2, preview_images=1,
        )  # fmt: skip

    quiet = {"progress": False, "log": lambda *a: None}
    # The reference takes the same path on one backend (a run planned for one epoch and then
    # extended: its lr schedule is the stretched one).
    train.Trainer(config("numba", 1), tmp_path / "ref", **quiet).fit()
    reference = train.Trainer.from_checkpoint(
        tmp_path / "ref", overrides={"epochs": 2}, **quiet
    ).fit()
    with simulated_gpu():
        first = train.Trainer(config("cuda", 1), tmp_path / "a", **quiet)
        first.fit()
        b = train.Trainer(config("numba", 1), tmp_path / "b", **quiet)
        b.fit()
        resumed_on_cuda = train.Trainer.from_checkpoint(
            tmp_path / "b", overrides={"epochs": 2, "backend": "cuda"}, **quiet
        ).fit()
    resumed_on_numba = train.Trainer.from_checkpoint(
        tmp_path / "a", overrides={"epochs": 2, "backend": "numba"}, **quiet
    ).fit()
    for record in (resumed_on_numba, resumed_on_cuda):
        assert record["epoch"] == 2
        assert record["train_loss"] == pytest.approx(reference["train_loss"], rel=1e-3)
        assert record["val"]["pixel_acc"] == pytest.approx(reference["val"]["pixel_acc"], abs=0.02)


def test_cli_commands_take_the_cuda_backend(tmp_path, capsys):
    from minisegnet import cli, train
    from minisegnet.data import write_image

    with simulated_gpu() as log:
        config = train.TrainConfig(
            model="segnet_basic", backend="cuda", epochs=1, size=32, batch_size=2,
            train_images=2, val_images=2, preview_images=1,
        )  # fmt: skip
        train.Trainer(config, tmp_path / "run", progress=False, log=lambda *a: None).fit()
        run = str(tmp_path / "run")
        image = tmp_path / "frame.png"
        write_image(image, np.random.default_rng(0).integers(0, 255, (32, 40, 3), np.uint8))
        for command in (
            [
                "predict",
                "--checkpoint",
                run,
                str(image),
                "--out",
                str(tmp_path / "p"),
                "--backend",
                "cuda",
            ],
            ["evaluate", "--checkpoint", run, "--backend", "cuda", "--out", str(tmp_path / "e")],
            ["summary", "--model", "segnet-basic", "--size", "32", "--backend", "cuda"],
        ):
            before = len(log)
            assert cli.main(command) == 0
            assert len(log) > before, command
    assert "backend cuda" in capsys.readouterr().out

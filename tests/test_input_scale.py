"""A network trained on frames scaled by s (``--input-scale``) is scored at full resolution:
frames resized by s before the network, its class scores resized back to the frame."""

from __future__ import annotations

import json

import numpy as np
import pytest

import minisegnet as ms
from minisegnet import functional as F
from minisegnet import models
from minisegnet.cli import main
from minisegnet.data import CamVid
from minisegnet.data.splits import training_loaders, training_scale
from minisegnet.evaluation import evaluate_dataset
from minisegnet.inference import full_frame_scores, predict_full
from minisegnet.train_config import TrainConfig
from tests.camvid_fixture import OracleNet, camvid_train_args, make_camvid


def _bilinear(x, size):
    with ms.no_grad():
        return F.interpolate(ms.Tensor.from_array(x), size=size, mode="bilinear").data


def test_scores_are_the_network_on_the_resized_frame_resized_back():
    net = models.build("segnet_basic", 11, preset="small", seed=0)
    net.eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 30, 44)).astype(np.float32)
    got = full_frame_scores(net, x, 0.5)
    with ms.no_grad():
        small = net(ms.Tensor.from_array(_bilinear(x, (15, 22)))).data
    want = _bilinear(np.ascontiguousarray(small), (30, 44))
    assert got.shape == (2, 11, 30, 44)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(predict_full(net, x, 0.5), want.argmax(1))
    # scale 1: the plain full-frame prediction
    np.testing.assert_array_equal(predict_full(net, x, 1.0), predict_full(net, x))


def test_scaled_evaluation_scores_every_full_resolution_pixel(tmp_path):
    make_camvid(tmp_path, h=24, w=32)  # labels in 4x4 blocks: they survive a 0.5 round trip
    ds = CamVid(tmp_path, "test")
    net = OracleNet(input_multiple=8)
    result = evaluate_dataset(net, ds, input_scale=0.5)
    assert {s[2:] for s in net.seen} == {(16, 16)}  # 12x16 seen by the network, padded to 8s
    labelled = sum(int((ds[i][1] != 255).sum()) for i in range(len(ds)))
    assert result["confusion"].sum() == labelled and result["frame_size"] == (24, 32)
    # Only pixels on block edges can change class through the coarse grid.
    assert result["pixel_acc"] > 0.7


def test_training_crops_are_drawn_around_the_input_scale():
    config = TrainConfig(data="camvid:x", input_scale=0.5, train_scale=(0.75, 1.25))
    assert training_scale(config) == (0.375, 0.625)
    assert training_scale(TrainConfig()) == (0.5, 2.0)  # the papers' range at full size


def test_train_records_the_scale_and_evaluate_and_predict_use_it(tmp_path, capsys):
    root = make_camvid(tmp_path / "c", h=48, w=64)
    run = tmp_path / "run"
    args = camvid_train_args(root) + ["--input-scale", "0.5", "--train-scale", "0.8,1.2"]
    assert main([*args, "--optimizer", "adam", "--lr", "0.01", "--out", str(run)]) == 0
    config = json.loads((run / "checkpoint.json").read_text())["config"]
    assert config["input_scale"] == 0.5 and config["train_scale"] == [0.8, 1.2]
    assert config["optimizer"] == "adam"
    resume = [*args, "--optimizer", "adam", "--lr", "0.01", "--resume", str(run)]
    assert main(resume) == 0  # the same options again: "LOW,HIGH" equals the saved pair
    assert main([*resume[:-2], "--train-scale", "0.5,2", "--resume", str(run)]) == 2
    assert "--train-scale (0.5, 2.0) differs" in capsys.readouterr().err
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(run), "--split", "test"]) == 0
    out = capsys.readouterr().out
    assert "64x48, full resolution, the network at 0.5x and its scores resized back" in out
    saved = json.loads((run / "eval-camvid-test.json").read_text())
    assert saved["frame_size"] == [48, 64]
    assert (
        main(["evaluate", "--checkpoint", str(run), "--split", "test", "--input-scale", "1"]) == 0
    )
    assert "0.5x" not in capsys.readouterr().out
    image = root / "test" / "0001TP_test_0000.png"
    assert (
        main(["predict", str(image), "--checkpoint", str(run), "--out", str(tmp_path / "p")]) == 0
    )
    from PIL import Image

    assert Image.open(tmp_path / "p" / "0001TP_test_0000_mask.png").size == (64, 48)


def test_loader_crops_at_the_scaled_resolution(tmp_path):
    root = make_camvid(tmp_path / "c", h=48, w=64)
    config = TrainConfig(data=f"camvid:{root}", size=16, batch_size=2, input_scale=0.5).check()
    _, _, loader, _ = training_loaders(config)
    assert "ScaledCrop((16, 16), 0.25, 1.0)" in repr(loader.transform)


@pytest.mark.parametrize("argv, fragment", [
    (["--input-scale", "5"], "--input-scale must be a number in (0, 4], got 5.0"),
    (["--train-scale", "1,0.5"], "--train-scale needs 0 < LOW <= HIGH <= 8, got '1,0.5'"),
    (["--optimizer", "lbfgs"], "--optimizer: invalid choice: 'lbfgs'"),
])  # fmt: skip
def test_bad_options_are_one_line(tmp_path, capsys, argv, fragment):
    root = make_camvid(tmp_path / "c")
    code = main([*camvid_train_args(root), *argv, "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    assert fragment in err, err

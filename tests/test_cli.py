"""The command line end to end on tiny settings, and every user mistake as one line, exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from minisegnet.cli import main
from tests.test_data_folders import _save_palette_png, make_voc

TINY = ["--size", "32", "--train-images", "8", "--val-images", "4", "--batch-size", "4",
        "--no-progress"]  # fmt: skip


def one_line_error(capsys, code, *fragments):
    captured = capsys.readouterr()
    assert code == 2, captured
    # one error line; a warning line ("minisegnet: warning: ...") may come before it
    lines = [line for line in captured.err.splitlines() if line.strip() and "warning:" not in line]
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("minisegnet: error: ")
    assert "Traceback" not in captured.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny training run shared by the evaluate/predict tests."""
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--epochs", "1", "--weight-decay", "2e-4", "--out", str(out), *TINY]) == 0
    return out


def test_train_writes_a_run(trained, capsys):
    for name in (
        "checkpoint.safetensors",
        "model.safetensors",
        "metrics.jsonl",
        "metrics.md",
        "curves.png",
        "predictions.png",
    ):
        assert (trained / name).is_file()
    # the options reach the run's configuration (and so the checkpoint a resume compares with)
    config = json.loads((trained / "checkpoint.json").read_text())["config"]
    assert config["weight_decay"] == 2e-4 and config["epochs"] == 1


def test_train_default_out_is_under_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--epochs", "1", "--model", "segnet-basic", *TINY]) == 0
    assert (tmp_path / "runs" / "segnet-basic-builtin" / "model.safetensors").is_file()
    assert main(["train", "--epochs", "1", "--model", "segnet-basic", *TINY]) == 0
    assert (tmp_path / "runs" / "segnet-basic-builtin-2" / "model.safetensors").is_file()
    out = capsys.readouterr().out
    assert "results go to runs/segnet-basic-builtin-2/" in out
    # --resume without a folder continues the newest run (already finished: nothing to do)
    assert main(["train", "--resume", "--epochs", "2"]) == 0
    log = (tmp_path / "runs" / "segnet-basic-builtin-2" / "metrics.jsonl").read_text()
    assert len(log.splitlines()) == 2


def test_evaluate_prints_and_saves_the_table(trained, capsys):
    assert main(["evaluate", "--checkpoint", str(trained)]) == 0
    out = capsys.readouterr().out
    assert "| mean IoU |" in out and "| background |" in out
    saved = json.loads((trained / "eval-builtin-val.json").read_text())
    assert set(saved) >= {"pixel_acc", "mean_acc", "miou", "fwiou", "iou", "confusion"}
    assert (trained / "eval-builtin-val.md").read_text().count("|") > 20


def test_predict_writes_masks_and_overlays(trained, tmp_path, capsys):
    from PIL import Image

    from minisegnet.data import SyntheticShapes, write_image

    image, _ = SyntheticShapes("test", size=40, length=1)[0]
    write_image(tmp_path / "shapes.png", image)
    out = tmp_path / "pred"
    code = main(
        [
            "predict",
            "--checkpoint",
            str(trained / "model.safetensors"),
            str(tmp_path / "shapes.png"),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    mask = Image.open(out / "shapes_mask.png")
    assert mask.mode == "P" and mask.size == (40, 40)
    assert np.array(mask).max() < 5
    overlay = Image.open(out / "shapes_overlay.png")  # the legend strip below the picture
    assert overlay.mode == "RGB" and overlay.size[0] == 40 and overlay.size[1] > 40
    assert mask.info["classes"].startswith("0=background, 1=")
    assert Image.open(out / "shapes_figure.png").mode in ("RGB", "RGBA")


def test_summary(capsys):
    assert main(["summary", "--model", "segnet-basic", "--size", "32"]) == 0
    out = capsys.readouterr().out
    assert "parameters" in out


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "summary", "backends"])
def test_help_for_every_command(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: minisegnet " + command in out
    # Options default to None ("not given"); the help states the real defaults in words.
    assert "(default: None)" not in out


def test_module_entry_point_runs():
    result = subprocess.run(
        [sys.executable, "-m", "minisegnet", "--help"], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0 and "train" in result.stdout and "predict" in result.stdout


# --------------------------------------------------------------------------- user mistakes


def test_unknown_model(capsys):
    code = main(["train", "--model", "enet", *TINY])
    one_line_error(capsys, code, "unknown model 'enet'", "fcn8s", "segnet-basic", "pspnet")


def test_unknown_backend(capsys):
    code = main(["train", "--backend", "tpu", *TINY])
    one_line_error(capsys, code, "unknown backend 'tpu'", "numpy", "numba", "cuda-emu")


def test_missing_dataset_path(tmp_path, capsys):
    code = main(["train", "--data", f"camvid:{tmp_path / 'nope'}", *TINY])
    one_line_error(capsys, code, "does not exist", str(tmp_path / "nope"))


def test_missing_layout_part(tmp_path, capsys):
    import shutil

    voc = make_voc(tmp_path)
    shutil.rmtree(voc / "SegmentationClass")
    code = main(["train", "--data", f"voc:{tmp_path}", *TINY])
    one_line_error(capsys, code, "missing label folder", "SegmentationClass")


@pytest.mark.parametrize(
    "name, labels, words",
    [
        ("2007_000002.png", np.full((30, 40), 77), "[77]"),  # a value no class has
        ("2007_000000.png", np.zeros((31, 40)), "40x31"),  # another size than its image
    ],
    ids=["bad-label-value", "size-mismatch"],
)
def test_a_bad_label_file_is_named_during_training(tmp_path, capsys, name, labels, words):
    voc = make_voc(tmp_path)
    bad = voc / "SegmentationClass" / name
    _save_palette_png(bad, labels)
    one_epoch = ["--epochs", "1", "--out", str(tmp_path / "run")]
    code = main(["train", "--data", f"voc:{tmp_path}", *one_epoch, *TINY])
    one_line_error(capsys, code, str(bad), words)


def test_size_mismatch_during_evaluation(tmp_path, trained, capsys):
    voc = make_voc(tmp_path)
    bad = voc / "SegmentationClass" / "2007_000003.png"
    _save_palette_png(bad, np.zeros((31, 40)))
    code = main(["evaluate", "--checkpoint", str(trained), "--data", f"voc:{tmp_path}"])
    # the trained model has 5 classes, VOC 21: that is reported first
    one_line_error(capsys, code, "21 classes", "predicts 5")


def test_corrupt_checkpoint(trained, tmp_path, capsys):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(trained, copy)
    path = copy / "checkpoint.safetensors"
    path.write_bytes(path.read_bytes()[:1000])
    code = main(["evaluate", "--checkpoint", str(copy)])
    one_line_error(capsys, code, str(path), "corrupt")


def test_checkpoint_of_another_model(trained, capsys):
    # the run is the default model, SegNet-Basic
    code = main(["evaluate", "--checkpoint", str(trained), "--model", "segnet"])
    line = one_line_error(capsys, code, "does not fit the SegNet model", "missing: encoder.")
    assert "unexpected: conv1.weight" in line
    code = main(["evaluate", "--checkpoint", str(trained), "--width", "0.5"])
    one_line_error(capsys, code, "shape mismatch for conv1.weight", "(32, 3, 7, 7)")


def test_out_holding_a_run_is_not_overwritten(trained, capsys):
    before = (trained / "checkpoint.safetensors").read_bytes()
    code = main(["train", "--out", str(trained), *TINY])
    one_line_error(capsys, code, "already holds a training run", "--resume")
    assert (trained / "checkpoint.safetensors").read_bytes() == before


def test_resume_with_changed_settings(trained, capsys):
    code = main(["train", "--resume", str(trained), "--lr", "0.3"])
    one_line_error(capsys, code, "--lr 0.3 differs")


def test_missing_image_for_predict(trained, tmp_path, capsys):
    code = main(["predict", "--checkpoint", str(trained), str(tmp_path / "none.png")])
    one_line_error(capsys, code, "none.png")


def test_unknown_model_for_summary(capsys):
    one_line_error(capsys, main(["summary", "--model", "vgg"]), "unknown model 'vgg'")


def test_balance_init_without_batch_norm_is_one_line(tmp_path, capsys):
    code = main(["train", "--model", "fcn8s", "--balance-init", "--out", str(tmp_path), *TINY])
    one_line_error(capsys, code, "--balance-init: fcn8s has no batch norm")


def test_bad_numbers_are_argparse_errors(capsys):
    # argparse refuses them; main() reports its message as the one error line (after the usage)
    code = main(["train", "--epochs", "-1"])
    one_line_usage_error(capsys, code, "--epochs: expected a positive integer")
    code = main(["train", "--warmup-epochs", "-0.5"])
    one_line_usage_error(capsys, code, "--warmup-epochs: expected a finite number >= 0, got -0.5")
    code = main(["train", "--weight-decay", "nan"])
    one_line_usage_error(capsys, code, "--weight-decay: expected a finite number >= 0, got nan")


def one_line_usage_error(capsys, code, fragment):
    captured = capsys.readouterr()
    assert code == 2 and "Traceback" not in captured.err
    assert captured.err.startswith("usage: minisegnet train")
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("minisegnet: error: argument ")
    assert fragment in errors[0], errors[0]


@pytest.mark.parametrize("model", ["deeplab-v2-vgg", "unet"])
def test_train_and_summary_take_the_atrous_and_unet_networks(model, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--model", model, "--out", str(out), *TINY]) == 0
    assert (out / "model.safetensors").exists()
    assert main(["summary", "--model", model, "--size", "32"]) == 0
    assert "parameters:" in capsys.readouterr().out

"""Every command-line mistake ends as one line, ``minisegnet: error: ...``, exit code 2, and no
traceback (issue 18); a finished run's outputs are repaired by --resume; Ctrl-C exits with 130.

The table runs ``minisegnet.cli.main`` in-process: every case fails before any training, so
the whole table takes seconds (one tiny training run is shared by all of them).
"""

from __future__ import annotations

import contextlib
import io as stdio
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minisegnet.cli import main

TINY = ["--size", "32", "--train-images", "8", "--val-images", "4", "--no-progress"]


def run_cli(argv) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``main(argv)``; a SystemExit counts as its code."""
    out, err = stdio.StringIO(), stdio.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exit_:
            code = exit_.code
    return code, out.getvalue(), err.getvalue()


def png_claiming(path: Path, width: int, height: int) -> Path:
    """A valid 1x1 PNG whose header is rewritten to claim ``width`` x ``height``."""
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", width, height)  # IHDR: after signature, length, type
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One tiny trained run and the broken files the table feeds to the commands."""
    root = tmp_path_factory.mktemp("cli-errors")
    run = root / "run"
    # --batch-size 16 on 8 images: the run works and warns (checked in its own test below)
    code, out, err = run_cli(["train", "--epochs", "1", "--batch-size", "16", "--out", run, *TINY])
    assert code == 0, err
    f = {"root": root, "run": run, "train_stderr": err, "train_stdout": out}
    f["file"] = root / "afile.txt"
    f["file"].write_text("not a folder\n")
    f["ok"] = root / "ok.png"
    Image.fromarray(np.full((40, 40, 3), 100, np.uint8)).save(f["ok"])
    f["small"] = root / "small.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(f["small"])
    f["thin"] = root / "thin.png"
    Image.fromarray(np.zeros((5, 60, 3), np.uint8)).save(f["thin"])
    f["bomb"] = png_claiming(root / "bomb.png", 20000, 20000)
    f["notimage"] = root / "notimage.png"
    f["notimage"].write_text("hello")
    f["float_out_of_range"] = root / "float.tiff"
    Image.fromarray(np.full((40, 40), 3.5, np.float32)).save(f["float_out_of_range"])
    f["int32"] = root / "int32.tiff"
    Image.fromarray(np.full((40, 40), 70000, np.int32)).save(f["int32"])
    f["folder"] = root / "a-folder.png"
    f["folder"].mkdir()
    f["empty_dir"] = root / "empty"
    f["empty_dir"].mkdir()
    f["corrupt"] = root / "corrupt"
    shutil.copytree(run, f["corrupt"])
    weights = f["corrupt"] / "checkpoint.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    f["garbage_weights"] = root / "garbage.safetensors"
    f["garbage_weights"].write_bytes(b"\x00" * 64)
    f["md_folder"] = root / "stem"
    (root / "stem.md").mkdir()

    def model_json_variant(name, change):
        folder = root / name
        folder.mkdir()
        for part in ("model.safetensors", "model.json"):
            shutil.copy(run / part, folder / part)
        document = json.loads((folder / "model.json").read_text())
        change(document)
        (folder / "model.json").write_text(json.dumps(document))
        return folder

    f["model_str"] = model_json_variant("model-str", lambda d: d.update(model="segnet"))
    f["model_noname"] = model_json_variant("model-noname", lambda d: d["model"].pop("name"))
    f["model_classes0"] = model_json_variant(
        "model-classes0", lambda d: d["model"].update(num_classes=0)
    )
    f["model_unknown"] = model_json_variant(
        "model-unknown", lambda d: d["model"].update(name="enet")
    )
    f["model_none"] = model_json_variant("model-none", lambda d: d.update(model=None))
    f["model_format"] = model_json_variant("model-format", lambda d: d.update(format="other"))
    return f


# One mistake per line: id | command line | fragments the error line must hold (each after a
# "|"). {name} is a file made by the fixture above, {tiny} stands for TINY's options; a line
# starting with "#" is a comment.
TABLE = """
# ---- refused by argparse (usage, then the one error line)
no-command              | | a COMMAND is required
unknown-command         | frobnicate | invalid choice: 'frobnicate'
epochs-negative         | train --epochs -1 | --epochs | positive integer | -1
epochs-zero             | train --epochs 0 | --epochs | positive integer
epochs-text             | train --epochs abc | --epochs | 'abc'
epochs-float            | train --epochs 1.5 | --epochs | '1.5'
batch-zero              | train --batch-size 0 | --batch-size
lr-zero                 | train --lr 0 | --lr | positive number
lr-negative             | train --lr -0.1 | --lr
lr-nan                  | train --lr nan | --lr | nan
lr-inf                  | train --lr inf | --lr | inf
warmup-negative         | train --warmup-epochs -0.5 | --warmup-epochs | -0.5
weight-decay-nan        | train --weight-decay nan | --weight-decay | nan
size-zero               | train --size 0 | --size
width-zero              | train --width 0 | --width
width-text              | train --width wide | --width | 'wide'
class-weights           | train --class-weights inverse | --class-weights | 'inverse'
seed-negative           | train --seed -3 | --seed | non-negative
train-images-zero       | train --train-images 0 | --train-images
val-images-text         | train --val-images x | --val-images
unknown-option          | train --bogus-option | unrecognized arguments: --bogus-option
extra-positional        | train stray | unrecognized arguments: stray
evaluate-no-checkpoint  | evaluate | --checkpoint | required
predict-no-image        | predict --checkpoint {run} | IMAGE | required
summary-no-model        | summary | --model | required
summary-classes-zero    | summary --model segnet --num-classes 0 | --num-classes
summary-size-negative   | summary --model segnet --size -2 | --size
summary-width-nan       | summary --model segnet --width nan | --width
evaluate-batch-zero     | evaluate --checkpoint {run} --batch-size 0 | --batch-size
predict-size-zero       | predict --checkpoint {run} {ok} --size 0 | --size
backends-extra          | backends --all | unrecognized arguments: --all
# ---- train: options that cannot work
train-unknown-model     | train --model enet {tiny} | --model | 'enet'
train-unknown-backend   | train --backend tpu {tiny} | --backend | 'tpu'
train-bad-data-kind     | train --data nope:xyz {tiny} | nope
train-missing-data      | train --data camvid:{root}/no-such {tiny} | does not exist | no-such
train-warmup-too-long   | train --epochs 2 --warmup-epochs 3 {tiny} | --warmup-epochs 3 | --epochs 2
train-size-below-16     | train --size 8 --train-images 8 | --size | 16
train-balance-init-fcn  | train --model fcn8s --balance-init {tiny} | --balance-init
train-out-is-file       | train --out {file} {tiny} | --out | is a file
train-out-under-file    | train --out {file}/run {tiny} | --out | is a file
train-out-unwritable    | train --out /proc/minisegnet-run/x {tiny} | --out | cannot write
train-out-holds-run     | train --out {run} {tiny} | already holds | --resume
train-resume-missing    | train --resume {root}/no-run | does not exist
train-resume-empty      | train --resume {empty_dir} | checkpoint.safetensors
train-resume-corrupt    | train --resume {corrupt} | corrupt
train-resume-changed-lr | train --resume {run} --lr 0.3 | --lr 0.3
train-resume-other-out  | train --resume {run} --out {empty_dir} | name different runs
train-resume-backend    | train --resume {run} --backend tpu | 'tpu'
train-segnet-size-16    | train --model segnet --size 16 --epochs 1 --train-images 2 --val-images 2 --out {root}/segnet16 --no-progress | --size 16 | segnet | 17x17
# ---- evaluate
evaluate-missing        | evaluate --checkpoint {root}/none | does not exist
evaluate-corrupt        | evaluate --checkpoint {corrupt} | corrupt
evaluate-garbage        | evaluate --checkpoint {garbage_weights} | garbage
evaluate-backend        | evaluate --checkpoint {run} --backend tpu | --backend | 'tpu'
evaluate-split          | evaluate --checkpoint {run} --split bogus | --split | 'bogus'
evaluate-size-7         | evaluate --checkpoint {run} --size 7 | --size | 7
evaluate-size-12        | evaluate --checkpoint {run} --size 12 | --size | 12
evaluate-out-under-file | evaluate --checkpoint {run} --out {file}/x | --out | is a file
evaluate-out-md-folder  | evaluate --checkpoint {run} --out {md_folder} | --out | is a folder
evaluate-model-unknown  | evaluate --checkpoint {run} --model enet | --model | 'enet'
evaluate-model-misfit   | evaluate --checkpoint {run} --model segnet | does not fit the SegNet model
evaluate-width-misfit   | evaluate --checkpoint {run} --width 0.5 | shape mismatch
evaluate-missing-data   | evaluate --checkpoint {run} --data voc:{root}/no | does not exist
evaluate-model-str      | evaluate --checkpoint {model_str} | "model" | str
evaluate-model-noname   | evaluate --checkpoint {model_noname} | "name"
evaluate-model-none     | evaluate --checkpoint {model_none} | no model config
evaluate-model-format   | evaluate --checkpoint {model_format} | not a minisegnet weights config
# ---- predict
predict-missing-image   | predict --checkpoint {run} {root}/none.png | none.png
predict-folder-image    | predict --checkpoint {run} {folder} | a-folder.png
predict-small-image     | predict --checkpoint {run} {small} --out {root}/p | small.png | 8x8 | 9x9 | --size 9
predict-thin-image      | predict --checkpoint {run} {thin} --out {root}/p | thin.png | 60x5
predict-size-8          | predict --checkpoint {run} {ok} --size 8 --out {root}/p | --size 8 | 9x9
predict-bomb            | predict --checkpoint {run} {bomb} --out {root}/p | bomb.png | 20000x20000 | MAX_IMAGE_PIXELS
predict-not-an-image    | predict --checkpoint {run} {notimage} --out {root}/p | notimage.png | cannot be read as an image
predict-float-range     | predict --checkpoint {run} {float_out_of_range} --out {root}/p | float.tiff | [0, 1]
predict-int32           | predict --checkpoint {run} {int32} --out {root}/p | int32.tiff | 70000
predict-backend         | predict --checkpoint {run} {ok} --backend tpu | --backend | 'tpu'
predict-out-is-file     | predict --checkpoint {run} {ok} --out {file} | --out | is a file
predict-out-under-file  | predict --checkpoint {run} {ok} --out {file}/sub | --out | is a file
predict-out-unwritable  | predict --checkpoint {run} {ok} --out /proc/minisegnet-out | --out | cannot write
predict-model-str       | predict --checkpoint {model_str} {ok} | "model"
predict-model-noname    | predict --checkpoint {model_noname} {ok} | "name"
predict-model-classes0  | predict --checkpoint {model_classes0} {ok} | "num_classes"
predict-model-unknown   | predict --checkpoint {model_unknown} {ok} | unknown model 'enet'
predict-model-option    | predict --checkpoint {run} {ok} --model vgg | --model | 'vgg'
predict-size-huge       | predict --checkpoint {run} {ok} --size 100000 --out {root}/p | --size 100000 | ok.png | 100000x100000 | MAX_IMAGE_PIXELS
evaluate-size-huge      | evaluate --checkpoint {run} --size 9000 | --size 9000 | 9000x9000
summary-size-huge       | summary --model fcn8s --size 9000 | --size 9000
# ---- summary
summary-unknown-model   | summary --model vgg | --model | 'vgg'
summary-size-3          | summary --model segnet-basic --size 3 | --size 3 | 9x9
summary-segnet-16       | summary --model segnet --size 16 | --size 16 | 17x17
# ---- train sizes over the limits (refused before any data is generated)
train-size-huge         | train --size 10000 --out {root}/t | --size 10000
train-builtin-too-big   | train --size 4000 --out {root}/t | --size 4000 | GiB | --train-images
# ---- bench parses its own options (benchmarks/run.py) through the same boundary
bench-unknown-option    | bench --bogus | unrecognized arguments: --bogus
bench-unknown-backend   | bench --backends tpu | --backends | 'tpu'
"""


def parse_table(text: str) -> list[tuple[str, str, list[str]]]:
    """(id, command line, fragments) for each line of ``text`` that is not blank or a comment."""
    rows = [[cell.strip() for cell in line.split("|")] for line in text.splitlines()]
    return [(r[0], r[1], r[2:]) for r in rows if r[0] and not r[0].startswith("#")]


CASES = parse_table(TABLE)


def test_the_table_is_large_enough():
    assert len(CASES) >= 60
    assert len({case[0] for case in CASES}) == len(CASES)


@pytest.mark.parametrize("argv,fragments", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_mistake_is_one_error_line(files, argv, fragments):
    names = {k: v for k, v in files.items() if isinstance(v, Path)}
    argv = [a for word in argv.split() for a in (TINY if word == "{tiny}" else [word])]
    argv = [a.format(**names) for a in argv]
    code, _, err = run_cli(argv)
    assert code == 2, (code, err)
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    line = errors[0]
    assert line.startswith("minisegnet: error: "), line
    for fragment in fragments:
        assert fragment in line, (fragment, line)


def test_a_bug_keeps_its_traceback(monkeypatch):
    """The boundary catches the project's user errors only: anything else propagates."""
    import minisegnet.cli as cli

    def broken(args):
        raise ValueError("a bug")

    monkeypatch.setattr(cli, "_cmd_backends", broken)
    with pytest.raises(ValueError, match="a bug"):
        main(["backends"])


def test_an_oserror_of_the_machine_is_one_line(monkeypatch, capsys):
    """A disk that fills up during a run: one line naming the file. A file the code expected
    and did not find is a bug: traceback."""
    import errno

    import minisegnet.cli as cli

    def fails(code, message):
        def command(args):
            raise OSError(code, message, "runs/x/model.safetensors")

        return command

    monkeypatch.setattr(cli, "_cmd_backends", fails(errno.ENOSPC, "No space left on device"))
    assert main(["backends"]) == 2
    err = capsys.readouterr().err
    assert err == "minisegnet: error: runs/x/model.safetensors: No space left on device\n"
    monkeypatch.setattr(cli, "_cmd_backends", fails(errno.ENOENT, "No such file or directory"))
    with pytest.raises(FileNotFoundError):
        main(["backends"])


# --------------------------------------------------------------------------- Ctrl-C


@pytest.mark.parametrize("where", ["minisegnet.cli.build_parser", "minisegnet.train.Trainer"])
def test_ctrl_c_during_start_up_is_one_line(where, monkeypatch, capsys, tmp_path):
    """While the modules load (build_parser imports the training code) and while the run is
    set up (the Trainer generates its data)."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(where, interrupted)
    assert main(["train", "--out", str(tmp_path / "run"), "--epochs", "1"]) == 130
    assert capsys.readouterr().err == "minisegnet: interrupted\n"


@pytest.mark.parametrize("command", [True, False])
def test_ctrl_c_while_the_package_loads(command):
    """For the command (argv[0] "-m" while ``python -m`` loads the package, or the script), an
    uncaught KeyboardInterrupt is the one line and 130; other programs keep the traceback."""
    code = "import sys\nif sys.argv[1] == 'yes': sys.argv[0] = '-m'\nimport minisegnet\n"
    code += "raise KeyboardInterrupt"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run(
        [sys.executable, "-c", code, "yes" if command else "no"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    if command:
        assert (result.returncode, result.stderr) == (130, "minisegnet: interrupted\n")
    else:
        assert result.returncode != 130 and "Traceback" in result.stderr


def test_ctrl_c_of_the_real_command_is_one_line(tmp_path):
    """SIGINT to ``python -m minisegnet train`` while it starts (imports, data generation)."""
    code = (
        "import signal, runpy, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "sys.argv = ['minisegnet', 'train', '--out', sys.argv[1], '--no-progress']; "
        "runpy.run_module('minisegnet', run_name='__main__')"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    process = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path / "run")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        process.wait(timeout=1.5)  # runs on: 8000 images are generated before training
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, (out, err)
    assert "Traceback" not in err, err
    assert "minisegnet: interrupted" in err


# --------------------------------------------------------------------------- silently wrong


def test_batch_larger_than_the_data_is_one_warning_line(files):
    err = files["train_stderr"]
    warnings = [line for line in err.splitlines() if "warning:" in line]
    assert warnings == [
        "minisegnet: warning: --batch-size 16 is larger than the 8 training images; every "
        "step uses all 8"
    ], err
    assert "error:" not in err


def test_warmup_equal_to_epochs_is_allowed():
    from minisegnet.train import ConfigError, TrainConfig

    TrainConfig(epochs=2, warmup_epochs=2).check()
    with pytest.raises(ConfigError, match="--warmup-epochs 2.5 is longer than the run"):
        TrainConfig(epochs=2, warmup_epochs=2.5).check()


def test_16_bit_image_predicts_like_its_8_bit_copy(files, tmp_path):
    """A 16-bit PNG is scaled to 8 bits, not clipped (clipped, 99.8% of it saturated)."""
    rng = np.random.default_rng(0)
    from minisegnet.data import SyntheticShapes

    image8, _ = SyntheticShapes("test", size=40, length=1)[0]
    grey8 = image8.mean(axis=2).round().astype(np.uint8)
    grey16 = grey8.astype(np.uint16) * 257 + rng.integers(0, 2, grey8.shape, dtype=np.uint16)
    Image.fromarray(grey16).save(tmp_path / "deep.png")
    Image.fromarray(grey8).save(tmp_path / "flat.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    code, out, err = run_cli(
        [
            "predict",
            "--checkpoint",
            files["run"],
            tmp_path / "deep.png",
            tmp_path / "flat.png",
            "--out",
            tmp_path / "p",
        ]
    )
    assert code == 0, err
    deep = np.asarray(Image.open(tmp_path / "p" / "deep_mask.png"))
    flat = np.asarray(Image.open(tmp_path / "p" / "flat_mask.png"))
    np.testing.assert_array_equal(deep, flat)


# --------------------------------------------------------------------------- --resume repairs


def test_resume_of_a_finished_run_repairs_its_outputs(files, tmp_path):
    from minisegnet import io

    run = tmp_path / "run"
    shutil.copytree(files["run"], run)
    (run / "predictions.png").unlink()
    (run / "model.json").write_text('{"format": "minisegnet-wei')  # a write cut short
    (run / "metrics.md").write_text("# segnet_basic on builtin, validation, epoch 0\n")
    before = io.load_state_dict(files["run"] / "model.safetensors")

    code, out, err = run_cli(["train", "--resume", run, "--no-progress"])
    assert code == 0, err
    assert "finished all 1 epochs already" in out
    rewrote = [line for line in out.splitlines() if line.startswith("rewrote ")]
    assert len(rewrote) == 3, out
    assert any("model.safetensors and model.json" in r and "not valid JSON" in r for r in rewrote)
    assert any(r.startswith("rewrote predictions.png") and "missing" in r for r in rewrote)
    assert any(r.startswith("rewrote metrics.md") and "epoch 0" in r for r in rewrote)
    assert "done:" not in out  # nothing claims to have trained
    model = io.load_model(run / "model")
    after = {k: np.asarray(v) for k, v in model.state_dict().items()}
    assert all(np.array_equal(before[k], after[k]) for k in before)
    assert (run / "predictions.png").is_file()
    assert (
        (run / "metrics.md")
        .read_text()
        .startswith("# segnet_basic on builtin, validation, epoch 1\n")
    )
    assert (files["run"] / "metrics.md").read_text() == (run / "metrics.md").read_text()

    code, out, _ = run_cli(["train", "--resume", run, "--no-progress"])
    assert code == 0 and "present and up to date; nothing to do" in out


def test_resume_notices_weights_of_another_epoch(files, tmp_path):
    from minisegnet import io

    run = tmp_path / "run"
    shutil.copytree(files["run"], run)
    model = io.load_model(run / "model")
    for p in model.parameters():
        p.data = p.data * 0.5
    io.save(model, run / "model", extra=json.loads((run / "model.json").read_text())["extra"])
    code, out, err = run_cli(["train", "--resume", run, "--no-progress"])
    assert code == 0, err
    assert "rewrote model.safetensors and model.json" in out and "not the checkpoint's" in out
    fixed = io.load_state_dict(run / "model.safetensors")
    good = io.load_state_dict(files["run"] / "model.safetensors")
    assert all(np.array_equal(fixed[k], good[k]) for k in good)


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs."""


@pytest.mark.parametrize("kill", ["between the model renames", "before predictions.png"])
def test_a_run_killed_while_writing_its_outputs_is_repaired_by_resume(tmp_path, monkeypatch, kill):
    """The issue's kill windows at the end of the last epoch: the checkpoint is saved, then the
    outputs are being written when the process dies; --resume puts every output right."""
    from minisegnet import io
    from minisegnet.train import Trainer

    run = tmp_path / "run"
    with monkeypatch.context() as m:
        if kill == "between the model renames":
            real_replace = io.os.replace

            def replace(src, dst):
                if str(dst).endswith("model.json"):
                    raise Killed
                real_replace(src, dst)

            m.setattr(io.os, "replace", replace)
        else:

            def write_preview(self):
                raise Killed

            m.setattr(Trainer, "write_preview", write_preview)
        with pytest.raises(Killed):
            run_cli(["train", "--epochs", "1", "--batch-size", "4", "--out", run, *TINY])
    assert not (run / "predictions.png").exists()
    code, out, err = run_cli(["train", "--resume", run, "--no-progress"])
    assert code == 0, err
    assert "rewrote predictions.png" in out
    # killed between the renames, the new JSON waited under its temporary name: reading the
    # pair put it in place, so the weights need no rewriting either way
    assert "rewrote model.safetensors" not in out, out
    assert not (run / ".model.json.tmp").exists()
    model = io.load_model(run / "model")
    assert io.read_config(run / "model")["extra"]["epoch"] == 1
    assert model.config["name"] == "segnet_basic"
    code, out, _ = run_cli(["train", "--resume", run, "--no-progress"])
    assert code == 0 and "nothing to do" in out


# --------------------------------------------------------------------------- too small, or a bug


class _NeedsFive:
    """Stands for a network: refuses sides under 5 (or every side: ``broken``)."""

    training = False

    def __init__(self, broken=False):
        self.broken = broken
        self.calls = []

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def __call__(self, x):
        import minisegnet as ms

        side = x.shape[2]
        self.calls.append(side)
        if self.broken or side < 5:
            raise ValueError(f"refused {side}")
        return ms.Tensor.from_array(np.zeros((1, 2, side, side), np.float32))


def test_the_smallest_side_is_found_by_trying():
    from minisegnet.train import input_side_bracket, min_input_side

    assert min_input_side(_NeedsFive()) == 5
    net = _NeedsFive()
    assert input_side_bracket(net, failing=3) == (4, 5)
    assert 3 not in net.calls  # the side seen to fail is not tried again
    assert input_side_bracket(_NeedsFive(broken=True), limit=64) == (64, None)


def test_a_refusal_at_every_size_is_a_bug_and_keeps_its_traceback():
    from minisegnet.inference import size_checked
    from minisegnet.train import ConfigError

    with pytest.raises(ConfigError, match="--size 3 is too small for net: .* at least 5x5"):
        with size_checked(_NeedsFive(), "net", 3, "--size 3"):
            raise ValueError("refused 3")
    with pytest.raises(ValueError, match="refused 3"):
        with size_checked(_NeedsFive(broken=True), "net", 3, "--size 3"):
            raise ValueError("refused 3")


def test_a_refused_size_leaves_no_empty_run_folder(tmp_path, capsys, monkeypatch):
    from minisegnet.cli import main

    out = tmp_path / "runs" / "x"
    code = main(["train", "--model", "segnet", "--size", "16", "--out", str(out)])
    assert code == 2 and "--size 16 is too small for segnet" in capsys.readouterr().err
    assert not out.exists()  # made for the run, removed with nothing in it
    monkeypatch.chdir(tmp_path)  # the default run folder too
    assert main(["train", "--model", "segnet", "--size", "16"]) == 2
    assert not (tmp_path / "runs" / "segnet-builtin").exists()
    kept = tmp_path / "mine"
    kept.mkdir()  # a folder the user made is the user's
    assert main(["train", "--model", "segnet", "--size", "16", "--out", str(kept)]) == 2
    assert kept.is_dir()

"""``minisegnet predict --crf`` and ``evaluate --crf`` (minisegnet/refine.py) end to end on the
built-in data, and bad CRF options as one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minisegnet.cli import main
from tests.test_cli import TINY


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("crf") / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), *TINY]) == 0
    return out


def test_evaluate_with_and_without_crf(trained, capsys):
    assert main(["evaluate", "--checkpoint", str(trained), "--out", str(trained / "plain")]) == 0
    crf = ["--crf", "--crf-iterations", "3", "--crf-theta-alpha", "10"]
    assert (
        main(["evaluate", "--checkpoint", str(trained), "--out", str(trained / "crf"), *crf]) == 0
    )
    assert "| mean IoU |" in capsys.readouterr().out
    plain = json.loads((trained / "plain.json").read_text())
    refined = json.loads((trained / "crf.json").read_text())
    # the same pixels are scored; the CRF changes some predictions
    assert np.sum(plain["confusion"]) == np.sum(refined["confusion"])
    assert plain["confusion"] != refined["confusion"]


def test_predict_with_crf(trained, tmp_path, capsys):
    from PIL import Image

    from minisegnet.data import SyntheticShapes, write_image

    image, _ = SyntheticShapes("test", size=40, length=1)[0]
    write_image(tmp_path / "shapes.png", image)
    args = ["predict", "--checkpoint", str(trained), str(tmp_path / "shapes.png")]
    assert main([*args, "--out", str(tmp_path / "a"), "--crf", "--crf-iterations", "2"]) == 0
    mask = np.array(Image.open(tmp_path / "a" / "shapes_mask.png"))
    assert mask.shape == (40, 40) and mask.max() < 5


@pytest.mark.parametrize(
    "option, value, fragment",
    [
        ("--crf-theta-alpha", "0", "--crf-theta-alpha: expected a kernel width > 0, got 0"),
        ("--crf-theta-gamma", "nan", "--crf-theta-gamma: expected a kernel width > 0"),
        ("--crf-theta-beta", "x", "--crf-theta-beta: expected a kernel width > 0, got 'x'"),
        ("--crf-w1", "-2", "--crf-w1: expected a kernel weight >= 0, got -2"),
        ("--crf-iterations", "1.5", "--crf-iterations: expected an integer >= 0"),
    ],
)
def test_bad_crf_options(trained, capsys, option, value, fragment):
    code = main(["evaluate", "--checkpoint", str(trained), "--crf", option, value])
    err = capsys.readouterr().err  # a usage error: argparse's usage, then the one error line
    assert code == 2 and "Traceback" not in err
    assert f"minisegnet: error: argument {fragment}" in err.strip().splitlines()[-1], err


def test_params_from_args_names_the_option():
    from argparse import Namespace

    from minisegnet import refine
    from minisegnet.train import ConfigError

    args = Namespace(crf=True, crf_theta_gamma=-1.0)
    with pytest.raises(ConfigError, match="--crf-theta-gamma: .*must be a finite number > 0"):
        refine.params_from_args(args)
    assert refine.params_from_args(Namespace(crf_w1=2.0)).w1 == 2.0

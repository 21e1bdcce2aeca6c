"""The papers' evaluation protocol (minisegnet/evaluation.py) and SegNet's boundary F1 score
(minisegnet/boundary_f1.py), on a tiny CamVid fixture and hand-made maps."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from minisegnet import boundary_f1 as bfm
from minisegnet import metrics
from minisegnet.cli import main
from minisegnet.data import CamVid, DataError
from minisegnet.evaluation import evaluate_dataset, format_report, pad_to_multiple
from tests.camvid_fixture import OracleNet, camvid_train_args, make_camvid

# --------------------------------------------------------------------------- boundary F1


def test_dilate_disk_matches_brute_force_distance():
    rng = np.random.default_rng(0)
    mask = rng.random((23, 31)) < 0.03
    for radius in (0, 1, 1.5, 2.9, 4.5):
        got = bfm.dilate_disk(mask, radius)
        ys, xs = np.nonzero(mask)
        yy, xx = np.mgrid[:23, :31]
        d2 = (yy[..., None] - ys) ** 2 + (xx[..., None] - xs) ** 2
        want = (d2 <= radius * radius).any(axis=-1)
        assert np.array_equal(got, want), radius


def test_mask_boundary_of_a_square():
    m = np.zeros((6, 6), bool)
    m[1:5, 1:5] = True
    b = bfm.mask_boundary(m)
    assert b.sum() == 12 and not b[2:4, 2:4].any()
    assert not bfm.mask_boundary(np.ones((4, 4), bool)).any()  # the frame edge is no boundary


def test_boundary_f1_hand_cases():
    t = np.zeros((20, 20), np.int64)
    t[:, 10:] = 1  # boundary columns 9 (class 0) and 10 (class 1)
    assert np.allclose(bfm.image_boundary_f1(t, t, 2), [1, 1])
    shifted = np.zeros_like(t)
    shifted[:, 12:] = 1  # 2 columns off
    assert np.allclose(bfm.image_boundary_f1(shifted, t, 2, theta=2), [1, 1])
    assert np.allclose(bfm.image_boundary_f1(shifted, t, 2, theta=1), [0, 0])
    # class 1 never predicted: F1 0 for it; class 0 fills the frame: no predicted boundary -> 0
    assert np.allclose(bfm.image_boundary_f1(np.zeros_like(t), t, 2), [0, 0])
    f1 = bfm.image_boundary_f1(t, t, 3)
    assert math.isnan(f1[2])  # absent from the truth: not scored
    # the prediction on void is not scored: whatever it is there, BF stays 1
    t2 = t.copy()
    t2[:, 13:15] = 255
    p2 = t.copy()
    p2[:, 13:15] = 0
    assert np.allclose(bfm.image_boundary_f1(p2, t2, 2, theta=0.5), [1, 1])


def test_boundary_meter_averages_images_then_classes():
    m = bfm.BoundaryF1Meter(2)
    t = np.zeros((10, 10), np.int64)
    t[:, 5:] = 1
    m.add(t, t)  # image score 1
    m.add(np.zeros_like(t), t)  # image score 0
    s = m.scores()
    assert s["bf"] == pytest.approx(0.5) and np.allclose(s["bf_per_class"], [0.5, 0.5])
    assert bfm.tolerance(360, 480) == pytest.approx(4.5)


# --------------------------------------------------------------------------- the protocol


def test_pad_to_multiple():
    x = np.ones((1, 3, 5, 9), np.float32)
    y = pad_to_multiple(x, 4)
    assert y.shape == (1, 3, 8, 12) and y[..., 5:, :].sum() == 0 and y[..., :5, :9].all()


@pytest.mark.parametrize("multiple", [1, 8])
def test_full_resolution_one_confusion_matrix(tmp_path, multiple):
    make_camvid(tmp_path, h=21, w=30)
    ds = CamVid(tmp_path, "test")
    net = OracleNet(input_multiple=multiple, wrong=True)
    result = evaluate_dataset(net, ds, batch_size=2, boundary_f1=True)
    # every network input padded to the multiple, scores cropped back to the frames
    assert all(s[2] % multiple == 0 and s[3] % multiple == 0 for s in net.seen)
    assert net.seen[0][2:] == (-(-21 // multiple) * multiple, -(-30 // multiple) * multiple)
    want = np.zeros((11, 11), np.int64)
    for i in range(len(ds)):
        _, label = ds[i]
        keep = label != 255
        t = label[keep].astype(np.int64)
        want += metrics.confusion_matrix((t + 1) % 11, t, 11)
    assert np.array_equal(result["confusion"], want)
    assert result["frame_size"] == (21, 30) and result["images"] == 3
    assert result["pixel_acc"] == 0 and result["bf"] == 0  # every class off by one


def test_perfect_network_scores_100(tmp_path):
    make_camvid(tmp_path)
    result = evaluate_dataset(OracleNet(), CamVid(tmp_path, "test"), boundary_f1=True)
    assert result["pixel_acc"] == 1 and result["miou"] == 1 and result["bf"] == 1
    table = format_report(result, CamVid.class_names)
    assert "| global accuracy | 100.0 |" in table and "| bicyclist |" in table


def test_frames_of_different_sizes_in_one_batch_name_the_file(tmp_path):
    make_camvid(tmp_path, sizes={("test", 2): (20, 32)})
    ds = CamVid(tmp_path, "test")
    with pytest.raises(DataError, match=r"0001TP_test_0002\.png is 32x20.*--batch-size 1"):
        evaluate_dataset(OracleNet(), ds, batch_size=2)
    assert evaluate_dataset(OracleNet(), ds, batch_size=1)["miou"] == 1


# --------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def camvid_run(tmp_path_factory):
    root = make_camvid(tmp_path_factory.mktemp("camvid"))
    run = tmp_path_factory.mktemp("run") / "r"
    args = ["train", "--data", f"camvid:{root}", "--size", "16", "--epochs", "1"]
    assert main([*args, "--batch-size", "2", "--no-progress", "--out", str(run)]) == 0
    return root, run


def test_evaluate_test_split_full_resolution_by_default(camvid_run, capsys):
    root, run = camvid_run
    assert main(["evaluate", "--checkpoint", str(run), "--split", "test", "--boundary-f1"]) == 0
    out = capsys.readouterr().out
    assert "32x24, full resolution" in out and "| class-average accuracy |" in out
    assert "| boundary F1 (BF) |" in out
    saved = json.loads((run / "eval-camvid-test.json").read_text())
    assert saved["frame_size"] == [24, 32] and saved["images"] == 3
    assert np.asarray(saved["confusion"]).sum() == sum(
        int((CamVid(root, "test")[i][1] != 255).sum()) for i in range(3)
    )


def _one_error(capsys, code, *fragments):
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err, err
    line = [x for x in err.splitlines() if x.startswith("minisegnet: error:")]
    assert len(line) == 1, err
    for f in fragments:
        assert f in line[0], (f, line[0])


def test_evaluate_bad_input_is_one_line(camvid_run, tmp_path, capsys):
    root, run = camvid_run
    broken = make_camvid(tmp_path / "broken", sizes={("test", 1): (20, 32)})
    ev = ["evaluate", "--checkpoint", str(run), "--out", str(tmp_path / "e")]
    code = main([*ev, "--data", f"camvid:{broken}", "--split", "test", "--batch-size", "2"])
    _one_error(capsys, code, "0001TP_test_0001.png", "32x20", "--batch-size 1")
    code = main([*ev, "--data", f"camvid:{root}", "--split", "nope"])
    _one_error(capsys, code, "missing nope image folder")
    bad = make_camvid(tmp_path / "bad")
    from PIL import Image

    Image.fromarray(np.full((24, 32), 12, np.uint8)).save(
        bad / "testannot" / "0001TP_test_0000.png"
    )
    code = main([*ev, "--data", f"camvid:{bad}", "--split", "test"])
    _one_error(capsys, code, "testannot/0001TP_test_0000.png", "[12]")
    tiny = make_camvid(tmp_path / "tiny", h=6, w=6)
    code = main([*ev, "--data", f"camvid:{tiny}", "--split", "test"])
    _one_error(capsys, code, "too small", "6x6")
    code = main([*ev, "--data", f"camvid:{root}", "--split", "test", "--size", "16"])
    assert code == 0, capsys.readouterr().err


# --------------------------------------------------------------------------- class weights


def test_median_frequency_definition_by_hand():
    from minisegnet.data import median_frequency_weights

    a = np.array([[0, 0], [0, 1]])
    b = np.zeros((2, 2), np.int64)
    w = median_frequency_weights([a, b], 2)
    assert np.allclose(w, [9 / 14, 9 / 4])  # see the worked example in class_weights.py
    # ignored pixels count in no class and no total; an absent class gets 0
    c = np.array([[0, 255], [1, 1]])
    assert np.allclose(median_frequency_weights([c], 3), [1.5, 0.75, 0])


PROTOTXT = """layer {
  loss_param: {
    weight_by_label_freqs: true
    ignore_label: 11
    class_weighting: 0.2595
    class_weighting: 0.1826
    class_weighting: 4.5640
  }
}
"""


def test_class_weights_from_prototxt_file_and_list(tmp_path):
    from minisegnet.data.class_weights import parse_class_weights, resolve_class_weights

    proto = tmp_path / "train.prototxt"
    proto.write_text(PROTOTXT)
    assert np.allclose(parse_class_weights(str(proto)), [0.2595, 0.1826, 4.564])
    plain = tmp_path / "w.txt"
    plain.write_text("# sky building\n1, 2\n3.5\n")
    assert np.allclose(parse_class_weights(str(plain)), [1, 2, 3.5])
    assert np.allclose(parse_class_weights("1,0.5, 2"), [1, 0.5, 2])
    assert parse_class_weights("median") == "median" and parse_class_weights("none") is None
    for bad, words in (("1,x", "'x' is not a number"), ("1,-2", ">= 0"), ("0,0", "all weights"),
                       ("inverse", "'inverse' is neither"), ("1,nan", "finite")):  # fmt: skip
        with pytest.raises(DataError, match=words):
            parse_class_weights(bad)
    make_camvid(tmp_path / "c")
    ds = CamVid(tmp_path / "c", "train")
    with pytest.raises(DataError, match="3 weights for the 11 classes"):
        resolve_class_weights(str(proto), ds)
    w = resolve_class_weights(",".join(["1"] * 11), ds)
    assert w.dtype == np.float32 and w.shape == (11,)
    median = resolve_class_weights("median", ds)
    assert parse_class_weights("SQRT-median") == "sqrt-median"
    np.testing.assert_allclose(resolve_class_weights("sqrt-median", ds), np.sqrt(median))


def test_train_takes_the_shipped_prototxt_weights(tmp_path, capsys):
    root = make_camvid(tmp_path / "c")
    proto = tmp_path / "segnet_basic_train.prototxt"
    proto.write_text(
        PROTOTXT.replace("  }", "".join(f"    class_weighting: {k}\n" for k in range(1, 9)) + "  }")
    )
    run = tmp_path / "run"
    args = camvid_train_args(root)
    assert main([*args, "--class-weights", str(proto), "--no-progress", "--out", str(run)]) == 0
    saved = json.loads((run / "checkpoint.json").read_text())["class_weights"]
    assert np.allclose(saved, [0.2595, 0.1826, 4.564, *range(1, 9)])
    code = main([*args, "--class-weights", "1,2", "--out", str(tmp_path / "r2")])
    _one_error(capsys, code, "--class-weights 1,2", "2 weights for the 11 classes")

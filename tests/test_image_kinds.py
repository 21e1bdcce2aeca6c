"""read_image: 16-bit and float images are scaled to 8 bits, never clipped; other ranges and
images over the size limit are refused with a DataError naming the file (issue 18)."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from minisegnet.data import DataError, imageio, read_image


def _png48(path, rgb16):
    """A 16-bit-per-channel RGB PNG, written by hand (Pillow cannot write one)."""
    h, w, _ = rgb16.shape
    raw = b"".join(b"\x00" + rgb16[i].astype(">u2").tobytes() for i in range(h))

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )  # fmt: skip
    return path


def test_16_bit_grey_is_scaled_not_clipped(tmp_path):
    values = np.random.default_rng(0).integers(0, 65536, (30, 20), dtype=np.uint16)
    values[0, :2] = (0, 65535)
    Image.fromarray(values).save(tmp_path / "deep.png")
    image = read_image(tmp_path / "deep.png")
    assert image.shape == (30, 20, 3) and image.dtype == np.uint8
    expected = np.round(values * (255 / 65535)).astype(np.uint8)
    for c in range(3):
        np.testing.assert_array_equal(image[:, :, c], expected)
    saturated = (image[:, :, 0] == 255).mean()
    assert saturated < 0.01  # clipped to 8 bits, 99.6% of these pixels would read 255


def test_16_bit_rgb_is_scaled(tmp_path):
    values = np.random.default_rng(1).integers(0, 65536, (6, 7, 3), dtype=np.uint16)
    image = read_image(_png48(tmp_path / "rgb48.png", values))
    assert image.shape == (6, 7, 3) and image.dtype == np.uint8
    assert np.abs(image - values * (255 / 65535)).max() <= 1


def test_float_image_in_unit_range_is_scaled(tmp_path):
    values = np.linspace(0, 1, 40, dtype=np.float32).reshape(5, 8)
    Image.fromarray(values).save(tmp_path / "f.tiff")
    image = read_image(tmp_path / "f.tiff")
    np.testing.assert_array_equal(image[:, :, 1], np.round(values * 255).astype(np.uint8))


@pytest.mark.parametrize("value", [3.5, -0.25, np.nan])
def test_float_image_out_of_range_is_refused(tmp_path, value):
    values = np.full((4, 4), 0.5, np.float32)
    values[1, 1] = value
    Image.fromarray(values).save(tmp_path / "f.tiff")
    with pytest.raises(DataError, match=r"f\.tiff is a float image .* expected values in \[0, 1\]"):
        read_image(tmp_path / "f.tiff")


def test_32_bit_integers_beyond_16_bits_are_refused(tmp_path):
    Image.fromarray(np.full((4, 4), 70000, np.int32)).save(tmp_path / "i.tiff")
    with pytest.raises(DataError, match=r"i\.tiff is a 32-bit integer image holding 70000"):
        read_image(tmp_path / "i.tiff")


def test_8_bit_kinds_still_convert(tmp_path):
    rgba = np.random.default_rng(2).integers(0, 256, (5, 6, 4), dtype=np.uint8)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgba[:, :, :3])
    Image.fromarray(rgba[:, :, 0]).save(tmp_path / "grey.png")
    assert (read_image(tmp_path / "grey.png") == rgba[:, :, :1]).all()


def test_an_image_over_the_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "big.png")
    monkeypatch.setattr(imageio, "MAX_IMAGE_PIXELS", 599)
    loaded = []
    monkeypatch.setattr(Image.Image, "load", lambda self: loaded.append(1))
    with pytest.raises(DataError, match=r"big\.png is 30x20 pixels .*MAX_IMAGE_PIXELS"):
        read_image(tmp_path / "big.png")
    assert not loaded
    monkeypatch.setattr(imageio, "MAX_IMAGE_PIXELS", 600)
    monkeypatch.undo()
    assert read_image(tmp_path / "big.png").shape == (20, 30, 3)


def test_a_header_claiming_a_huge_size_is_refused(tmp_path):
    """Pillow's own decompression-bomb error (above 179 megapixels) becomes the same message."""
    path = tmp_path / "bomb.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(path)
    data = bytearray(path.read_bytes())
    data[16:24] = struct.pack(">II", 20000, 20000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"bomb\.png is 20000x20000 pixels \(400 megapixels\)"):
        read_image(path)
    assert Image.MAX_IMAGE_PIXELS is not None  # Pillow's limit is restored

"""Safe decoding: mode normalisation, truncated files, bombs, hashes."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from medaudit.data.images import array_hash, decode_image, pixel_hash
from medaudit.errors import MedauditError


def test_16bit_gray_scaled_by_actual_range(tmp_path):
    arr = np.array([[1000, 1500], [2000, 3000]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "x.png")
    im, mode = decode_image(tmp_path / "x.png")
    assert mode.startswith("I")  # "I;16" (new Pillow) or "I"
    assert im.mode == "L"
    # (v - 1000) * 255 / 2000, rounded: hand-computed
    np.testing.assert_array_equal(np.asarray(im), [[0, 64], [128, 255]])


def test_constant_16bit_becomes_zero(tmp_path):
    Image.fromarray(np.full((3, 3), 777, np.uint16)).save(tmp_path / "c.png")
    assert np.asarray(decode_image(tmp_path / "c.png")[0]).max() == 0


def test_rgba_composited_on_black_and_la_to_l(tmp_path):
    rgba = np.zeros((1, 2, 4), np.uint8)
    rgba[0, 0] = [200, 100, 50, 255]
    rgba[0, 1] = [200, 100, 50, 0]  # fully transparent -> black
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    im, mode = decode_image(tmp_path / "a.png")
    assert (mode, im.mode) == ("RGBA", "RGB")
    np.testing.assert_array_equal(np.asarray(im), [[[200, 100, 50], [0, 0, 0]]])
    la = Image.fromarray(np.array([[[100, 128]]], np.uint8), "LA")
    la.save(tmp_path / "la.png")
    im = decode_image(tmp_path / "la.png")[0]
    assert im.mode == "L" and np.asarray(im)[0, 0] == 50  # 100 * 128/255 = 50.2


def test_palette_and_bilevel(tmp_path):
    Image.fromarray(np.array([[0, 255]], np.uint8)).convert("P").save(tmp_path / "p.png")
    Image.fromarray(np.array([[0, 255]], np.uint8)).convert("1").save(tmp_path / "b.png")
    assert decode_image(tmp_path / "p.png")[0].mode == "RGB"
    b = decode_image(tmp_path / "b.png")[0]
    assert b.mode == "L" and np.asarray(b).tolist() == [[0, 255]]


def test_truncated_jpeg_names_file(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "t.jpg")
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(MedauditError, match=r"t\.jpg.*truncated or corrupt"):
        decode_image(tmp_path / "t.jpg")


def test_garbage_and_missing(tmp_path):
    (tmp_path / "g.png").write_bytes(b"not an image")
    with pytest.raises(MedauditError, match=r"g\.png: not a readable image"):
        decode_image(tmp_path / "g.png")
    with pytest.raises(MedauditError, match="not found"):
        decode_image(tmp_path / "nope.png")


def _png_with_size(path, width, height):
    """A 1x1 PNG whose header claims width x height (no pixel data needed to trip the bomb check)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))  # noqa: E731
    idat = zlib.compress(b"\x00\x00")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def test_decompression_bomb_refused(tmp_path):
    _png_with_size(tmp_path / "bomb.png", 30000, 30000)  # 900 MP: PIL's DecompressionBombError
    with pytest.raises(MedauditError, match=r"bomb\.png: refused as a possible decompression bomb"):
        decode_image(tmp_path / "bomb.png")
    _png_with_size(tmp_path / "big.png", 9000, 9000)  # 81 MP: above medaudit's limit, below PIL's
    with pytest.raises(MedauditError, match=r"big\.png.*above the limit"):
        decode_image(tmp_path / "big.png")
    Image.new("L", (100, 100)).save(tmp_path / "ok.png")
    with pytest.raises(MedauditError, match="above the limit of 5000"):
        decode_image(tmp_path / "ok.png", max_pixels=5000)


def test_hash_equal_for_array_and_png(tmp_path):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    for arr in (gray, rgb):
        Image.fromarray(arr).save(tmp_path / "h.png")
        assert pixel_hash(decode_image(tmp_path / "h.png")[0]) == array_hash(arr)
    assert array_hash(gray) != array_hash(gray.T.copy())  # shape is part of the hash


def test_truncated_jpeg_refused_even_when_a_library_allows_truncated_images(tmp_path, monkeypatch):
    from PIL import ImageFile

    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)  # what importing weasyprint does
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "t.jpg")
    data = (tmp_path / "t.jpg").read_bytes()
    (tmp_path / "t.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(MedauditError, match="truncated or corrupt"):
        decode_image(tmp_path / "t.jpg")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # the caller's setting is restored

"""Image reading: depths, channels, headers, and the reason given for every refused file."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from app.station.sources.imageio import (
    ImageReadError,
    decode_image,
    header_size,
    read_image,
    to_frame_layout,
)


@pytest.mark.parametrize("ext", [".png", ".bmp", ".jpg", ".tif"])
@pytest.mark.parametrize("shape", [(37, 53), (37, 53, 3)])
def test_header_size_matches_decoded_size(ext: str, shape: tuple[int, ...]) -> None:
    image = np.random.default_rng(1).integers(0, 255, shape, dtype=np.uint8)
    data = cv2.imencode(ext, image)[1].tobytes()
    assert header_size(data) == (53, 37)
    decoded = decode_image(data, name=f"x{ext}")
    assert decoded.shape == shape and decoded.dtype == np.uint8
    if ext != ".jpg":
        np.testing.assert_array_equal(decoded, image)


def test_16bit_colour_tiff_kept(tmp_path: Path) -> None:
    image = np.random.default_rng(2).integers(0, 65535, (20, 30, 3), dtype=np.uint16)
    path = tmp_path / "deep.tiff"
    assert cv2.imwrite(str(path), image)
    out = read_image(path)
    assert out.dtype == np.uint16 and out.shape == (20, 30, 3)
    np.testing.assert_array_equal(out, image)


def test_float_images_scaled_or_refused(tmp_path: Path) -> None:
    unit = np.linspace(0, 1, 200, dtype=np.float32).reshape(10, 20)
    assert cv2.imwrite(str(tmp_path / "unit.tif"), unit)
    out = read_image(tmp_path / "unit.tif")
    assert out.dtype == np.uint16 and out[0, 0] == 0 and out[-1, -1] == 65535
    assert cv2.imwrite(str(tmp_path / "wide.tif"), unit * 300)
    with pytest.raises(ImageReadError, match=r"wide.tif: float image with values in \[0, 300\]"):
        read_image(tmp_path / "wide.tif")


def test_32bit_integer_refused(tmp_path: Path) -> None:
    assert cv2.imwrite(str(tmp_path / "int.tif"), np.ones((5, 5), np.int32) * 100000)
    with pytest.raises(ImageReadError, match="int32 pixels are not supported"):
        read_image(tmp_path / "int.tif")


def test_layout_conversions() -> None:
    single = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
    assert to_frame_layout(single).shape == (3, 4)
    bgra = np.zeros((3, 4, 4), np.uint8)
    bgra[..., 0], bgra[..., 3] = 9, 255
    bgr = to_frame_layout(bgra)
    assert bgr.shape == (3, 4, 3) and bgr[0, 0, 0] == 9 and bgr.flags.c_contiguous
    strided = np.zeros((10, 10), np.uint8)[::2, ::3]
    assert to_frame_layout(strided).flags.c_contiguous
    with pytest.raises(ImageReadError, match="5 channels"):
        to_frame_layout(np.zeros((2, 2, 5), np.uint8))


def test_broken_files_say_why(tmp_path: Path) -> None:
    png = cv2.imencode(".png", np.zeros((50, 50), np.uint8))[1].tobytes()
    cases = {
        "empty.png": (b"", "empty file"),
        "cut.png": (png[: len(png) // 2], "not a readable image"),
        "text.jpg": (b"hello", "not a readable image"),
    }
    for name, (data, reason) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ImageReadError, match=reason) as info:
            read_image(tmp_path / name)
        assert name in str(info.value)
    with pytest.raises(ImageReadError, match="cannot read file"):
        read_image(tmp_path / "missing.png")


def test_huge_bmp_refused_from_header() -> None:
    header = (
        b"BM"
        + b"\x00" * 16
        + (70_000).to_bytes(4, "little")
        + (-70_000).to_bytes(4, "little", signed=True)
    )
    with pytest.raises(ImageReadError, match="too large \\(70000 x 70000"):
        decode_image(header + b"\x00" * 100, name="big.bmp")

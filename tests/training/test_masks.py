"""Mask decoding: binary, soft, palette-indexed and class-index masks, any bit depth (no TF)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from training.data.masks import (
    DatasetError,
    image_info,
    read_labels,
    read_mask,
    read_mask_values,
    to_labels,
)


def _write(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), array)
    return path


def _palette_file(path: Path, idx: np.ndarray, colours: list[tuple[int, int, int]]) -> Path:
    im = Image.fromarray(idx.astype(np.uint8), mode="P")
    flat = [c for rgb in colours for c in rgb]
    im.putpalette(flat + [0] * (768 - len(flat)))
    im.save(path)
    return path


def _square(h: int = 20, w: int = 30, value: int = 255, dtype: type = np.uint8) -> np.ndarray:
    m = np.zeros((h, w), dtype)
    m[5:10, 8:20] = value
    return m


@pytest.mark.parametrize(
    ("value", "dtype"), [(255, np.uint8), (1, np.uint8), (65535, np.uint16), (255, np.uint16)]
)
def test_binary_masks_of_any_value_and_depth(tmp_path: Path, value: int, dtype: type) -> None:
    path = _write(tmp_path / "m.png", _square(value=value, dtype=dtype))
    mask = read_mask_values(path)
    assert mask.kind == "binary" and mask.ids == (value,)
    labels = read_labels(path, (20, 30), foreground=3)
    assert labels.dtype == np.uint8 and set(np.unique(labels)) == {0, 3}
    assert int((labels == 3).sum()) == 5 * 12


def test_soft_mask_is_thresholded_at_half_scale(tmp_path: Path) -> None:
    soft = cv2.GaussianBlur(_square().astype(np.float32), (0, 0), 2.0).astype(np.uint8)
    assert len(np.unique(soft)) > 10 and soft.max() > 127
    path = _write(tmp_path / "soft.png", soft)
    assert read_mask_values(path).kind == "soft"
    assert np.array_equal(read_mask(path), soft > 127)
    soft16 = (soft.astype(np.uint16) * 257).astype(np.uint16)
    path16 = _write(tmp_path / "soft16.png", soft16)
    assert read_mask_values(path16).kind == "soft"
    assert np.array_equal(read_mask(path16), soft16 > 32767)


def test_palette_png_and_bmp_read_the_index_not_the_colour(tmp_path: Path) -> None:
    idx = np.zeros((20, 30), np.uint8)
    idx[2:6, 2:6] = 1
    idx[10:14, 10:20] = 2
    idx[0, :] = 255  # a VOC-style void border: not a class
    colours = [(0, 0, 0), (255, 0, 0), (0, 255, 0)] + [(9, 9, 9)] * 252 + [(255, 255, 255)]
    for name in ("p.png", "p.bmp"):
        path = _palette_file(tmp_path / name, idx, colours)
        mask = read_mask_values(path)
        assert mask.kind == "palette", name
        labels = to_labels(mask, "palette")
        assert set(np.unique(labels)) == {0, 1, 2}, name
        assert int((labels == 2).sum()) == 40 and not labels[0].any()
        assert read_mask(path).sum() == 16 + 40


def test_palette_background_is_the_black_entry(tmp_path: Path) -> None:
    idx = np.ones((10, 10), np.uint8)  # index 1 is black = background
    idx[2:4, 2:4] = 0  # index 0 is white = the defect
    path = _palette_file(tmp_path / "inv.png", idx, [(255, 255, 255), (0, 0, 0)])
    labels = read_labels(path)
    assert int((labels > 0).sum()) == 4 and labels[0, 0] == 0


def test_grey_ramp_palette_is_read_as_grey(tmp_path: Path) -> None:
    idx = _square()
    ramp = [(i, i, i) for i in range(256)]
    path = _palette_file(tmp_path / "grey.bmp", idx, ramp)
    mask = read_mask_values(path)
    assert mask.kind == "binary" and mask.ids == (255,)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_class_index_masks(tmp_path: Path, dtype: type) -> None:
    m = np.zeros((20, 30), dtype)
    m[1:3, 1:3], m[5:8, 5:8], m[10:15, 10:12] = 1, 2, 5
    path = _write(tmp_path / "ci.png", m)
    mask = read_mask_values(path)
    assert mask.kind == "class_index" and mask.ids == (1, 2, 5)
    labels = to_labels(mask)
    assert [int((labels == c).sum()) for c in (1, 2, 5)] == [4, 9, 10]


def test_dataset_kind_decides_a_one_value_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "three.png", _square(value=3))
    mask = read_mask_values(path)
    assert mask.kind == "binary"
    assert set(np.unique(to_labels(mask, "class_index"))) == {0, 3}  # id kept in a class-index set
    assert set(np.unique(to_labels(mask, "binary", foreground=2))) == {0, 2}  # else the folder's


def test_colour_mask_counts_any_painted_channel(tmp_path: Path) -> None:
    m = np.zeros((20, 30, 3), np.uint8)
    m[2:4, 2:4, 2] = 255  # red in BGR
    m[6:8, 6:8, 1] = 255
    assert read_mask(_write(tmp_path / "c.png", m)).sum() == 8


def test_size_mismatch_and_unreadable_files_name_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path / "m.png", _square())
    with pytest.raises(DatasetError, match=r"m\.png: mask is 30x20 but its image is 40x20"):
        read_mask(path, (20, 40))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG not really")
    with pytest.raises(DatasetError, match=r"bad\.png: not a readable image"):
        read_mask_values(bad)
    with pytest.raises(DatasetError, match=r"bad\.png"):
        image_info(bad)


def test_image_info_from_header_and_pixels(tmp_path: Path) -> None:
    grey16 = _write(tmp_path / "g.png", np.zeros((7, 9), np.uint16))
    colour = _write(tmp_path / "c.jpg", np.zeros((5, 11, 3), np.uint8))
    for decode in (False, True):
        assert image_info(grey16, decode=decode).kind == "grey 16-bit"
        info = image_info(colour, decode=decode)
        assert info.shape == (5, 11) and info.kind == "colour 8-bit"

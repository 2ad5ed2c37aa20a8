"""Labels land in the images+masks layout, atomically, never overwriting an earlier label."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from app.station import _atomic
from app.station.labels import dataset_summary, save_label


def read(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


@pytest.fixture
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (24, 32), dtype=np.uint8)


def painted(h: int = 24, w: int = 32) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[5:9, 10:14] = True
    return m


def test_defect_label_written(tmp_path: Path, image: np.ndarray) -> None:
    paths = save_label(tmp_path, image, painted(), name="0001.png")
    assert paths.name == "0001" and paths.kind == "defect"
    assert paths.image == tmp_path / "images" / "0001.png"
    assert paths.mask == tmp_path / "masks" / "0001.png"
    np.testing.assert_array_equal(read(paths.image), image)
    m = read(paths.mask)
    assert m.dtype == np.uint8 and m.shape == image.shape
    assert set(np.unique(m)) == {0, 255} and int((m == 255).sum()) == 16
    assert not [p for p in tmp_path.rglob("*.tmp")]  # no temp file left behind


def test_false_alarm_gets_all_zero_mask(tmp_path: Path, image: np.ndarray) -> None:
    paths = save_label(tmp_path, image, None, name="fa", kind="false_alarm")
    m = read(paths.mask)
    assert m.shape == image.shape and not m.any()
    # A painted mask given with a false alarm is ignored: the image is defect-free.
    paths = save_label(tmp_path, image, painted(), name="fa", kind="false_alarm")
    assert paths.name == "fa_2" and not read(paths.mask).any()


def test_never_overwrites(tmp_path: Path, image: np.ndarray) -> None:
    names = [save_label(tmp_path, image, painted(), name="part").name for _ in range(3)]
    assert names == ["part", "part_2", "part_3"]
    # An orphan mask also reserves its name.
    (tmp_path / "masks" / "other.png").write_bytes(b"x")
    assert save_label(tmp_path, image, painted(), name="other").name == "other_2"
    assert (tmp_path / "masks" / "other.png").read_bytes() == b"x"


def test_sixteen_bit_and_colour_kept(tmp_path: Path) -> None:
    img16 = (np.arange(24 * 32, dtype=np.uint16).reshape(24, 32) * 80).astype(np.uint16)
    p = save_label(tmp_path, img16, painted(), name="deep")
    back = read(p.image)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, img16)
    assert read(p.mask).dtype == np.uint8
    colour = np.zeros((24, 32, 3), np.uint8)
    colour[..., 2] = 255
    p = save_label(tmp_path, colour, painted(), name="red")
    np.testing.assert_array_equal(read(p.image), colour)
    assert read(p.mask).shape == (24, 32)


def test_name_is_sanitised(tmp_path: Path, image: np.ndarray) -> None:
    p = save_label(tmp_path, image, painted(), name="folder:/line 1/#12")
    assert p.name == "folder_line_1_12" and p.image.parent == tmp_path / "images"
    with pytest.raises(ValueError, match="usable"):
        save_label(tmp_path, image, painted(), name="///")


@pytest.mark.parametrize(
    ("mask", "kind", "match"),
    [
        (np.zeros((24, 31), bool), "defect", "does not match"),
        (np.zeros((24, 32), bool), "defect", "empty"),
        (None, "defect", "needs a mask"),
        (np.ones((24, 32), bool), "missed", "kind"),
    ],
)
def test_bad_input(tmp_path: Path, image: np.ndarray, mask: object, kind: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        save_label(tmp_path, image, mask, name="x", kind=kind)  # type: ignore[arg-type]
    assert not list(tmp_path.rglob("*.png"))


def test_bad_image_dtype(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dtype"):
        save_label(tmp_path, np.zeros((4, 4), np.float32), np.ones((4, 4)), name="f")


def test_failed_mask_write_leaves_no_image(
    tmp_path: Path, image: np.ndarray, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = _atomic._temp_copy
    calls = []

    def flaky(path: Path, data: bytes) -> str:
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(path, data)

    monkeypatch.setattr(_atomic, "_temp_copy", flaky)
    with pytest.raises(OSError):
        save_label(tmp_path, image, painted(), name="full")
    assert not list(tmp_path.rglob("*.png")) and not list(tmp_path.rglob("*.tmp"))


def test_dataset_summary(tmp_path: Path, image: np.ndarray) -> None:
    assert dataset_summary(tmp_path / "none") == (0, 0, 0)
    save_label(tmp_path, image, painted(), name="a")
    save_label(tmp_path, image, painted(), name="b")
    save_label(tmp_path, image, None, name="c", kind="false_alarm")
    cv2.imwrite(str(tmp_path / "images" / "d.png"), image)  # no mask at all: normal
    cv2.imwrite(str(tmp_path / "masks" / "e.png"), np.full((4, 4), 255, np.uint8))  # orphan
    assert dataset_summary(tmp_path) == (4, 2, 2)

"""Reading images and decoding masks of every kind users bring (numpy, OpenCV, Pillow; no TF).

A mask file is decoded into class ids (``uint8``, 0 = background, 1..K = defect classes):

* **binary**: two values, 0 and anything else (0/255, 0/1, 0/65535) -> the foreground class;
* **soft**: grey levels (anti-aliased or blurred edges) -> foreground where > half of full scale;
* **palette**: an indexed PNG/BMP -> the palette *index* is the class id (OpenCV would expand the
  palette to colours, so palette files are read with Pillow); the black entry is background;
* **class_index**: a grey image whose pixel value is the class id (1..63), any bit depth;
* a colour (RGB) mask counts wherever any channel is painted, as one class.

A mask holding one non-zero value is binary on its own, but in a dataset whose other masks carry
several ids it is class-index: discovery decides the kind for the whole dataset and passes it in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

MaskKind = Literal["binary", "soft", "palette", "class_index"]
MASK_KINDS: tuple[MaskKind, ...] = ("binary", "soft", "palette", "class_index")
# Class ids above this are not class ids: a grey mask reaching higher is soft (or binary).
CLASS_INDEX_MAX = 63
# Palette index 255 is the common "void / do not care" border (PASCAL VOC); not a class.
VOID_INDEX = 255


class DatasetError(ValueError):
    """The dataset cannot be used as given (the message names the file and the problem)."""


def _decode(path: str | Path) -> NDArray | None:
    data = np.fromfile(str(path), dtype=np.uint8)  # fromfile + imdecode copes with any path
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None


def read_image(path: str | Path) -> NDArray:
    """Read an image unchanged (8 or 16 bit, grey or BGR); a clear error if unreadable."""
    try:
        image = _decode(path)
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    if image is None:
        raise DatasetError(f"{path}: not a readable image")
    if image.dtype not in (np.uint8, np.uint16):
        raise DatasetError(f"{path}: {image.dtype} pixels (expected 8 or 16 bit)")
    return image


@dataclass(frozen=True)
class ImageInfo:
    """What an image file's header says: (height, width), channels, bits per channel."""

    shape: tuple[int, int]
    channels: int
    bits: int

    @property
    def kind(self) -> str:
        return f"{'grey' if self.channels == 1 else 'colour'} {self.bits}-bit"


_PIL_MODES = {  # Pillow mode -> (channels, bits)
    "1": (1, 1), "L": (1, 8), "P": (3, 8), "LA": (1, 8), "RGB": (3, 8), "RGBA": (3, 8),
    "I;16": (1, 16), "I;16B": (1, 16), "I;16L": (1, 16), "I": (1, 16), "CMYK": (3, 8),
}  # fmt: skip


def image_info(path: str | Path, *, decode: bool = False) -> ImageInfo:
    """Size and pixel format from the header (Pillow, no decoding) or, with ``decode``, the pixels.

    Raises :class:`DatasetError` naming the file when it is not a readable image.
    """
    if not decode:
        try:
            from PIL import Image

            with Image.open(path) as im:
                channels, bits = _PIL_MODES.get(im.mode, (3, 8))
                return ImageInfo((im.size[1], im.size[0]), channels, bits)
        except Exception:  # noqa: BLE001 - Pillow raises many types; OpenCV gets the last word
            pass
    image = read_image(path)
    channels = 1 if image.ndim == 2 else min(image.shape[2], 3)
    return ImageInfo(image.shape[:2], channels, 8 if image.dtype == np.uint8 else 16)


@dataclass(frozen=True)
class MaskValues:
    """A mask file's raw 2-D values (grey levels or palette indices) and what they look like."""

    values: NDArray  # HxW uint8/uint16 (or uint8 palette indices)
    full_scale: int  # 255, 65535 (or 255 for palette indices)
    kind: MaskKind  # what this file alone looks like
    ids: tuple[int, ...]  # distinct non-zero values (capped: see _distinct)


def _grey_palette(im: object, used: NDArray) -> bool:
    palette = im.getpalette() or []  # type: ignore[attr-defined]  # a PIL palette image, passed as object
    rgb = np.array(palette[: 3 * 256], np.int32).reshape(-1, 3)
    ok = used[used < len(rgb)]
    return bool(len(ok) == len(used) and np.all(rgb[ok] == ok[:, None]))


def _palette_values(path: str | Path) -> NDArray[np.uint8] | None:
    """Palette indices of an indexed PNG/BMP, or None when the file is not palette-indexed."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            if im.mode != "P":
                return None
            idx = np.asarray(im, dtype=np.uint8).copy()
            used = np.unique(idx).astype(np.int64)
            if _grey_palette(im, used):
                return None  # a grey image stored with a grey-ramp palette: read it as grey
            palette = np.array((im.getpalette() or [])[: 3 * 256], np.int32).reshape(-1, 3)
    except Exception:  # noqa: BLE001 - not something Pillow reads: OpenCV decides below
        return None
    # Background is the black entry (usually index 0); swap it to 0 when a tool put it elsewhere.
    black = [int(i) for i in used if i < len(palette) and not palette[i].any()]
    if black and black[0] != 0:
        b = black[0]
        idx = np.where(idx == b, 0, np.where(idx == 0, b, idx)).astype(np.uint8)
    return idx


def _distinct(values: NDArray) -> tuple[int, ...]:
    # bincount is fast for 8 bit; 16-bit masks use unique (still only once per file).
    if values.dtype == np.uint8:
        counts = np.bincount(values.ravel(), minlength=256)
        ids = np.flatnonzero(counts)
    else:
        ids = np.unique(values)
    return tuple(int(v) for v in ids if v != 0)


def classify(ids: tuple[int, ...]) -> MaskKind:
    """What a grey mask looks like on its own, from its distinct non-zero values."""
    if len(ids) <= 1:
        return "binary"
    return "class_index" if max(ids) <= CLASS_INDEX_MAX else "soft"


def read_mask_values(path: str | Path) -> MaskValues:
    """Read a mask file as 2-D values and guess its kind; :class:`DatasetError` if unreadable."""
    idx = _palette_values(path)
    if idx is not None:
        ids = _distinct(idx)
        return MaskValues(idx, 255, "palette", ids)
    raw = read_image(path)
    if raw.ndim == 3:
        raw = raw.max(axis=2)  # a coloured annotation counts wherever any channel is painted
    full = 255 if raw.dtype == np.uint8 else 65535
    ids = _distinct(raw)
    return MaskValues(raw, full, classify(ids), ids)


def to_labels(
    mask: MaskValues, kind: MaskKind | None = None, foreground: int = 1
) -> NDArray[np.uint8]:
    """Class ids (0 = background) of a mask; ``kind`` is the dataset's (default: the file's own).

    ``foreground`` is the class id of the defect pixels of a mask that marks one class only (the
    class of the folder the image is in, for example).
    """
    kind = kind or mask.kind
    v = mask.values
    ids_are_classes = mask.kind in ("palette", "class_index") or (
        mask.kind == "binary" and bool(mask.ids) and mask.ids[0] <= CLASS_INDEX_MAX
    )
    if kind in ("palette", "class_index") and ids_are_classes:
        # Void borders (palette index 255) and values no class can have count as background.
        return np.where(v > CLASS_INDEX_MAX, 0, v).astype(np.uint8)
    if mask.kind == "soft":
        hit = v > mask.full_scale // 2
    elif mask.kind == "palette":
        hit = (v > 0) & (v != VOID_INDEX)
    else:
        hit = v > 0
    return np.where(hit, foreground, 0).astype(np.uint8)


def _check_shape(path: str | Path, got: tuple[int, ...], shape: tuple[int, int] | None) -> None:
    if shape is not None and tuple(got) != tuple(shape):
        raise DatasetError(
            f"{path}: mask is {got[1]}x{got[0]} but its image is {shape[1]}x{shape[0]} "
            "(width x height); masks must match their image pixel for pixel"
        )


def read_labels(
    path: str | Path,
    shape: tuple[int, int] | None = None,
    *,
    kind: MaskKind | None = None,
    foreground: int = 1,
) -> NDArray[np.uint8]:
    """Class ids of a mask file (0 = background), checked against the image ``shape`` (h, w)."""
    mask = read_mask_values(path)
    _check_shape(path, mask.values.shape, shape)
    return to_labels(mask, kind, foreground)


def read_mask(path: str | Path, shape: tuple[int, int] | None = None) -> NDArray[np.bool_]:
    """Defect pixels of a mask of any kind (any class), checked against ``shape`` (h, w)."""
    return read_labels(path, shape) > 0

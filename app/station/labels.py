"""Technicians' labels into the images+masks dataset layout that training reads.

``DATASET/images/NAME.png`` + ``DATASET/masks/NAME.png``: the mask is uint8 0/255 of the image's
size; an all-zero mask means defect-free. A missed defect is saved with its painted mask; a false
alarm is saved with an all-zero mask, so the next training learns that this image is good.

With defect classes (a multi-class model) the mask is class-index instead: pixel = class id
(1 = the first class name, 0 = background), and ``DATASET/classes.txt`` lists the names one a
line, class 1 first; ``training.data.discovery`` reads both back. A dataset keeps one class list:
a label whose names disagree with an existing ``classes.txt`` is refused, not mixed in, and so
is a class-index label into a dataset of binary masks (or a binary one into a class dataset):
training would read the other kind's defects as the wrong class.

Writes are atomic and never replace an existing label: when ``NAME`` is taken (by an image or a
mask) the label becomes ``NAME_2``, ``NAME_3``, ...
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from app.station._atomic import atomic_write_text, write_new_file

__all__ = [
    "CLASSES_FILE", "IMAGE_SUFFIXES", "LabelKind", "LabelPaths", "dataset_classes",
    "dataset_summary", "save_label",
]  # fmt: skip

LabelKind = Literal["defect", "false_alarm"]
IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
_MAX_TRIES = 10_000
CLASSES_FILE = "classes.txt"
_MAX_CLASS_ID = 63  # discovery reads values above this as a soft / binary mask, not class ids


@dataclass(frozen=True)
class LabelPaths:
    """Where a label was written, and under which (possibly suffixed) name."""

    image: Path
    mask: Path
    name: str
    kind: LabelKind


def _safe_name(name: str) -> str:
    # File names come from frame sources ("folder:/x/0001.png#12"); keep them portable.
    if Path(name).suffix.lower() in IMAGE_SUFFIXES:
        name = Path(name).stem
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name)
    stem = stem.strip("._")
    if not stem:
        raise ValueError(f"label name {name!r} has no usable characters")
    return stem


def _encode(array: NDArray[np.generic], what: str) -> bytes:
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(array))
    if not ok:
        raise ValueError(f"{what} could not be encoded as PNG")
    return buf.tobytes()


def _check_image(image: NDArray[np.generic]) -> None:
    if image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"label image dtype {image.dtype} is not uint8 or uint16")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3)):
        raise ValueError(f"label image shape {image.shape} is not HxW or HxWx3")


def _mask_for(
    image: NDArray[np.generic],
    mask: NDArray[np.generic] | None,
    kind: LabelKind,
    n_classes: int = 0,
) -> NDArray[np.uint8]:
    h, w = image.shape[:2]
    if kind == "false_alarm":
        return np.zeros((h, w), np.uint8)
    if mask is None:
        raise ValueError("a defect label needs a mask (use kind='false_alarm' for a good image)")
    m = np.asarray(mask)
    if m.ndim == 3 and m.shape[2] == 1:
        m = m[:, :, 0]
    if m.shape != (h, w):
        raise ValueError(f"mask shape {m.shape} does not match the image size {(h, w)}")
    if n_classes:
        bad = sorted({int(v) for v in np.unique(m) if v < 0 or v > n_classes})
        if bad:
            raise ValueError(f"mask values {bad} are not class ids 0..{n_classes}")
        out = m.astype(np.uint8)
    else:
        out = np.where(m > 0, 255, 0).astype(np.uint8)
    if not out.any():
        raise ValueError("the defect mask is empty: paint the defect or mark a false alarm")
    return out


def save_label(
    dataset_dir: str | os.PathLike[str],
    image: NDArray[np.generic],
    mask: NDArray[np.generic] | None,
    *,
    name: str,
    kind: LabelKind = "defect",
    class_names: Sequence[str] = (),
) -> LabelPaths:
    """Save ``image`` and its mask as a new label of the dataset.

    Parameters
    ----------
    dataset_dir
        Dataset root; ``images/`` and ``masks/`` are created as needed.
    image
        The frame, HxW or HxWx3, uint8 or uint16 (16-bit is kept 16-bit in the PNG).
    mask
        HxW painted defect (any value > 0 is defect). Ignored, and may be None, for a false alarm.
    name
        Label name (e.g. the frame's file stem); characters other than letters, digits, ``.``,
        ``_`` and ``-`` become ``_``. A name in use gets ``_2``, ``_3``, ... appended.
    kind
        ``"defect"`` (mask must be non-empty) or ``"false_alarm"`` (all-zero mask written).
    class_names
        The model's defect classes when it has several: ``mask`` holds class ids (1 =
        ``class_names[0]``), written as they are, and ``classes.txt`` is written or checked.
        Empty (default): a binary 0 / 255 mask.

    Returns
    -------
    LabelPaths

    Raises
    ------
    ValueError
        Wrong dtype or shape, a mask of another size, an empty defect mask, an unknown kind,
        a value that is no class id, or class names that disagree with the dataset's.
    OSError
        The dataset folder cannot be written (nothing half-written is left behind).
    """
    if kind not in ("defect", "false_alarm"):
        raise ValueError(f"label kind must be 'defect' or 'false_alarm', not {kind!r}")
    image = np.asarray(image)
    _check_image(image)
    names = tuple(class_names)
    if len(names) > _MAX_CLASS_ID:
        raise ValueError(f"{len(names)} classes: a class-index mask holds at most {_MAX_CLASS_ID}")
    m = _mask_for(image, mask, kind, len(names))
    stem = _safe_name(name)
    png_image, png_mask = _encode(image, "image"), _encode(m, "mask")
    root = Path(dataset_dir)
    if kind == "defect":  # an all-zero mask reads the same in either kind of dataset
        if names:
            _ensure_classes(root, names)
        elif dataset_classes(root):
            raise ValueError(
                f"{root} is labelled with defect classes ({root / CLASSES_FILE}); a one-class "
                "label would be read as its first class: label with the multi-class model, or "
                "into another dataset folder"
            )
    images, masks = root / "images", root / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    for n in range(1, _MAX_TRIES):
        candidate = stem if n == 1 else f"{stem}_{n}"
        img_path, mask_path = images / f"{candidate}.png", masks / f"{candidate}.png"
        if mask_path.exists():  # a mask without its image still owns the name
            continue
        try:
            write_new_file(img_path, png_image)
        except FileExistsError:
            continue
        try:
            write_new_file(mask_path, png_mask)
        except FileExistsError:  # another writer took the mask name in between: move on
            img_path.unlink(missing_ok=True)
            continue
        except BaseException:
            img_path.unlink(missing_ok=True)
            raise
        return LabelPaths(img_path, mask_path, candidate, kind)
    raise OSError(f"{root}: no free label name for {stem!r} after {_MAX_TRIES} tries")


def dataset_classes(dataset_dir: str | os.PathLike[str]) -> tuple[str, ...]:
    """The class names of ``classes.txt`` (class 1 first), () when the dataset has none."""
    path = Path(dataset_dir) / CLASSES_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if lines and lines[0].lower() in ("background", "_background_", "bg", "__background__"):
        lines = lines[1:]  # the same reading as training.data.discovery
    return tuple(lines)


def _ensure_classes(root: Path, names: tuple[str, ...]) -> None:
    have = dataset_classes(root)
    if not have:
        binary = _first_binary_mask(root / "masks")
        if binary is not None:
            raise ValueError(
                f"{root} holds one-class masks (0 / 255, e.g. {binary.name}); class-index labels "
                "would mislabel them: give the multi-class recipe its own dataset folder"
            )
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(root / CLASSES_FILE, "".join(f"{n}\n" for n in names))
        return
    # a model with more classes than the dataset has seen may extend the list, never reorder it
    if have[: len(names)] != names[: len(have)]:
        raise ValueError(
            f"{root / CLASSES_FILE} lists classes {list(have)}, the model {list(names)}: "
            "label into a dataset of this model's classes (recipe dataset folder)"
        )
    if len(names) > len(have):
        atomic_write_text(root / CLASSES_FILE, "".join(f"{n}\n" for n in names))


def _first_binary_mask(masks_dir: Path) -> Path | None:
    """A mask with a value above the class ids (a 0 / 255 label), None when there is none."""
    if not masks_dir.is_dir():
        return None
    for p in sorted(masks_dir.iterdir()):
        if p.suffix.lower() in IMAGE_SUFFIXES:
            m = _read_mask(p)
            if m is not None and int(m.max(initial=0)) > _MAX_CLASS_ID:
                return p
    return None


def _read_mask(path: Path) -> NDArray[np.uint8] | None:
    try:
        mask = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_GRAYSCALE)
    except (OSError, cv2.error):
        return None
    return None if mask is None else np.asarray(mask, np.uint8)


def dataset_summary(dataset_dir: str | os.PathLike[str]) -> tuple[int, int, int]:
    """``(n_images, n_defective, n_normal)`` of an images+masks dataset.

    An image is defective when ``masks/<stem>.*`` exists and has a pixel > 127 (or, in a
    dataset with ``classes.txt``, a class id); no mask, an all-zero or an unreadable mask counts
    as normal. A missing dataset is ``(0, 0, 0)``.
    """
    root = Path(dataset_dir)
    images_dir, masks_dir = root / "images", root / "masks"
    if not images_dir.is_dir():
        return 0, 0, 0
    masks: dict[str, Path] = {}
    if masks_dir.is_dir():
        for p in masks_dir.iterdir():
            if p.suffix.lower() in IMAGE_SUFFIXES:
                masks.setdefault(p.stem, p)
    n_images = n_defective = 0
    low = 1 if dataset_classes(root) else 128  # class ids are small values
    for p in images_dir.iterdir():
        if p.suffix.lower() not in IMAGE_SUFFIXES or p.name.startswith("."):
            continue
        n_images += 1
        mask_path = masks.get(p.stem)
        if mask_path is not None:
            m = _read_mask(mask_path)
            if m is not None and bool(((m >= low) & ((m > 127) | (m <= _MAX_CLASS_ID))).any()):
                n_defective += 1
    return n_images, n_defective, n_images - n_defective

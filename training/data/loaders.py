"""Find image/mask pairs in the layouts users already have, with no conversion step.

Two layouts are recognised:

* **DAGM 2007**: ``ClassN/{Train,Test}/*.PNG`` with ``Label/Labels.txt`` and
  ``Label/NNNN_label.PNG``. ``--data`` may name ``ClassN`` (both splits) or one split folder.
* **images + masks**: any folder of images (grey or colour, 8 or 16 bit). For each image the mask
  is, in this order: in ``--masks DIR``; in a ``masks/`` folder beside ``images/`` (the layout the
  station's labelling writes) or inside the image folder; beside the image with a ``_mask`` /
  ``_label`` suffix or with the same stem and another extension. No mask = defect-free.

Sample names are paths relative to the dataset root, so a split file names the same images on any
machine.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

IMAGE_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")
MASK_SUFFIXES = ("_mask", "_label")
# When an image and its mask share a stem, the lossy/camera formats are the image and the PNG the
# mask (a mask saved as JPEG would not stay binary).
_IMAGE_PRIORITY = {".jpg": 0, ".jpeg": 0, ".bmp": 1, ".tif": 2, ".tiff": 2, ".png": 3}


class DatasetError(ValueError):
    """The dataset cannot be used as given (the message names the file and the problem)."""


@dataclass(frozen=True)
class Sample:
    """One image, its mask (None = defect-free) and whether it shows a defect."""

    name: str  # posix path relative to the dataset root; what split files record
    image_path: Path
    mask_path: Path | None
    defective: bool


def read_image(path: str | Path) -> NDArray:
    """Read an image unchanged (8 or 16 bit, grey or BGR); a clear error if unreadable."""
    data = np.fromfile(str(path), dtype=np.uint8)  # fromfile + imdecode copes with any path
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise DatasetError(f"{path}: not a readable image")
    if image.dtype not in (np.uint8, np.uint16):
        raise DatasetError(f"{path}: {image.dtype} pixels (expected 8 or 16 bit)")
    return image


def read_mask(path: str | Path, shape: tuple[int, int] | None = None) -> NDArray[np.bool_]:
    """Binary mask (pixel > half of full scale, i.e. > 127 for 8 bit) checked against ``shape``."""
    raw = read_image(path)
    if raw.ndim == 3:
        raw = raw.max(axis=2)  # a coloured annotation counts wherever any channel is painted
    full = 255 if raw.dtype == np.uint8 else 65535
    mask = raw > full // 2
    if shape is not None and mask.shape != tuple(shape):
        raise DatasetError(
            f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image is "
            f"{shape[1]}x{shape[0]} (width x height); masks must match their image pixel for pixel"
        )
    return mask


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def _dagm_roots(root: Path) -> list[Path]:
    if (root / "Label" / "Labels.txt").is_file():
        return [root]
    return [p for p in (root / "Train", root / "Test") if (p / "Label" / "Labels.txt").is_file()]


def _dagm_samples(root: Path, split_dir: Path) -> list[Sample]:
    labels = split_dir / "Label" / "Labels.txt"
    samples = []
    for lineno, line in enumerate(labels.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        # The first line is a header count; data lines read "id flag image 0 label-or-0".
        if len(parts) < 3 or not parts[2].lower().endswith(".png"):
            continue
        image_path = split_dir / parts[2]
        if not image_path.is_file():
            raise DatasetError(f"{labels}:{lineno}: {parts[2]} is listed but missing")
        defective = parts[1] == "1"
        mask_path = None
        if defective:
            if len(parts) < 5 or parts[4] == "0":
                raise DatasetError(f"{labels}:{lineno}: defective image without a label file")
            mask_path = split_dir / "Label" / parts[4]
            if not mask_path.is_file():
                raise DatasetError(f"{labels}:{lineno}: label file {parts[4]} is missing")
        name = image_path.relative_to(root).as_posix()
        samples.append(Sample(name, image_path, mask_path, defective))
    return samples


def _mask_dirs(image_dir: Path, masks: Path | None) -> list[Path]:
    if masks is not None:
        return [masks]
    return [d for d in (image_dir.parent / "masks", image_dir / "masks") if d.is_dir()]


def _find_exact(directory: Path, stem: str) -> Path | None:
    for ext in IMAGE_EXTENSIONS:
        for spelled in (ext, ext.upper()):
            if (path := directory / (stem + spelled)).is_file():
                return path
    return None


def _find_mask(directory: Path, stem: str) -> Path | None:
    """``stem.*``, ``stem_mask.*`` or ``stem_label.*`` in a mask folder."""
    for candidate in (stem, *(stem + s for s in MASK_SUFFIXES)):
        if (path := _find_exact(directory, candidate)) is not None:
            return path
    return None


def _folder_samples(root: Path, masks: Path | None) -> list[Sample]:
    image_dir = root / "images" if (root / "images").is_dir() else root
    files = sorted(p for p in image_dir.iterdir() if _is_image(p))
    by_stem: dict[str, list[Path]] = {}
    for path in files:
        if any(path.stem.lower().endswith(s) for s in MASK_SUFFIXES):
            continue  # a mask beside its image, not an image of its own
        by_stem.setdefault(path.stem, []).append(path)
    mask_dirs = _mask_dirs(image_dir, masks)
    samples = []
    for stem, group in sorted(by_stem.items()):
        group.sort(key=lambda p: _IMAGE_PRIORITY.get(p.suffix.lower(), 9))
        image_path = group[0]
        mask_path = next((m for d in mask_dirs if (m := _find_mask(d, stem)) is not None), None)
        if mask_path is None and len(group) > 1:
            mask_path = group[1]  # same stem, other extension, beside the image
        if mask_path is None:
            beside = (_find_exact(image_dir, stem + s) for s in MASK_SUFFIXES)
            mask_path = next((m for m in beside if m is not None), None)
        defective = False
        if mask_path is not None:
            shape = read_image(image_path).shape[:2]
            defective = bool(read_mask(mask_path, shape).any())
        name = image_path.relative_to(root).as_posix()
        samples.append(Sample(name, image_path, mask_path, defective))
    return samples


def find_samples(root: str | Path, masks: str | Path | None = None) -> list[Sample]:
    """All samples under ``root`` (DAGM layout if ``Label/Labels.txt`` is found, else folders).

    Raises
    ------
    DatasetError
        Missing folder, no images, unreadable files, or a mask whose size differs from its image.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found")
    mask_dir = Path(masks) if masks is not None else None
    if mask_dir is not None and not mask_dir.is_dir():
        raise DatasetError(f"{mask_dir}: mask folder not found")
    dagm = _dagm_roots(root) if mask_dir is None else []
    if dagm:
        samples = [s for split_dir in dagm for s in _dagm_samples(root, split_dir)]
    else:
        samples = _folder_samples(root, mask_dir)
    if not samples:
        raise DatasetError(f"{root}: no images found ({', '.join(IMAGE_EXTENSIONS)})")
    return samples


def select(samples: Iterable[Sample], names: Iterable[str]) -> list[Sample]:
    """The samples named in a split, in the split's order; missing names are an error."""
    by_name = {s.name: s for s in samples}
    wanted = list(names)
    missing = [n for n in wanted if n not in by_name]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DatasetError(f"{len(missing)} image(s) of the split are not in the dataset: {shown}")
    return [by_name[n] for n in wanted]

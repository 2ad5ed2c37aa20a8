"""QC validation set: run the model once over a labelled folder, then answer slider moves at once.

:meth:`ValidationSet.compute` (run it off the GUI thread) loads the images, runs
:func:`engines.predict.predict_maps` once in chunks and keeps the maps quantised to uint8 (a
quarter of the float32 memory). After that no inference happens: :meth:`~ValidationSet.table`,
:meth:`~ValidationSet.point` and :meth:`~ValidationSet.pr_curve` only threshold kept maps.

Resolution: probabilities are kept as ``round(255 * p)``, so thresholds resolve at 1/255: a pixel
counts at threshold ``t`` when ``round(255 * p) >= ceil(255 * t)``, which can differ from
``p >= t`` only for pixels within 1/255 of ``t``.

Speed: the decision at ``(t, min_area)`` is "largest blob at ``t`` >= ``min_area``" (the
conventions of :mod:`engines.scoring`), so per threshold level the set keeps one number per
image, the largest blob area. A level is computed once (one connected-components pass per image
that reaches it) and cached; the table's thresholds 0.1 ... 0.9 are computed during ``compute``.
Moving the minimum-area slider is then a vector comparison, and a new threshold costs one pass.

PR curve score: the largest blob area at the operating threshold. Sweeping a cut on that score is
sweeping the minimum area, so the operating point ``point(t, min_area)`` lies exactly on
``pr_curve(t)``. (The map's maximum probability would ignore the area rule the station applies.)

Folder layouts, recognised in this order:

- ``masks_dir`` given: images in ``folder`` (or ``folder/images``; names ending ``_label`` or
  ``_mask`` are taken for masks, not images), masks in ``masks_dir`` named
  like the image (``STEM.*``, ``STEM_label.*`` or ``STEM_mask.*``).
- images+masks: ``folder/images/NAME.*`` + ``folder/masks/NAME.*`` (what labelling writes).
- DAGM 2007: ``folder/*.PNG`` + ``folder/Label/NNNN_label.PNG``.
- plain: images in ``folder`` with masks beside them as ``STEM_label.*`` or ``STEM_mask.*``.

An image without a mask is defect-free; with a mask it is defective when a mask pixel is > 127.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from numpy.typing import NDArray

from engines.predict import predict_maps
from engines.protocol import Engine
from engines.scoring import DEFAULT_THRESHOLDS, ThresholdRow, confusion_row, image_score
from engines.scoring import pr_curve as _pr_curve

__all__ = ["ValidationCancelled", "ValidationSet", "find_pairs", "mask_is_defective"]

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg", ".tif", ".tiff")
_MASK_TAGS = ("_label", "_mask")


class ValidationCancelled(RuntimeError):
    """``cancel()`` returned True during :meth:`ValidationSet.compute`."""


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )  # fmt: skip


def _mask_index(folder: Path) -> dict[str, Path]:
    return {p.stem.lower(): p for p in _images_in(folder)} if folder.is_dir() else {}


def find_pairs(folder: Path, masks_dir: Path | None = None) -> list[tuple[Path, Path | None]]:
    """``(image, mask or None)`` pairs of a validation folder (layouts: see module docstring)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: validation folder not found")
    tags: tuple[str, ...]
    if masks_dir is not None:
        image_dir = folder / "images" if (folder / "images").is_dir() else folder
        images = [p for p in _images_in(image_dir) if not p.stem.lower().endswith(_MASK_TAGS)]
        masks, tags = _mask_index(Path(masks_dir)), ("", *_MASK_TAGS)
    elif (folder / "images").is_dir():
        images, masks, tags = _images_in(folder / "images"), _mask_index(folder / "masks"), ("",)
    elif (folder / "Label").is_dir():
        images, masks, tags = _images_in(folder), _mask_index(folder / "Label"), _MASK_TAGS
    else:
        images = [
            p for p in _images_in(folder) if not p.stem.lower().endswith(_MASK_TAGS)
        ]  # fmt: skip
        masks, tags = _mask_index(folder), _MASK_TAGS
    pairs = []
    for image in images:
        stem = image.stem.lower()
        mask = next((masks[stem + t] for t in tags if stem + t in masks), None)
        pairs.append((image, mask))
    return pairs


def _read(path: Path, flags: int) -> NDArray[Any] | None:
    try:
        return cv2.imdecode(np.fromfile(path, np.uint8), flags)
    except (OSError, cv2.error):
        return None


def mask_is_defective(path: Path) -> bool:
    """True when the mask file has a pixel > 127 (an unreadable mask counts as defect-free)."""
    mask = _read(path, cv2.IMREAD_GRAYSCALE)
    return mask is not None and bool((mask > 127).any())


def _quantise(prob: NDArray[np.float32]) -> NDArray[np.uint8]:
    p = np.nan_to_num(np.asarray(prob, np.float32), nan=0.0, posinf=1.0, neginf=0.0)
    return np.rint(np.clip(p, 0.0, 1.0) * 255.0).astype(np.uint8)


def _level(threshold: float) -> int:
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], not {threshold}")
    return min(255, max(1, math.ceil(threshold * 255.0 - 1e-9)))


@dataclass(eq=False)  # holds arrays: compare by identity
class ValidationSet:
    """Labelled images with their kept (quantised) probability maps. Build with :meth:`compute`.

    Not thread-safe: compute it on a worker, then query it from one thread (the GUI's).
    """

    paths: list[Path]
    labels: NDArray[np.bool_]  # True = the image truly has a defect
    maps: list[NDArray[np.uint8]]  # round(255 * probability), frame resolution
    model_id: str = ""
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # unreadable inputs and why
    _peak: NDArray[np.int64] = field(init=False, repr=False)
    _largest: dict[int, NDArray[np.int64]] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=bool).reshape(-1)
        if not (len(self.paths) == self.labels.size == len(self.maps)):
            raise ValueError("paths, labels and maps must have the same length")
        self._peak = np.array([int(q.max()) if q.size else 0 for q in self.maps], np.int64)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def n_defective(self) -> int:
        return int(self.labels.sum())

    @classmethod
    def compute(
        cls,
        engine: Engine,
        folder: str | Path,
        *,
        masks_dir: str | Path | None = None,
        progress: Callable[[int, int], None] | None = None,
        cancel: Callable[[], bool] | None = None,
        chunk: int = 8,
    ) -> ValidationSet:
        """Load a labelled folder and run the model once over it.

        Parameters
        ----------
        engine
            Loaded engine (its card drives preprocessing and tiling).
        folder, masks_dir
            The validation images and their masks (layouts: see the module docstring).
        progress
            Called as ``progress(done, total)`` after each chunk of images (and once at 0).
        cancel
            Checked between chunks; when it returns True, :class:`ValidationCancelled` is raised.
        chunk
            Images per :func:`~engines.predict.predict_maps` call (bounds memory).

        Raises
        ------
        FileNotFoundError
            The folder does not exist.
        ValueError
            No readable image in the folder.
        ValidationCancelled
            ``cancel()`` returned True.
        """
        pairs = find_pairs(Path(folder), None if masks_dir is None else Path(masks_dir))
        total = len(pairs)
        paths: list[Path] = []
        labels: list[bool] = []
        maps: list[NDArray[np.uint8]] = []
        skipped: list[tuple[Path, str]] = []
        if progress is not None:
            progress(0, total)
        for start in range(0, total, max(1, chunk)):
            if cancel is not None and cancel():
                raise ValidationCancelled(f"validation of {folder} cancelled")
            images, chunk_paths, chunk_labels = [], [], []
            for image_path, mask_path in pairs[start : start + chunk]:
                image = _read(image_path, cv2.IMREAD_UNCHANGED)
                if image is None or image.dtype not in (np.uint8, np.uint16):
                    skipped.append((image_path, "unreadable or unsupported image"))
                    continue
                label = False
                if mask_path is not None:
                    mask = _read(mask_path, cv2.IMREAD_GRAYSCALE)
                    if mask is None:
                        skipped.append((image_path, f"mask {mask_path.name} unreadable"))
                        continue
                    label = bool((mask > 127).any())
                images.append(image)
                chunk_paths.append(image_path)
                chunk_labels.append(label)
            if images:
                maps.extend(_quantise(p) for p in predict_maps(engine, images))
                paths.extend(chunk_paths)
                labels.extend(chunk_labels)
            if progress is not None:
                progress(min(start + chunk, total), total)
        for path, why in skipped:
            log.warning("validation: skipped %s: %s", path, why)
        if not paths:
            raise ValueError(f"{folder}: no readable validation image found")
        vs = cls(paths, np.array(labels, bool), maps, engine.card.model_id, skipped)
        for t in DEFAULT_THRESHOLDS:  # the table's first display needs no pass on the GUI thread
            vs.largest_blobs(t)
        return vs

    def largest_blobs(self, threshold: float) -> NDArray[np.int64]:
        """Area of the largest blob per image at ``threshold`` (0 = no blob); cached per level."""
        level = _level(threshold)
        cached = self._largest.get(level)
        if cached is None:
            cached = np.array(
                [image_score(q, level) if peak >= level else 0
                 for q, peak in zip(self.maps, self._peak, strict=True)],
                np.int64,
            )  # fmt: skip
            self._largest[level] = cached
        return cached

    def decisions(self, threshold: float, min_area: int) -> NDArray[np.bool_]:
        """Per image: flagged defective at ``(threshold, min_area)``."""
        return self.largest_blobs(threshold) >= max(1, int(min_area))

    def point(self, threshold: float, min_area: int = 0) -> ThresholdRow:
        """Confusion counts and rates at one operating point."""
        return confusion_row(threshold, self.decisions(threshold, min_area), self.labels)

    def table(
        self, min_area: int = 0, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
    ) -> list[ThresholdRow]:
        """One :class:`~engines.scoring.ThresholdRow` per threshold (default 0.1 ... 0.9)."""
        return [self.point(t, min_area) for t in thresholds]

    def pr_curve(self, threshold: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """``(precision, recall)`` swept over the minimum area at ``threshold``.

        Scores are the largest blob area per image (see the module docstring); the curve follows
        :func:`engines.scoring.pr_curve` (scikit-learn's definition, ending at precision 1,
        recall 0). ``point(threshold, m)`` for any ``m >= 1`` is a point of it.
        """
        precision, recall, _ = _pr_curve(self.largest_blobs(threshold), self.labels)
        return precision, recall

    def prob_map(self, index: int) -> NDArray[np.float32]:
        """The kept probability map of image ``index`` as float32 in [0, 1]."""
        return self.maps[index].astype(np.float32) / 255.0

"""Where the images and masks are, in each dataset layout users already have (no pixels read here).

Each reader walks one layout and returns :class:`Pair` s (image, mask or None, class from the
folder, split from the folder) and the :class:`Problem` s it saw on the way (masks without an
image, images listed but missing). :mod:`training.data.discovery` picks the layout, reads the
pixels and turns pairs into :class:`Sample` s. Sample names are posix paths relative to the dataset
root, so a split file names the same images on any machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from numpy.typing import NDArray

from training.data.masks import DatasetError, MaskKind, read_image, read_labels, read_mask

__all__ = [
    "IMAGE_EXTENSIONS",
    "DatasetError",
    "Pair",
    "Problem",
    "Sample",
    "read_image",
    "read_mask",
    "select",
]

IMAGE_EXTENSIONS = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")
MASK_SUFFIXES = ("_label", "_mask", "_gt")
# When an image and its mask share a stem, the lossy/camera formats are the image and the PNG the
# mask (a mask saved as JPEG would not stay binary).
_IMAGE_PRIORITY = {".jpg": 0, ".jpeg": 0, ".bmp": 1, ".tif": 2, ".tiff": 2, ".png": 3}
IMAGE_TREES = ("images", "image", "imgs", "img", "img_dir", "jpegimages")
MASK_TREES = (
    "masks", "mask", "labels", "label", "ann_dir", "annotations", "groundtruth", "ground_truth",
    "gt", "segmentationclass",
)  # fmt: skip
SPLIT_DIRS = {
    "train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
    "test": "test", "testing": "test",
}  # fmt: skip
# A class folder with one of these names (or ending in _NAME / -NAME) holds defect-free images.
FREE_NAMES = ("free", "good", "ok", "normal", "defect_free", "defect-free", "nodefect", "no_defect")


@dataclass(frozen=True)
class Sample:
    """One image, its mask (None = defect-free) and what the data says about it."""

    name: str  # posix path relative to the dataset root; what split files record
    image_path: Path
    mask_path: Path | None
    defective: bool
    classes: tuple[str, ...] = ()  # defect classes present in the mask
    split: str | None = None  # "train" / "val" / "test" when the data's folders say so
    shape: tuple[int, int] | None = None  # image (height, width)
    foreground: int = 1  # class id of the defect pixels of a one-class (binary/soft) mask
    mask_kind: MaskKind | None = None  # the dataset's mask kind (see training.data.masks)

    def labels(self, shape: tuple[int, int] | None = None) -> NDArray[np.uint8]:
        """Class ids of the mask (0 = background), zeros for a defect-free image."""
        shape = shape or self.shape
        if self.mask_path is None:
            if shape is None:
                shape = read_image(self.image_path).shape[:2]
            return np.zeros(shape, np.uint8)
        return read_labels(self.mask_path, shape, kind=self.mask_kind, foreground=self.foreground)


@dataclass(frozen=True)
class Problem:
    """Something wrong with the data, with the file it concerns and what to do."""

    kind: str  # e.g. "unreadable_image", "size_mismatch", "mask_without_image", "empty_mask"
    file: str  # path relative to the dataset root when it is inside it
    message: str
    blocking: bool = False  # True: training refuses the data until it is fixed

    def line(self) -> str:
        return f"{self.file}: {self.message}"


@dataclass(frozen=True)
class Pair:
    """An image and where its mask is, before any pixel is read."""

    image: Path
    mask: Path | None
    label: str | None = None  # class named by the folder; None = not given (or defect-free)
    free: bool = False  # the folder says defect-free
    split: str | None = None
    listed_defective: bool | None = None  # DAGM's Labels.txt flag


def rel(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def is_free_name(name: str) -> bool:
    low = name.lower()
    return low in FREE_NAMES or any(low.endswith(sep + f) for f in FREE_NAMES for sep in "_- ")


def split_of(relative: str) -> str | None:
    """The split named by the first train/val/test folder of a relative path."""
    for part in PurePosixPath(relative).parts[:-1]:
        if (s := SPLIT_DIRS.get(part.lower())) is not None:
            return s
    return None


def _mask_base(stem: str) -> str | None:
    low = stem.lower()
    for suffix in MASK_SUFFIXES:
        if low.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return None


def child_dir(directory: Path, names: Iterable[str]) -> Path | None:
    """The first child folder whose lower-case name is in ``names`` (in ``names``' order)."""
    try:
        children = {p.name.lower(): p for p in directory.iterdir() if p.is_dir()}
    except OSError:
        return None
    return next((children[n] for n in names if n in children), None)


def _walk_images(top: Path, skip: set[Path]) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(top):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and here / d not in skip)
        found += [here / f for f in sorted(filenames) if is_image_file(here / f)]
    return found


# ----------------------------------------------------------------------------------- beside
def beside_pairs(
    root: Path, top: Path | None = None, label: str | None = None, free: bool = False
) -> tuple[list[Pair], list[Problem]]:
    """Images anywhere under ``top`` with masks beside them (``x.jpg`` + ``x.png`` or
    ``x_label.*`` / ``x_mask.*`` / ``x_gt.*``), or in a ``masks/`` (``labels/`` ...) child folder.
    """
    top = top or root
    pairs: list[Pair] = []
    problems: list[Problem] = []
    by_dir: dict[Path, list[Path]] = {}
    mask_trees: dict[Path, Path] = {}
    for dirpath, dirnames, _ in os.walk(top):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        tree = child_dir(here, MASK_TREES)
        if tree is not None and child_dir(here, IMAGE_TREES) is None:
            mask_trees[here] = tree
            dirnames[:] = [d for d in dirnames if here / d != tree]
    for path in _walk_images(top, set(mask_trees.values())):
        by_dir.setdefault(path.parent, []).append(path)
    for directory, files in sorted(by_dir.items()):
        tree_index = _index_tree(mask_trees[directory]) if directory in mask_trees else None
        used: set[Path] = set()
        groups: dict[str, list[Path]] = {}
        suffixed: dict[str, Path] = {}
        for path in files:
            base = _mask_base(path.stem)
            if base is not None:
                suffixed.setdefault(base, path)
            else:
                groups.setdefault(path.stem, []).append(path)
        for stem, group in sorted(groups.items()):
            group.sort(key=lambda p: _IMAGE_PRIORITY.get(p.suffix.lower(), 9))
            image, mask = group[0], None
            if tree_index is not None:
                mask = tree_index.lookup("", stem)
            if mask is None and stem in suffixed:
                mask = suffixed[stem]
            if mask is None and len(group) > 1:
                mask = group[1]  # same stem, other extension, beside the image
            problems += [_ambiguous(root, x, image, mask) for x in group[1:] if x != mask]
            if mask is not None:
                used.add(mask)
            s = split_of(rel(root, image))
            pairs.append(Pair(image, mask, label, free, s))
        for base, mask in sorted(suffixed.items()):
            if mask not in used:
                problems.append(_orphan(root, mask, f"no {base}.* beside it"))
        if tree_index is not None:
            problems += tree_index.orphans(root, used)
    return pairs, problems


def _ambiguous(root: Path, extra: Path, image: Path, mask: Path | None) -> Problem:
    taken = f"image {image.name}, mask {mask.name}" if mask is not None else f"image {image.name}"
    return Problem(
        "ambiguous",
        rel(root, extra),
        f"another file with the same stem ({taken}): ignored; rename it (one image and one "
        "mask per stem)",
    )


def _orphan(root: Path, mask: Path, wanted: str) -> Problem:
    return Problem(
        "mask_without_image",
        rel(root, mask),
        f"mask without an image ({wanted}): ignored; add the image or remove the mask",
    )


# ------------------------------------------------------------------------- parallel trees
@dataclass
class _MaskIndex:
    """Mask files of a tree by (relative folder, image stem without the mask suffix)."""

    by_key: dict[tuple[str, str], Path]
    by_stem: dict[str, list[Path]]

    def lookup(self, parent: str, stem: str) -> Path | None:
        if (hit := self.by_key.get((parent, stem))) is not None:
            return hit
        same = self.by_stem.get(stem, [])  # a flat mask folder for nested images
        return same[0] if len(same) == 1 else None

    def orphans(self, root: Path, used: set[Path]) -> list[Problem]:
        return [
            _orphan(root, p, f"no {parent + '/' if parent else ''}{stem}.* in the image folder")
            for (parent, stem), p in sorted(self.by_key.items())
            if p not in used
        ]


def _index_tree(tree: Path | None) -> _MaskIndex:
    by_key: dict[tuple[str, str], Path] = {}
    for path in _walk_images(tree, set()) if tree is not None else []:
        parent = path.parent.relative_to(tree).as_posix()  # type: ignore[arg-type]  # the loop is empty when tree is None
        key = ("" if parent == "." else parent, _mask_base(path.stem) or path.stem)
        if key not in by_key or path.suffix.lower() == ".png":
            by_key[key] = path
    by_stem: dict[str, list[Path]] = {}
    for (_, stem), path in by_key.items():
        by_stem.setdefault(stem, []).append(path)
    return _MaskIndex(by_key, by_stem)


def find_tree_pair(directory: Path) -> tuple[Path, Path] | None:
    """``(images, masks)`` child folders (``img_dir/ann_dir``, ``Images/GroundTruth`` ...)."""
    images, masks = child_dir(directory, IMAGE_TREES), child_dir(directory, MASK_TREES)
    return (images, masks) if images is not None and masks is not None else None


def parallel_pairs(
    root: Path, image_tree: Path, mask_tree: Path, label: str | None = None, free: bool = False
) -> tuple[list[Pair], list[Problem]]:
    """``images/…`` + ``masks/…`` with the same relative paths (mask: same stem or a suffix)."""
    index = _index_tree(mask_tree)
    pairs, used = [], set()
    skip = {mask_tree} if mask_tree.is_relative_to(image_tree) else set()
    for image in _walk_images(image_tree, skip):
        parent = image.parent.relative_to(image_tree).as_posix()
        mask = index.lookup("" if parent == "." else parent, image.stem)
        if mask is not None:
            used.add(mask)
        pairs.append(Pair(image, mask, label, free, split_of(rel(root, image))))
    return pairs, index.orphans(root, used)


# --------------------------------------------------------------------------------- DAGM 2007
def dagm_roots(root: Path) -> list[Path]:
    if (root / "Label" / "Labels.txt").is_file():
        return [root]
    return [p for p in (root / "Train", root / "Test") if (p / "Label" / "Labels.txt").is_file()]


def dagm_pairs(root: Path) -> tuple[list[Pair], list[Problem]]:
    """``ClassN/{Train,Test}/*.PNG`` in ``Label/Labels.txt``, masks ``Label/*_label.PNG``."""
    pairs: list[Pair] = []
    problems: list[Problem] = []
    for split_dir in dagm_roots(root):
        labels = split_dir / "Label" / "Labels.txt"
        split = SPLIT_DIRS.get(split_dir.name.lower()) if split_dir != root else None
        listed: set[Path] = set()
        for lineno, line in enumerate(labels.read_text(encoding="utf-8").splitlines(), 1):
            parts = line.split()
            # The first line is a header count; data lines read "id flag image 0 label-or-0".
            if len(parts) < 3 or not parts[2].lower().endswith(".png"):
                continue
            where = f"{rel(root, labels)}:{lineno}"
            image = split_dir / parts[2]
            if not image.is_file():
                problems.append(
                    Problem("missing_image", where, f"{parts[2]} is listed but missing", True)
                )
                continue
            defective = parts[1] == "1"
            mask = None
            if defective:
                if len(parts) < 5 or parts[4] == "0":
                    problems.append(
                        Problem("no_mask", where, "defective image without a label file: ignored")
                    )
                    continue
                mask = split_dir / "Label" / parts[4]
                if not mask.is_file():
                    problems.append(
                        Problem("missing_mask", where, f"label file {parts[4]} is missing", True)
                    )
                    continue
                listed.add(mask)
            pairs.append(Pair(image, mask, None, not defective, split, defective))
        for extra in sorted((split_dir / "Label").glob("*_label.*")):
            if extra not in listed and is_image_file(extra):
                problems.append(_orphan(root, extra, "not listed in Labels.txt"))
    return pairs, problems


# ----------------------------------------------------------------------------------- MVTec AD
def is_mvtec_category(directory: Path) -> bool:
    return (directory / "train" / "good").is_dir() and (directory / "test").is_dir()


def mvtec_pairs(root: Path) -> tuple[list[Pair], list[Problem]]:
    """``CATEGORY/train/good``, ``CATEGORY/test/TYPE``, ``CATEGORY/ground_truth/TYPE/*_mask.png``.

    ``root`` is one category or the folder of all categories (classes are then ``CATEGORY/TYPE``).
    """
    single = is_mvtec_category(root)
    categories = [root] if single else sorted(p for p in root.iterdir() if is_mvtec_category(p))
    pairs: list[Pair] = []
    problems: list[Problem] = []
    for cat in categories:
        for split in ("train", "test"):
            if not (cat / split).is_dir():
                continue
            for kind_dir in sorted(p for p in (cat / split).iterdir() if p.is_dir()):
                free = kind_dir.name.lower() == "good"
                label = (
                    None if free else (kind_dir.name if single else f"{cat.name}/{kind_dir.name}")
                )
                gt = cat / "ground_truth" / kind_dir.name
                index = _index_tree(None if free or not gt.is_dir() else gt)
                used: set[Path] = set()
                for image in _walk_images(kind_dir, set()):
                    mask = None if free else index.lookup("", image.stem)
                    if mask is not None:
                        used.add(mask)
                    pairs.append(Pair(image, mask, label, free, split))
                problems += index.orphans(root, used)
    return pairs, problems


# ------------------------------------------------------------------------------ class folders
def class_folders(directory: Path) -> list[Path]:
    """Sub-folders of ``directory`` that are classes: at least two, one of them defect-free."""
    subs = sorted(p for p in directory.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(subs) >= 2 and any(is_free_name(p.name) for p in subs):
        return subs
    return []


def class_folder_pairs(root: Path, top: Path) -> tuple[list[Pair], list[Problem]]:
    """One folder per defect class (``MT_Crack/…``, ``MT_Free/…``), masks inside as usual."""
    pairs: list[Pair] = []
    problems: list[Problem] = []
    for folder in class_folders(top):
        free = is_free_name(folder.name)
        label = None if free else folder.name
        trees = find_tree_pair(folder)
        if trees is not None:
            p, q = parallel_pairs(root, *trees, label=label, free=free)
        else:
            p, q = beside_pairs(root, folder, label=label, free=free)
        pairs += p
        problems += q
    for stray in sorted(p for p in top.iterdir() if p.is_file() and is_image_file(p)):
        problems.append(
            Problem("outside_classes", rel(root, stray), "image outside the class folders: ignored")
        )
    return pairs, problems


def select(samples: Iterable[Sample], names: Iterable[str]) -> list[Sample]:
    """The samples named in a split, in the split's order; missing names are an error."""
    by_name = {s.name: s for s in samples}
    wanted = list(names)
    missing = [n for n in wanted if n not in by_name]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise DatasetError(f"{len(missing)} image(s) of the split are not in the dataset: {shown}")
    return [by_name[n] for n in wanted]

"""Dataset discovery: one module that finds images, masks, classes and splits in any layout.

Training, evaluation, ``python -m training data`` and the station's Validation and Label
workspaces all call :func:`discover` (or :func:`find_samples`), so they agree on what a dataset
holds. It needs numpy, OpenCV and Pillow only (no TensorFlow): the station may import it.

Layouts (auto-detected in this order, or forced with ``layout=``):

* ``dagm``: DAGM 2007, ``ClassN/{Train,Test}/*.PNG`` + ``Label/Labels.txt`` + ``Label/*_label.PNG``;
* ``mvtec``: MVTec AD, ``CATEGORY/train/good``, ``CATEGORY/test/TYPE``,
  ``CATEGORY/ground_truth/TYPE/*_mask.png`` (one category or the folder of all of them);
* ``parallel``: ``images/…`` + ``masks/…`` (``img_dir/ann_dir``, ``Images/GroundTruth`` …) with
  the same relative paths, at the root or inside ``train/ val/ test/`` folders;
* ``class_folders``: one folder per defect class (``MT_Crack/…``) beside a defect-free one (a name
  such as ``Free``, ``good``, ``OK``, ``MT_Free``); the folder name is the class;
* ``beside``: images anywhere below the root with their masks beside them (``x.jpg`` + ``x.png``,
  ``PartK.jpg`` + ``PartK_label.bmp``, suffixes ``_label``, ``_mask``, ``_gt``) or in a ``masks/``
  child folder. Folders that are not classes (one per part, say) only group images.

A split given by the data (``train/``, ``val/``, ``test/`` folders, DAGM's ``Train/Test``, MVTec's
``train/test``) is recorded on every sample; :func:`training.data.split.make_split` uses it as is.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from training.data.loaders import (
    IMAGE_EXTENSIONS,
    IMAGE_TREES,
    MASK_TREES,
    SPLIT_DIRS,
    Pair,
    Problem,
    Sample,
    beside_pairs,
    child_dir,
    class_folder_pairs,
    class_folders,
    dagm_pairs,
    dagm_roots,
    find_tree_pair,
    is_mvtec_category,
    mvtec_pairs,
    parallel_pairs,
    rel,
)
from training.data.masks import (
    CLASS_INDEX_MAX,
    VOID_INDEX,
    DatasetError,
    ImageInfo,
    MaskKind,
    MaskValues,
    image_info,
    read_mask_values,
    to_labels,
)
from training.data.split import given_split

__all__ = [
    "LAYOUTS",
    "Dataset",
    "DatasetError",
    "Problem",
    "Sample",
    "detect_layout",
    "discover",
    "find_samples",
]

log = logging.getLogger("training.data")

Layout = Literal["dagm", "mvtec", "parallel", "class_folders", "beside"]
LAYOUTS: tuple[Layout, ...] = ("dagm", "mvtec", "parallel", "class_folders", "beside")
# Decoded masks are kept for the second pass up to this many bytes, re-read beyond it.
_KEEP_BYTES = 256 * 2**20
_BACKGROUND_NAMES = ("background", "_background_", "bg", "__background__")


@dataclass(frozen=True)
class Dataset:
    """What :func:`discover` found: the usable samples, the classes and every problem."""

    root: Path
    layout: Layout
    samples: list[Sample]
    classes: list[str]  # class id i + 1 is classes[i]; 0 is background
    mask_kind: MaskKind | Literal["none"]
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    class_pixels: dict[str, int] = field(default_factory=dict)
    image_kinds: dict[str, int] = field(default_factory=dict)

    @property
    def split_given(self) -> bool:
        return given_split(self.samples)

    @property
    def blocking(self) -> list[Problem]:
        return [p for p in self.problems if p.blocking]

    def summary(self) -> dict[str, Any]:
        """Everything ``python -m training data`` prints, as JSON-ready values."""
        samples = self.samples
        sizes: Counter[tuple[int, int]] = Counter(
            (s.shape[1], s.shape[0]) for s in samples if s.shape is not None
        )
        classes = []
        for i, name in enumerate(self.classes, 1):
            n = sum(1 for s in samples if name in s.classes)
            classes.append(
                {"id": i, "name": name, "images": n, "pixels": self.class_pixels.get(name, 0)}
            )
        parts: dict[str, dict[str, int]] = {}
        for s in samples:
            part = parts.setdefault(s.split or "unsplit", {"images": 0, "defective": 0})
            part["images"] += 1
            part["defective"] += int(s.defective)
        areas = [w * h for w, h in sizes.elements()]
        smallest = min(sizes, key=lambda wh: wh[0] * wh[1]) if sizes else None
        largest = max(sizes, key=lambda wh: wh[0] * wh[1]) if sizes else None
        return {
            "root": str(self.root),
            "layout": self.layout,
            "images": len(samples),
            "defective": sum(1 for s in samples if s.defective),
            "defect_free": sum(1 for s in samples if not s.defective),
            "mask_kind": self.mask_kind,
            "classes": classes,
            "image_sizes": {
                "distinct": len(sizes),
                "smallest": list(smallest) if smallest else None,
                "largest": list(largest) if largest else None,
                "median_pixels": int(np.median(areas)) if areas else 0,
                "most_common": [[w, h, n] for (w, h), n in sizes.most_common(5)],
            },
            "image_kinds": dict(self.image_kinds),
            "split": {"given": self.split_given, "parts": parts},
            "problems": [
                {"kind": p.kind, "file": p.file, "message": p.message, "blocking": p.blocking}
                for p in self.problems
            ],
            "notes": list(self.notes),
        }


# ------------------------------------------------------------------------------- layouts
def _split_children(root: Path) -> list[tuple[str, Path]]:
    try:
        kids = sorted(p for p in root.iterdir() if p.is_dir())
    except OSError:
        return []
    return [(SPLIT_DIRS[p.name.lower()], p) for p in kids if p.name.lower() in SPLIT_DIRS]


def _sibling_tree(root: Path) -> Path | None:
    """``root`` is ``DATASET/images`` and ``DATASET/masks`` exists (``--data DATASET/images``)."""
    if root.name.lower() in IMAGE_TREES:
        return child_dir(root.parent, MASK_TREES)
    return None


def detect_layout(root: Path) -> Layout:
    """The layout of ``root`` (see the module docstring for the order)."""
    if dagm_roots(root):
        return "dagm"
    children = [p for p in root.iterdir() if p.is_dir()]
    if is_mvtec_category(root) or any(is_mvtec_category(p) for p in children):
        return "mvtec"
    splits = _split_children(root)
    if find_tree_pair(root) or _sibling_tree(root) or any(find_tree_pair(p) for _, p in splits):
        return "parallel"
    if class_folders(root) or any(class_folders(p) for _, p in splits):
        return "class_folders"
    return "beside"


def _pairs(root: Path, layout: Layout, masks: Path | None) -> tuple[list[Pair], list[Problem]]:
    if masks is not None:  # an explicit mask folder: the images are the root (or root/images)
        images = child_dir(root, IMAGE_TREES) or root
        return parallel_pairs(root, images, masks)
    if layout == "dagm":
        if not dagm_roots(root):
            raise DatasetError(f"{root}: no Label/Labels.txt here or in Train/, Test/ (DAGM 2007)")
        return dagm_pairs(root)
    if layout == "mvtec":
        return mvtec_pairs(root)
    if layout == "beside":
        return beside_pairs(root)
    tops = [root, *(p for _, p in _split_children(root))]
    pairs: list[Pair] = []
    problems: list[Problem] = []
    for top in tops:
        if layout == "parallel":
            trees = find_tree_pair(top)
            if trees is None and top == root and (sibling := _sibling_tree(root)) is not None:
                trees = (root, sibling)
            if trees is not None:
                p, q = parallel_pairs(root, *trees)
                pairs, problems = pairs + p, problems + q
        elif class_folders(top):
            p, q = class_folder_pairs(root, top)
            pairs, problems = pairs + p, problems + q
    if not pairs and layout == "parallel":
        raise DatasetError(
            f"{root}: no image and mask folders side by side (one of {', '.join(IMAGE_TREES)} "
            f"beside one of {', '.join(MASK_TREES)}); use --layout beside for masks beside images"
        )
    if not pairs and layout == "class_folders":
        raise DatasetError(
            f"{root}: no class folders (at least two sub-folders, one defect-free such as Free, "
            "good or OK)"
        )
    return pairs, problems


# ----------------------------------------------------------------------------- pixels
@dataclass
class _Record:
    pair: Pair
    info: ImageInfo
    mask: MaskValues | None  # None when there is no mask or it was dropped to save memory


def _read_all(
    root: Path, pairs: list[Pair], verify: bool
) -> tuple[list[_Record], list[Problem], dict[Path, tuple[MaskKind, tuple[int, ...]]]]:
    records, problems = [], []
    kinds: dict[Path, tuple[MaskKind, tuple[int, ...]]] = {}
    kept = 0
    for pair in pairs:
        try:
            info = image_info(pair.image, decode=verify)
        except DatasetError as exc:
            msg = str(exc).removeprefix(f"{pair.image}: ")
            fix = "replace or remove the file"
            problems.append(
                Problem("unreadable_image", rel(root, pair.image), f"{msg}; {fix}", True)
            )
            continue
        mask = None
        if pair.mask is not None:
            try:
                mask = read_mask_values(pair.mask)
            except DatasetError as exc:
                msg = str(exc).removeprefix(f"{pair.mask}: ")
                problems.append(
                    Problem(
                        "unreadable_mask",
                        rel(root, pair.mask),
                        f"{msg}; replace or remove the mask",
                        True,
                    )
                )
                continue
            got = mask.values.shape
            if got != info.shape:
                problems.append(
                    Problem(
                        "size_mismatch",
                        rel(root, pair.mask),
                        f"mask is {got[1]}x{got[0]} but its image is {info.shape[1]}x"
                        f"{info.shape[0]} (width x height; image {rel(root, pair.image)}); "
                        "masks must match their image pixel for pixel",
                        True,
                    )
                )
                continue
            kinds[pair.mask] = (mask.kind, mask.ids)
            if not mask.ids:
                mask = None  # all background: nothing to keep
            elif kept + mask.values.nbytes <= _KEEP_BYTES:
                kept += mask.values.nbytes
            else:
                mask = None
        records.append(_Record(pair, info, mask))
    return records, problems, kinds


def _dataset_kind(
    kinds: dict[Path, tuple[MaskKind, tuple[int, ...]]],
) -> MaskKind | Literal["none"]:
    """One mask kind for the dataset: a file holding one value (``{0, 3}``) is binary on its own,
    but class-index when other files hold other small values."""
    palette: set[int] = set()
    small: set[int] = set()
    seen: set[str] = set()
    for kind, ids in kinds.values():
        if not ids:
            continue
        seen.add(kind)
        if kind == "palette":
            palette.update(ids)
        elif kind == "class_index" or (kind == "binary" and ids[0] <= CLASS_INDEX_MAX):
            small.update(ids)
    if "class_index" in seen or len(small) > 1:
        return "class_index"
    if len(palette - {VOID_INDEX}) > 1:
        return "palette"
    if "soft" in seen:
        return "soft"
    return "binary" if seen else "none"


def _class_names(
    root: Path,
    records: list[_Record],
    kind: str,
    kinds: dict[Path, tuple[MaskKind, tuple[int, ...]]],
) -> tuple[list[str], list[str]]:
    notes: list[str] = []
    labels = sorted({r.pair.label for r in records if r.pair.label is not None})
    if kind not in ("palette", "class_index"):
        return (labels or ["defect"]), notes
    top = max((i for _, ids in kinds.values() for i in ids if i <= CLASS_INDEX_MAX), default=1)
    names = [f"class{i}" for i in range(1, top + 1)]
    listed = root / "classes.txt"
    if listed.is_file():
        lines = [ln.strip() for ln in listed.read_text(encoding="utf-8").splitlines() if ln.strip()]
        if lines and lines[0].lower() in _BACKGROUND_NAMES:
            lines = lines[1:]
        names = lines + names[len(lines) :]
        notes.append(f"class names from {listed.name}")
    if labels:
        notes.append(
            "masks carry class ids, so the classes come from the mask values, not from the folders"
        )
    return names, notes


def discover(
    root: str | Path,
    *,
    masks: str | Path | None = None,
    layout: Layout | Literal["auto"] = "auto",
    verify: bool = False,
) -> Dataset:
    """Find every sample under ``root``; problems are returned, not raised.

    ``verify`` decodes every image (slower) instead of reading its header only, so truncated
    files are reported here rather than when training reads them. Raises :class:`DatasetError`
    only when ``root`` (or ``masks``) is missing or a forced ``layout`` does not fit at all.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found (check the path)")
    mask_dir = Path(masks) if masks is not None else None
    if mask_dir is not None and not mask_dir.is_dir():
        raise DatasetError(f"{mask_dir}: mask folder not found (check --masks)")
    if layout != "auto" and layout not in LAYOUTS:
        raise DatasetError(f"unknown layout {layout!r}: use one of auto, {', '.join(LAYOUTS)}")
    chosen: Layout = "parallel" if mask_dir is not None else (
        detect_layout(root) if layout == "auto" else layout
    )  # fmt: skip
    pairs, problems = _pairs(root, chosen, mask_dir)
    records, read_problems, kinds = _read_all(root, pairs, verify)
    problems += read_problems
    kind = _dataset_kind(kinds)
    if kind == "binary" and (root / "classes.txt").is_file():
        # A classes.txt says the masks are class-index even when only class 1 is painted yet
        # (the station's labelling writes one): 1 is then "the first class", not "defect".
        kind = "class_index"
    names, notes = _class_names(root, records, kind, kinds)
    mask_kind = None if kind == "none" else kind
    samples: list[Sample] = []
    pixels: Counter[str] = Counter()
    image_kinds: Counter[str] = Counter()
    for r in records:
        judged = _judge(root, r, names, mask_kind, kinds)
        if isinstance(judged, Problem):
            problems.append(judged)
            continue
        sample, counts = judged
        samples.append(sample)
        pixels.update(counts)
        image_kinds[r.info.kind] += 1
    notes += _split_notes(samples)
    return Dataset(
        root, chosen, samples, names, kind, problems, notes, dict(pixels), dict(image_kinds)
    )


def _judge(
    root: Path,
    r: _Record,
    names: list[str],
    mask_kind: MaskKind | None,
    kinds: dict[Path, tuple[MaskKind, tuple[int, ...]]],
) -> tuple[Sample, dict[str, int]] | Problem:
    """The sample of one record and its defect pixels per class, or why it is left out."""
    pair = r.pair
    multi = mask_kind in ("palette", "class_index")
    foreground = 1 if multi or pair.label not in names else names.index(pair.label) + 1
    counts: dict[str, int] = {}
    if pair.mask is not None and kinds[pair.mask][1]:
        mask = r.mask if r.mask is not None else read_mask_values(pair.mask)
        hist = np.bincount(to_labels(mask, mask_kind, foreground).ravel())
        counts = {names[i - 1]: int(n) for i, n in enumerate(hist[1:], 1) if n and i <= len(names)}
    name = rel(root, pair.image)
    where = rel(root, pair.mask) if pair.mask is not None else name
    if pair.free and counts:
        fix = "move the image to its defect's folder or clear its mask"
        msg = f"mask shows a defect but the folder says defect-free: ignored; {fix}"
        return Problem("defect_in_free", where, msg)
    if (pair.label is not None or pair.listed_defective) and not counts:
        what = "no mask" if pair.mask is None else "an empty mask"
        fix = "paint its mask or move it to the defect-free folder"
        msg = f"image of a defect class with {what}: ignored; {fix}"
        return Problem("no_mask" if pair.mask is None else "empty_mask", where, msg)
    classes = tuple(sorted(counts, key=names.index))
    sample = Sample(
        name, pair.image, pair.mask, bool(counts), classes, pair.split, r.info.shape,
        foreground, mask_kind,
    )  # fmt: skip
    return sample, counts


def _split_notes(samples: list[Sample]) -> list[str]:
    given = {s.split for s in samples}
    if not samples or given == {None}:
        return []
    if not given_split(samples):
        shown = ", ".join(sorted(str(g) for g in given if g))
        return [f"the folders name only part of a split ({shown}): a seeded split is made instead"]
    notes = []
    if "val" not in given:
        notes.append("the data gives no validation split: training carves one from train (seeded)")
    if not any(s.defective for s in samples if s.split == "train"):
        notes.append(
            "the data's train split holds no defective image (an anomaly-detection split); "
            "a segmentation network needs defects to train on"
        )
    return notes


def find_samples(
    root: str | Path, masks: str | Path | None = None, *, layout: str = "auto"
) -> list[Sample]:
    """The usable samples of a dataset; raises :class:`DatasetError` on problems training cannot
    work around (unreadable files, masks of another size) or when there is no image at all.
    Other problems (a mask without an image, say) are logged as warnings.
    """
    ds = discover(root, masks=masks, layout=layout)  # type: ignore[arg-type]  # str; discover refuses unknown layouts
    for p in ds.problems:
        if not p.blocking:
            log.warning("%s: %s", Path(root) / p.file, p.message)
    if ds.blocking:
        first = ds.blocking[0]
        more = len(ds.problems) - 1
        tail = f" ({more} more problem(s): python -m training data {root})" if more else ""
        raise DatasetError(f"{Path(root) / first.file}: {first.message}{tail}")
    if not ds.samples:
        raise DatasetError(
            f"{root}: no images found ({', '.join(IMAGE_EXTENSIONS)}; looked for the "
            f"{ds.layout} layout, python -m training data {root} shows what is there)"
        )
    return ds.samples

"""A seeded generator of DAGM-like textures with labelled defects (numpy + OpenCV, no TensorFlow).

Used for the bundled demo model, the demo sample frames and the tests. Backgrounds mix blurred
noise with an oriented grating, as DAGM's textures do; defects come in four kinds (the defect
classes of a multi-class dataset) of different size and contrast, so a model has to learn shape
as well as brightness:

* ``blob``: a soft-edged ellipse, darker or brighter (DAGM's typical stain);
* ``scratch``: a thin straight line;
* ``crack``: a thin random-walk polyline;
* ``spot``: a small dark disc.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

DefectKind = Literal["none", "blob", "scratch", "crack", "spot"]
DEFECT_KINDS: tuple[DefectKind, ...] = ("blob", "scratch", "crack", "spot")
Layout = Literal["folder", "flat", "dagm", "nested", "classes", "split", "mvtec"]
LAYOUTS: tuple[Layout, ...] = ("folder", "flat", "dagm", "nested", "classes", "split", "mvtec")


def _texture(rng: np.random.Generator, h: int, w: int) -> NDArray[np.float32]:
    sigma = rng.uniform(1.0, 4.0)
    # NDArray[Any]: OpenCV's stubs type every result as "integer or floating" (this is float32).
    noise: NDArray[Any] = cv2.GaussianBlur(
        rng.normal(0, 1, (h, w)).astype(np.float32), (0, 0), sigma
    )
    noise /= noise.std() + 1e-6
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(6.0, 24.0)
    grating = np.sin((xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period)
    mix = rng.uniform(0.2, 0.8)
    tex = mix * noise + (1 - mix) * grating * 1.2
    # A slow illumination gradient, as a real line camera sees across the part.
    gy, gx = rng.uniform(-0.1, 0.1, 2)
    base = rng.uniform(0.35, 0.6) + gy * (yy / h - 0.5) + gx * (xx / w - 0.5)
    return (base + rng.uniform(0.04, 0.08) * tex).astype(np.float32)


def _defect_mask(rng: np.random.Generator, h: int, w: int, kind: DefectKind) -> NDArray[np.uint8]:
    mask = np.zeros((h, w), np.uint8)
    short = min(h, w)
    cy, cx = int(rng.uniform(0.15, 0.85) * h), int(rng.uniform(0.15, 0.85) * w)
    if kind == "blob":
        axes = (int(rng.uniform(0.04, 0.14) * short) + 3, int(rng.uniform(0.02, 0.08) * short) + 2)
        cv2.ellipse(mask, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
    elif kind == "scratch":
        length = rng.uniform(0.15, 0.45) * short
        angle = rng.uniform(0, np.pi)
        dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
        p1 = (int(cx - dx), int(cy - dy))
        p2 = (int(cx + dx), int(cy + dy))
        cv2.line(mask, p1, p2, 255, int(rng.integers(2, 4)), cv2.LINE_8)
    elif kind == "crack":
        points = [(cx, cy)]
        heading = rng.uniform(0, 2 * np.pi)
        for _ in range(int(rng.integers(8, 16))):
            heading += rng.normal(0, 0.5)
            step = rng.uniform(0.02, 0.05) * short
            x, y = points[-1]
            points.append((int(x + step * np.cos(heading)), int(y + step * np.sin(heading))))
        cv2.polylines(mask, [np.array(points, np.int32)], False, 255, int(rng.integers(2, 4)))
    elif kind == "spot":
        radius = int(rng.uniform(0.012, 0.03) * short) + 2
        cv2.circle(mask, (cx, cy), radius, 255, -1)
    else:
        raise ValueError(f"unknown defect kind {kind!r} (expected one of {DEFECT_KINDS})")
    return mask


def make_sample(
    rng: np.random.Generator, size: tuple[int, int], defect_kind: DefectKind | None
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """One grey uint8 image and its 0/255 mask (all zero when ``defect_kind`` is None/"none")."""
    h, w = size
    image = _texture(rng, h, w)
    mask = np.zeros((h, w), np.uint8)
    if defect_kind not in (None, "none"):
        mask = _defect_mask(rng, h, w, defect_kind)
        # Contrast varies from faint to obvious; the soft edge keeps the boundary realistic.
        soft = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), 1.0)
        contrast = rng.uniform(0.12, 0.3) * (1 if rng.random() < 0.3 else -1)
        if defect_kind == "spot":
            contrast = -abs(contrast)
        image = image + contrast * soft
    image += rng.normal(0, 0.01, image.shape).astype(np.float32)  # sensor noise
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8), mask


def _paths(out: Path, layout: Layout, i: int, n: int, kind: DefectKind | None) -> tuple[Path, Path]:
    """Where image ``i`` and its mask go in ``layout``."""
    stem = f"{i + 1:04d}"
    folder = kind or "good"
    if layout == "folder":
        return out / "images" / f"{stem}.png", out / "masks" / f"{stem}.png"
    if layout == "flat":
        return out / f"{stem}.png", out / "masks" / f"{stem}.png"
    if layout == "dagm":
        return out / f"{stem}.PNG", out / "Label" / f"{stem}_label.PNG"
    if layout == "nested":  # KolektorSDD-like: one folder per part, PartK.jpg + PartK_label.bmp
        part = out / f"kos{i // 4 + 1:02d}"
        return part / f"Part{i % 4}.jpg", part / f"Part{i % 4}_label.bmp"
    if layout == "classes":  # Magnetic-tile-like: KIND/Imgs/x.jpg + x.png, good/ = defect-free
        return out / folder / "Imgs" / f"{stem}.jpg", out / folder / "Imgs" / f"{stem}.png"
    if layout == "split":  # images/PART/x.png + masks/PART/x.png, PART from the position
        sub = "train" if i < 0.6 * n else ("val" if i < 0.8 * n else "test")
        return out / "images" / sub / f"{stem}.png", out / "masks" / sub / f"{stem}.png"
    # mvtec: the first half (defect-free only) is train/good, the rest test/KIND
    if kind is None and i < n // 2:
        return out / "train" / "good" / f"{stem}.png", out / "unused" / stem
    return out / "test" / folder / f"{stem}.png", out / "ground_truth" / folder / f"{stem}_mask.png"


def generate(
    out_dir: str | Path,
    n: int,
    *,
    size: tuple[int, int] = (256, 256),
    defect_ratio: float = 0.25,
    seed: int = 0,
    layout: Layout = "folder",
    class_masks: bool = False,
    kinds: Sequence[DefectKind] = DEFECT_KINDS,
) -> list[Path]:
    """Write ``n`` samples and return the image paths.

    Exactly ``round(n * defect_ratio)`` images are defective, the defect kinds (the classes) in
    rotation. Layouts (masks only for defective images unless said otherwise):

    * ``folder``: ``images/NNNN.png`` + ``masks/NNNN.png``;
    * ``flat``: ``NNNN.png`` + ``masks/NNNN.png`` (a folder of frames a station can play);
    * ``dagm``: ``NNNN.PNG`` + ``Label/NNNN_label.PNG`` + ``Label/Labels.txt`` as in DAGM 2007;
    * ``nested``: ``kosKK/PartJ.jpg`` + ``kosKK/PartJ_label.bmp``, four parts a folder
      (KolektorSDD's layout), a mask for every image;
    * ``classes``: ``KIND/Imgs/NNNN.jpg`` + ``NNNN.png`` per defect kind and ``good/`` for the
      defect-free, a mask for every image (Magnetic-tile's layout);
    * ``split``: ``images/{train,val,test}/NNNN.png`` + ``masks/…`` (60/20/20 by position);
    * ``mvtec``: ``train/good``, ``test/{good,KIND}``, ``ground_truth/KIND/NNNN_mask.png``
      (defect-free images in the first half go to train).

    ``class_masks`` writes class-index masks (pixel = 1 + the kind's index in ``kinds``)
    instead of 0/255, and ``classes.txt`` naming them. ``kinds`` are the defect kinds used (the
    classes; default all four), in rotation.
    """
    kinds = tuple(kinds)
    if not kinds or any(k not in DEFECT_KINDS for k in kinds):
        raise ValueError(f"kinds {kinds!r}: choose from {', '.join(DEFECT_KINDS)}")
    if not 0.0 <= defect_ratio <= 1.0:
        raise ValueError(f"defect_ratio {defect_ratio} is outside [0, 1]")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r} ({', '.join(LAYOUTS)})")
    out = Path(out_dir)
    rng = np.random.default_rng(seed)
    n_def = int(round(n * defect_ratio))
    defective = np.zeros(n, bool)
    defective[rng.permutation(n)[:n_def]] = True
    paths: list[Path] = []
    labels = [str(n)]
    k = 0
    for i in range(n):
        kind: DefectKind | None = None
        if defective[i]:
            kind = kinds[k % len(kinds)]
            k += 1
        image, mask = make_sample(rng, size, kind)
        path, mask_path = _paths(out, layout, i, n, kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), image)
        paths.append(path)
        label_name = "0"
        if kind is not None or layout in ("nested", "classes"):
            if class_masks and kind is not None:
                mask = (mask > 0).astype(np.uint8) * (kinds.index(kind) + 1)
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(mask_path), mask)
            label_name = mask_path.name
        labels.append(f"{i + 1:04d}\t{int(kind is not None)}\t{path.name}\t0\t{label_name}")
    if class_masks:  # names of the class ids, for discovery (line 0 = background)
        out.mkdir(parents=True, exist_ok=True)
        names = "\n".join(("background", *kinds))
        (out / "classes.txt").write_text(names + "\n", encoding="utf-8")
    if layout == "dagm":
        (out / "Label").mkdir(parents=True, exist_ok=True)
        (out / "Label" / "Labels.txt").write_text("\n".join(labels) + "\n", encoding="utf-8")
    return paths

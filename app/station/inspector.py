"""Rules: a probability map and a :class:`Rules` in, an :class:`Inspection` out.

Pure functions of their inputs (no inference, no I/O, no state), so re-judging a kept map after a
slider move costs one threshold, one connected-components pass and a few polygon tests.

Order of the rules (also written in docs/recipes.md):

1. ``prob >= rules.threshold`` gives the binary mask. NaN never passes the comparison, so NaN
   pixels count as probability 0 and never start a defect.
2. 8-connected components of the mask are the candidate blobs.
3. Zones are tested on the blob's centroid. A blob in an *exclude* zone is ignored. When the rules
   have *include* zones, a blob must lie in an include or a critical zone to be judged (a critical
   zone is always part of the inspected area, so it needs no include zone drawn around it).
4. A blob is a defect when its area >= ``rules.min_area_px``, or when it lies in a critical zone and
   its area >= that zone's ``min_area_px`` (critical zones may be stricter than the global rule).
5. NG reasons, in this order: every defect in a critical zone with area >= the zone's minimum
   ("defect of 37 px in critical zone 'seal'"); more defects than ``max_count`` ("3 defects > max
   0"); total defect area above ``max_total_area_px`` ("total defect area 412 px > max 300 px").
   No reason means PASS.

Defect classes (a multi-class model hands over ``class_prob``, H x W x K, one channel per class
name): each blob takes the class with the highest mean class probability over its pixels, and
that mean is its ``class_confidence``. ``rules.classes`` then apply key by key, the global rule
standing in for a key a class leaves out: the class's ``min_area_px`` in step 4; an
``always_ng`` class makes each of its defects NG ("1 crack defect: class always NG"); a class
with its own ``max_count`` / ``max_total_area_px`` is counted against those ("2 crack defects >
max 0", "total crack area 412 px > max 300 px") and left out of the global count / total, which
take every other defect. Reasons: critical zones, always-NG classes, per-class limits (in the
order of ``rules.classes``), then the global limits. Without ``class_prob`` no blob has a class
and only the global rules judge.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from app.station.inspection import Defect, Inspection, Rules, Zone
from engines.scoring import components

__all__ = ["binary_mask", "blob_classes", "class_mask", "judge", "point_in_zone"]


@dataclass(frozen=True)
class _Blobs:
    """Connected components of the thresholded map, with per-blob probability statistics."""

    labels: NDArray[np.int32]
    stats: NDArray[np.int32]  # per label: x, y, w, h, area (label 0 = background)
    centroids: NDArray[np.float64]  # per label: x, y
    max_prob: NDArray[np.float64]
    mean_prob: NDArray[np.float64]


def _as_map(prob: NDArray[np.floating] | NDArray[np.integer]) -> NDArray[np.float32]:
    p = np.asarray(prob)
    if p.ndim == 3 and p.shape[2] == 1:
        p = p[:, :, 0]
    if p.ndim != 2:
        raise ValueError(f"probability map must be H x W (or H x W x 1), not shape {p.shape}")
    return p.astype(np.float32, copy=False)


def _threshold(p: NDArray[np.float32], threshold: float) -> NDArray[np.uint8]:
    # ``>=`` so a map saturated at exactly the threshold counts; NaN compares False (= prob 0).
    return (p >= np.float32(threshold)).view(np.uint8)


def _blobs(p: NDArray[np.float32], mask: NDArray[np.uint8]) -> _Blobs:
    n, labels, stats, centroids = components(mask)
    if n == 1:  # nothing reached the threshold (most frames)
        none = np.zeros(1, dtype=np.float64)
        return _Blobs(labels, stats, centroids, none, none.copy())
    on = labels > 0
    lab = labels[on]
    # Only pixels >= threshold are in a blob, so no NaN here; +inf would be, so clip to [0, 1].
    val = np.clip(p[on], 0.0, 1.0).astype(np.float64)
    sums = np.bincount(lab, weights=val, minlength=n)
    maxima = np.zeros(n, dtype=np.float64)
    np.maximum.at(maxima, lab, val)
    areas = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
    means = np.divide(sums, areas, out=np.zeros(n), where=areas > 0)
    return _Blobs(labels, stats, centroids, maxima, means)


@dataclass(frozen=True)
class _Classes:
    """Per blob label: index into the class names (-1 = none) and its mean class probability."""

    index: NDArray[np.intp]
    confidence: NDArray[np.float64]
    names: tuple[str, ...]

    def name(self, label: int) -> str | None:
        i = int(self.index[label])
        return self.names[i] if i >= 0 else None


def _class_map(class_prob: NDArray, shape: tuple[int, ...], k: int) -> NDArray[np.float32]:
    cp = np.asarray(class_prob)
    if cp.ndim == 2 and k == 1:
        cp = cp[:, :, None]
    if cp.ndim != 3 or cp.shape[:2] != shape or cp.shape[2] != k:
        raise ValueError(
            f"class_prob must be {shape[0]} x {shape[1]} x {k} (one channel per class name), "
            f"not shape {cp.shape}"
        )
    if cp.dtype == np.uint8:  # quantised maps (kept results): 255 = probability 1
        return cp.astype(np.float32) / np.float32(255.0)
    return cp.astype(np.float32, copy=False)


def blob_classes(
    labels: NDArray[np.int32],
    n: int,
    class_prob: NDArray,
    class_names: Sequence[str],
) -> _Classes:
    """Class of each of the ``n`` labels of ``labels``: argmax of the per-class mean probability."""
    names = tuple(class_names)
    cp = _class_map(class_prob, labels.shape, len(names))
    on = labels > 0
    lab = labels[on]
    areas = np.bincount(lab, minlength=n).astype(np.float64)
    means = np.zeros((n, len(names)), np.float64)
    for k in range(len(names)):
        # NaN / inf never elect a class: they count as probability 0 (clipped to [0, 1]).
        vals = np.clip(np.nan_to_num(cp[:, :, k][on], nan=0.0), 0.0, 1.0).astype(np.float64)
        means[:, k] = np.divide(
            np.bincount(lab, weights=vals, minlength=n), areas, out=np.zeros(n), where=areas > 0
        )
    index = np.argmax(means, axis=1).astype(np.intp)
    conf = means[np.arange(n), index]
    index[conf <= 0.0] = -1  # no class probability at all over the blob: unclassified
    return _Classes(index, conf, names)


def _polygon(zone: Zone) -> NDArray[np.float32]:
    return np.asarray(zone.polygon, dtype=np.float32).reshape(-1, 1, 2)


def point_in_zone(zone: Zone, x: float, y: float) -> bool:
    """True when ``(x, y)`` lies inside ``zone``'s polygon or on its edge."""
    return cv2.pointPolygonTest(_polygon(zone), (float(x), float(y)), False) >= 0


@dataclass(frozen=True)
class _Candidate:
    label: int
    area: int
    zone: Zone | None  # the critical zone holding the centroid, if any
    critical: bool  # area reaches that zone's own minimum: NG on its own


def _select(blobs: _Blobs, rules: Rules, classes: _Classes | None = None) -> list[_Candidate]:
    polys = [(z, _polygon(z)) for z in rules.zones]
    includes = [p for z, p in polys if z.kind == "include"]
    excludes = [p for z, p in polys if z.kind == "exclude"]
    criticals = [(z, p) for z, p in polys if z.kind == "critical"]

    def inside(poly: NDArray[np.float32], pt: tuple[float, float]) -> bool:
        return cv2.pointPolygonTest(poly, pt, False) >= 0

    kept: list[_Candidate] = []
    for label in range(1, blobs.stats.shape[0]):
        area = int(blobs.stats[label, cv2.CC_STAT_AREA])
        pt = (float(blobs.centroids[label, 0]), float(blobs.centroids[label, 1]))
        if any(inside(p, pt) for p in excludes):
            continue
        hits = [z for z, p in criticals if inside(p, pt)]
        if includes and not hits and not any(inside(p, pt) for p in includes):
            continue
        # Of several overlapping critical zones, report the one whose minimum the blob reaches.
        reached = [z for z in hits if area >= z.min_area_px]
        zone = reached[0] if reached else (hits[0] if hits else None)
        critical = bool(reached)
        min_area = rules.min_area_px
        if classes is not None and rules.classes:
            own = rules.for_class(classes.name(label))
            if own is not None and own.min_area_px is not None:
                min_area = own.min_area_px
        if area >= min_area or critical:
            kept.append(_Candidate(label, area, zone, critical))
    return kept


def _plural(n: int, kind: str | None = None) -> str:
    what = f"{kind} defect" if kind else "defect"
    return f"{n} {what}" if n == 1 else f"{n} {what}s"


def _reasons(defects: list[Defect], critical: list[bool], rules: Rules) -> list[str]:
    reasons = [
        f"defect of {d.area_px} px in critical zone '{d.zone}'"
        for d, is_critical in zip(defects, critical, strict=True)
        if is_critical
    ]
    by_class = {c.name: [d for d in defects if d.class_name == c.name] for c in rules.classes}
    for c in rules.classes:
        if c.always_ng and by_class[c.name]:
            reasons.append(f"{_plural(len(by_class[c.name]), c.name)}: class always NG")
    counted, summed = list(defects), list(defects)  # what the global limits still see
    for c in rules.classes:
        mine = by_class[c.name]
        if c.max_count is not None:
            counted = [d for d in counted if d.class_name != c.name]
            if len(mine) > c.max_count:
                reasons.append(f"{_plural(len(mine), c.name)} > max {c.max_count}")
        if c.max_total_area_px is not None:
            summed = [d for d in summed if d.class_name != c.name]
            area = sum(d.area_px for d in mine)
            if area > c.max_total_area_px:
                reasons.append(f"total {c.name} area {area} px > max {c.max_total_area_px} px")
    if len(counted) > rules.max_count:
        reasons.append(f"{_plural(len(counted))} > max {rules.max_count}")
    total = sum(d.area_px for d in summed)
    if rules.max_total_area_px is not None and total > rules.max_total_area_px:
        reasons.append(f"total defect area {total} px > max {rules.max_total_area_px} px")
    return reasons


def judge(
    prob: NDArray[np.floating],
    rules: Rules,
    *,
    pixel_size_mm: float | None = None,
    frame_id: int = 0,
    source: str = "",
    timestamp: float = 0.0,
    model_id: str = "",
    timings_ms: Mapping[str, float] | None = None,
    class_prob: NDArray | None = None,
    class_names: Sequence[str] = (),
) -> Inspection:
    """Judge one probability map against ``rules``.

    Parameters
    ----------
    prob
        H x W (or H x W x 1) defect probabilities in [0, 1]. NaN counts as 0.
    rules
        Threshold, minimum area, count and total-area limits, zones (see the module docstring).
    pixel_size_mm
        Edge length of one pixel; when given, each defect's ``area_mm2`` is filled in.
    frame_id, source, timestamp, model_id
        Copied into the :class:`Inspection`.
    timings_ms
        Earlier stage timings (acquire, infer, ...); a ``"judge"`` entry is added.
    class_prob
        H x W x K class probabilities of a multi-class model (float in [0, 1], or uint8 with 255
        = 1), channel k for ``class_names[k]``; None = the blobs get no class.
    class_names
        The model's class names (its card's ``class_names``), one per channel of ``class_prob``.

    Returns
    -------
    Inspection
        Defects sorted by area (largest first), the verdict and the reasons for an NG.
    """
    t0 = time.perf_counter()
    p = _as_map(prob)
    blobs = _blobs(p, _threshold(p, rules.threshold))
    classes = _classes_of(blobs, class_prob, class_names)
    chosen = _select(blobs, rules, classes)
    chosen.sort(key=lambda c: (-c.area, c.label))
    px_mm2 = None if pixel_size_mm is None else float(pixel_size_mm) ** 2
    defects: list[Defect] = []
    for c in chosen:
        x, y, w, h = (int(v) for v in blobs.stats[c.label, :4])
        defects.append(
            Defect(
                area_px=c.area,
                bbox=(x, y, w, h),
                centroid=(float(blobs.centroids[c.label, 0]), float(blobs.centroids[c.label, 1])),
                max_prob=float(blobs.max_prob[c.label]),
                mean_prob=float(blobs.mean_prob[c.label]),
                area_mm2=None if px_mm2 is None else c.area * px_mm2,
                zone=None if c.zone is None else c.zone.name,
                class_name=None if classes is None else classes.name(c.label),
                class_confidence=_confidence(classes, c.label),
            )
        )
    reasons = _reasons(defects, [c.critical for c in chosen], rules)
    timings = dict(timings_ms or {})
    timings["judge"] = (time.perf_counter() - t0) * 1000.0
    return Inspection(
        frame_id=frame_id,
        source=source,
        timestamp=timestamp,
        verdict="NG" if reasons else "PASS",
        reasons=tuple(reasons),
        defects=tuple(defects),
        rules=rules,
        model_id=model_id,
        timings_ms=timings,
    )


def _classes_of(
    blobs: _Blobs, class_prob: NDArray | None, class_names: Sequence[str]
) -> _Classes | None:
    if class_prob is None:
        return None
    if not class_names:
        raise ValueError("class_prob given without class_names (the model card's class_names)")
    return blob_classes(blobs.labels, blobs.stats.shape[0], class_prob, class_names)


def _confidence(classes: _Classes | None, label: int) -> float | None:
    if classes is None or classes.index[label] < 0:
        return None
    return float(classes.confidence[label])


def binary_mask(
    prob: NDArray[np.floating],
    rules: Rules,
    *,
    defects_only: bool = False,
    class_prob: NDArray | None = None,
    class_names: Sequence[str] = (),
) -> NDArray[np.uint8]:
    """The thresholded map as a 0/255 uint8 H x W image, for overlays and the NG archive.

    With ``defects_only`` the mask keeps only the blobs :func:`judge` counts as defects (after the
    minimum area and the zones), which is what the verdict was based on; give the class map too
    when the rules have per-class minimum areas.
    """
    p = _as_map(prob)
    mask = _threshold(p, rules.threshold)
    if not defects_only:
        return mask * np.uint8(255)
    blobs = _blobs(p, mask)
    keep = np.zeros(blobs.stats.shape[0], dtype=np.uint8)
    for c in _select(blobs, rules, _classes_of(blobs, class_prob, class_names)):
        keep[c.label] = 255
    return keep[blobs.labels]


def class_mask(
    prob: NDArray[np.floating],
    rules: Rules,
    class_prob: NDArray,
    class_names: Sequence[str],
    *,
    defects_only: bool = True,
) -> NDArray[np.uint8]:
    """H x W uint8: 0 off the defects, ``k + 1`` on every pixel of a blob of class ``k``.

    A blob is painted with its one class (the one :func:`judge` gives it), so an overlay shows
    each defect in one colour (``card.class_colors[k]``) rather than a per-pixel patchwork.
    With ``defects_only`` (default) only the blobs the rules count are painted.
    """
    p = _as_map(prob)
    blobs = _blobs(p, _threshold(p, rules.threshold))
    classes = blob_classes(blobs.labels, blobs.stats.shape[0], class_prob, class_names)
    paint = (classes.index + 1).astype(np.uint8)
    paint[0] = 0
    if defects_only:
        keep = np.zeros_like(paint)
        for c in _select(blobs, rules, classes):
            keep[c.label] = paint[c.label]
        paint = keep
    return paint[blobs.labels]

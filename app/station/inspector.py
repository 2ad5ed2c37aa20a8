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
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from app.station.inspection import Defect, Inspection, Rules, Zone

__all__ = ["binary_mask", "judge", "point_in_zone"]


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
    n, cv_labels, cv_stats, cv_centroids = cv2.connectedComponentsWithStats(
        mask, connectivity=8, ltype=cv2.CV_32S
    )
    # Already these dtypes (no copy); asarray gives numpy's types to OpenCV's untyped results.
    labels = np.asarray(cv_labels, dtype=np.int32)
    stats = np.asarray(cv_stats, dtype=np.int32)
    centroids = np.asarray(cv_centroids, dtype=np.float64)
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


def _select(blobs: _Blobs, rules: Rules) -> list[_Candidate]:
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
        if area >= rules.min_area_px or critical:
            kept.append(_Candidate(label, area, zone, critical))
    return kept


def _plural(n: int) -> str:
    return f"{n} defect" if n == 1 else f"{n} defects"


def _reasons(defects: list[Defect], critical: list[bool], rules: Rules) -> list[str]:
    reasons = [
        f"defect of {d.area_px} px in critical zone '{d.zone}'"
        for d, is_critical in zip(defects, critical, strict=True)
        if is_critical
    ]
    if len(defects) > rules.max_count:
        reasons.append(f"{_plural(len(defects))} > max {rules.max_count}")
    total = sum(d.area_px for d in defects)
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

    Returns
    -------
    Inspection
        Defects sorted by area (largest first), the verdict and the reasons for an NG.
    """
    t0 = time.perf_counter()
    p = _as_map(prob)
    blobs = _blobs(p, _threshold(p, rules.threshold))
    chosen = _select(blobs, rules)
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


def binary_mask(
    prob: NDArray[np.floating], rules: Rules, *, defects_only: bool = False
) -> NDArray[np.uint8]:
    """The thresholded map as a 0/255 uint8 H x W image, for overlays and the NG archive.

    With ``defects_only`` the mask keeps only the blobs :func:`judge` counts as defects (after the
    minimum area and the zones), which is what the verdict was based on.
    """
    p = _as_map(prob)
    mask = _threshold(p, rules.threshold)
    if not defects_only:
        return mask * np.uint8(255)
    blobs = _blobs(p, mask)
    keep = np.zeros(blobs.stats.shape[0], dtype=np.uint8)
    for c in _select(blobs, rules):
        keep[c.label] = 255
    return keep[blobs.labels]

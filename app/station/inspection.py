"""What the inspector produces: rules in, defects and a verdict out. Plain frozen data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from app.station.frame import Frame

Verdict = Literal["PASS", "NG"]
ZoneKind = Literal["include", "exclude", "critical"]


@dataclass(frozen=True)
class Zone:
    """A polygon in full-resolution image pixels (x, y).

    include: only defects whose centroid lies in some include zone count (if any include exists).
    exclude: defects whose centroid lies inside are ignored.
    critical: a defect inside with area >= ``min_area_px`` makes the part NG on its own.
    """

    name: str
    kind: ZoneKind
    polygon: tuple[tuple[float, float], ...]
    min_area_px: int = 0


@dataclass(frozen=True)
class Rules:
    """The thresholds that judge a probability map. ``max_count`` defects are tolerated (0 = none)."""

    threshold: float = 0.5
    min_area_px: int = 0
    max_count: int = 0
    max_total_area_px: int | None = None
    zones: tuple[Zone, ...] = ()


@dataclass(frozen=True)
class Defect:
    area_px: int
    bbox: tuple[int, int, int, int]  # x, y, w, h in frame pixels
    centroid: tuple[float, float]  # x, y
    max_prob: float
    mean_prob: float
    area_mm2: float | None = None  # None when the recipe has no pixel size
    zone: str | None = None  # name of the critical zone it lies in, if any


@dataclass(frozen=True)
class Inspection:
    frame_id: int
    source: str
    timestamp: float
    verdict: Verdict
    reasons: tuple[str, ...]  # human-readable, e.g. "3 defects > max 0"
    defects: tuple[Defect, ...]
    rules: Rules
    model_id: str
    timings_ms: dict[str, float] = field(default_factory=dict)  # acquire, queue, infer, judge


@dataclass(frozen=True)
class FrameResult:
    """A judged frame with the probability map kept, so new rules can re-judge it at once."""

    frame: Frame
    prob: NDArray[np.float32]  # H x W, same size as frame.image, read-only
    inspection: Inspection
    dropped_before: int = 0  # frames dropped between the previous result and this one
    extra: dict[str, Any] = field(default_factory=dict)

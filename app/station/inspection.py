"""What the inspector produces: rules in, defects and a verdict out. Plain frozen data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from app.station.frame import Frame

# ERROR = the frame could not be judged (unreadable, model fault, judge failure); never a pass.
Verdict = Literal["PASS", "NG", "ERROR"]
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
class ClassRules:
    """Rules for the defects of one class (``[rules.classes.<name>]`` in a recipe).

    A key left None falls back to the global rule of the same name; ``always_ng`` makes any
    defect of the class NG on its own (after the minimum area and the zones).
    """

    name: str
    min_area_px: int | None = None
    max_count: int | None = None
    max_total_area_px: int | None = None
    always_ng: bool = False


@dataclass(frozen=True)
class Rules:
    """The thresholds that judge a probability map. ``max_count`` defects are tolerated (0 = none)."""

    threshold: float = 0.5
    min_area_px: int = 0
    max_count: int = 0
    max_total_area_px: int | None = None
    zones: tuple[Zone, ...] = ()
    classes: tuple[ClassRules, ...] = ()  # per-class rules; the fields above are the fallback

    def for_class(self, name: str | None) -> ClassRules | None:
        """The rules of class ``name``, or None when it has none (or the defect has no class)."""
        return next((c for c in self.classes if c.name == name), None) if name else None


@dataclass(frozen=True)
class Defect:
    area_px: int
    bbox: tuple[int, int, int, int]  # x, y, w, h in frame pixels
    centroid: tuple[float, float]  # x, y
    max_prob: float
    mean_prob: float
    area_mm2: float | None = None  # None when the recipe has no pixel size
    zone: str | None = None  # name of the critical zone it lies in, if any
    class_name: str | None = None  # defect class (multi-class models); None = not classified
    class_confidence: float | None = None  # mean class probability of that class over the blob


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
    error: str | None = None  # why the frame was not judged (verdict ERROR); also in ``reasons``


@dataclass(frozen=True)
class FrameResult:
    """A judged frame with the probability map kept, so new rules can re-judge it at once."""

    frame: Frame
    # H x W, same size as frame.image, read-only; None when there is no usable map (ERROR)
    prob: NDArray[np.float32] | None
    inspection: Inspection
    dropped_before: int = 0  # frames dropped between the previous result and this one
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. part_id of a triggered job

    @property
    def verdict(self) -> Verdict:
        return self.inspection.verdict


def error_inspection(
    frame: Frame,
    reason: str,
    *,
    rules: Rules,
    model_id: str = "",
    timings_ms: dict[str, float] | None = None,
) -> Inspection:
    """The ERROR verdict for a frame that could not be judged, with the reason."""
    return Inspection(
        frame_id=frame.frame_id,
        source=frame.source,
        timestamp=frame.timestamp,
        verdict="ERROR",
        reasons=(reason,),
        defects=(),
        rules=rules,
        model_id=model_id,
        timings_ms=dict(timings_ms or {}),
        error=reason,
    )

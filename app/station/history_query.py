"""The History workspace's model: filters → results-store query, open a row, export CSV.

Queries are bounded by the row limit and read SQLite in WAL mode (never waiting for the
pipeline's writer), so the GUI may run ``rows()`` on its thread; ``open`` (reads archived PNGs)
and ``export_csv`` (writes a file of unknown size) block on disk: run them on a worker.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from app.station.frame import Frame
from app.station.inspection import FrameResult, Inspection, Rules
from app.station.store import StoredInspection

# label -> seconds back from now (None = no lower bound)
TIME_RANGES: tuple[tuple[str, float | None], ...] = (
    ("last hour", 3600.0),
    ("last 8 h", 8 * 3600.0),
    ("last 24 h", 24 * 3600.0),
    ("last 7 days", 7 * 24 * 3600.0),
    ("all", None),
)
VERDICTS = ("all", "NG", "ERROR", "PASS")
ALL_MODELS = "all models"
ALL_CLASSES = "all classes"
MAX_ROWS = 10_000

VerdictFilter = Literal["all", "NG", "ERROR", "PASS"]


class HistoryError(RuntimeError):
    """A row cannot be opened (not archived, no longer in memory, unreadable)."""


@dataclass(frozen=True)
class HistoryFilters:
    verdict: VerdictFilter = "all"
    period: str = "last 24 h"  # a label of TIME_RANGES
    model: str = ALL_MODELS
    limit: int = 200
    defect_class: str = ALL_CLASSES  # rows with at least one defect of this class

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict filter must be one of {VERDICTS}, not {self.verdict!r}")
        if self.period not in dict(TIME_RANGES):
            raise ValueError(f"period must be one of {[p for p, _ in TIME_RANGES]}")
        if not 1 <= self.limit <= MAX_ROWS:
            raise ValueError(f"row limit must be in 1..{MAX_ROWS}, not {self.limit}")


class HistoryQuery:
    """Filters, the rows they select, and how a row becomes a frame on screen again.

    ``kept`` gives the session's results still in memory (full probability maps), which are
    preferred over the archive (thresholded masks only).
    """

    def __init__(
        self,
        store: Callable[[], Any],
        kept: Callable[[], list[FrameResult]] = list,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._kept = kept
        self._clock = clock
        self.filters = HistoryFilters()
        self.models_seen: set[str] = set()
        self.classes_seen: set[str] = set()

    def set_filters(self, **changes: Any) -> HistoryFilters:
        self.filters = replace(self.filters, **changes)
        return self.filters

    def store_filters(self) -> dict[str, Any]:
        """The filters as ``store.recent`` / ``store.export_csv`` keywords (time from now)."""
        f = self.filters
        seconds = dict(TIME_RANGES)[f.period]
        out: dict[str, Any] = {
            "verdict": None if f.verdict == "all" else f.verdict,
            "since": None if seconds is None else self._clock() - seconds,
            "model_id": None if f.model == ALL_MODELS else f.model,
        }
        if f.defect_class != ALL_CLASSES:
            out["defect_class"] = f.defect_class
        return out

    def rows(self) -> list[StoredInspection]:
        """The newest rows matching the filters (newest first), at most ``filters.limit``."""
        rows = self._store().recent(limit=self.filters.limit, **self.store_filters())
        self.note_models(r.model_id for r in rows)
        self.classes_seen |= {d.class_name for r in rows for d in r.defects if d.class_name}
        return rows

    def note_models(self, ids: Iterable[str]) -> bool:
        """Remember model ids for the model filter; True when one was new."""
        new = {i for i in ids if i} - self.models_seen
        self.models_seen |= new
        return bool(new)

    def model_choices(self) -> list[str]:
        return [ALL_MODELS, *sorted(self.models_seen)]

    def class_choices(self) -> list[str]:
        """The class filter's entries: all, then every defect class seen in the rows so far."""
        return [ALL_CLASSES, *sorted(self.classes_seen)]

    # --- open ----------------------------------------------------------------------------------
    def in_memory(self, row: StoredInspection) -> FrameResult | None:
        for kept in reversed(self._kept()):
            ins = kept.inspection
            if (
                ins.frame_id == row.frame_id
                and ins.source == row.source
                and abs(ins.timestamp - row.timestamp) < 1e-3
            ):
                return kept
        return None

    def open(self, row: StoredInspection) -> tuple[FrameResult, str]:
        """``row`` as a FrameResult and where it came from (memory or archive); blocking.

        Raises
        ------
        HistoryError
            Not in memory and not archived (PASS frames are not), or the archive is unreadable.
        """
        kept = self.in_memory(row)
        if kept is not None:
            return kept, f"frame #{row.frame_id} (still in memory)"
        if row.image_path is None:
            what = "PASS frames are not archived" if row.verdict == "PASS" else "not archived"
            raise HistoryError(
                f"Frame #{row.frame_id} has no stored image ({what}; only NG frames are kept on "
                "disk) and it is no longer in memory."
            )
        pair = self._store().load_archived(row)
        if pair is None:
            raise HistoryError(
                f"The archived image of frame #{row.frame_id} is missing or unreadable."
            )
        image, mask = pair
        return result_from_archive(row, image, mask), f"frame #{row.frame_id} from the archive"

    def export_csv(self, path: str | os.PathLike[str]) -> tuple[str, int]:
        """Every row matching the filters (not only the shown ones) to ``path``; blocking."""
        return str(path), int(self._store().export_csv(Path(path), **self.store_filters()))


def result_from_archive(
    row: StoredInspection, image: NDArray[Any], mask: NDArray[np.uint8]
) -> FrameResult:
    """An archived frame as a FrameResult the image view can draw and the label panel edit.

    The archive keeps the thresholded mask, not the probability map, so the map is the mask
    (1.0 inside, 0.0 outside): re-judging it at any threshold gives back the archived defects.
    An ERROR row stays ERROR (it was never judged).
    """
    frame = Frame(
        image=image,
        frame_id=row.frame_id,
        timestamp=row.timestamp,
        source=row.source,
        metadata={"path": str(row.image_path), "store_id": row.id, "archived": True},
    )
    verdict = row.verdict if row.verdict in ("PASS", "NG", "ERROR") else "ERROR"
    inspection = Inspection(
        frame_id=row.frame_id,
        source=row.source,
        timestamp=row.timestamp,
        verdict=verdict,  # type: ignore[arg-type]  # checked just above
        reasons=row.reasons,
        defects=row.defects,
        rules=Rules(threshold=row.threshold, min_area_px=row.min_area_px),
        model_id=row.model_id,
        timings_ms=dict(row.timings_ms),
        error=("; ".join(row.reasons) or "not judged") if verdict == "ERROR" else None,
    )
    if verdict == "ERROR":
        return FrameResult(frame=frame, prob=None, inspection=inspection)
    prob = (mask > 0).astype(np.float32)
    prob.flags.writeable = False
    return FrameResult(frame=frame, prob=prob, inspection=inspection)

"""The pipeline's health watches: consecutive model faults and the free-run drop rate.

Kept apart from :mod:`app.station.pipeline` so each rule reads in one place and is tested alone.
"""

from __future__ import annotations

import threading
import time

from engines.selftest import output_fault

__all__ = ["DropMonitor", "ModelHealth", "output_fault"]

DEFAULT_MAX_MODEL_FAULTS = 5  # consecutive frames with a model fault before the station faults
DEFAULT_DROP_ALARM_PCT = 5.0
DROP_WINDOW_S = 2.0  # the drop rate is judged over windows of this length
DROP_WINDOW_FRAMES = 100  # ... or of this many acquired frames, whichever comes first
DROP_MIN_FRAMES = 10  # ... holding at least this many acquired frames


class ModelHealth:
    """Counts consecutive model faults; the ``limit``-th in a row trips the station into FAULT."""

    def __init__(self, limit: int = DEFAULT_MAX_MODEL_FAULTS) -> None:
        if limit < 1:
            raise ValueError(f"max_model_faults must be >= 1, not {limit}")
        self.limit = limit
        self.consecutive = 0
        self.total = 0
        self._lock = threading.Lock()

    def ok(self) -> None:
        with self._lock:
            self.consecutive = 0

    def fault(self) -> bool:
        """Count one fault; True when this one trips the limit."""
        with self._lock:
            self.consecutive += 1
            self.total += 1
            return self.consecutive == self.limit


class DropMonitor:
    """Free-run drop rate over short windows; says when it first exceeds the recipe's limit."""

    def __init__(self, limit_pct: float = DEFAULT_DROP_ALARM_PCT) -> None:
        self.limit_pct = limit_pct
        self._t0 = time.monotonic()
        self._acquired0 = 0
        self._dropped0 = 0
        self.last_pct = 0.0

    def check(self, acquired: int, dropped: int, now: float | None = None) -> str | None:
        """The alarm text when the window just closed over the limit, else None."""
        now = time.monotonic() if now is None else now
        n_acq, n_drop = acquired - self._acquired0, dropped - self._dropped0
        if now - self._t0 < DROP_WINDOW_S and n_acq < DROP_WINDOW_FRAMES:
            return None
        if n_acq < DROP_MIN_FRAMES:
            return None  # too few frames to call it a rate; keep the window open
        self._t0, self._acquired0, self._dropped0 = now, acquired, dropped
        self.last_pct = 100.0 * n_drop / n_acq
        if self.last_pct <= self.limit_pct:
            return None
        return (
            "the camera delivers faster than the station inspects: "
            f"{self.last_pct:.0f} % of frames not inspected"
        )

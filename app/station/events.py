"""The station's event log: errors, alarms, frames not judged, model swaps, recipe saves, faults.

What an operator or engineer needs to see after the fact, in one bounded, thread-safe list that
the GUI's Events workspace shows and the headless run prints on stderr. Records are frozen;
listeners run on the thread that added the record (the GUI bridge re-emits them as signals).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

EventKind = Literal["error", "alarm", "frame_error", "model", "recipe", "fault", "state", "info"]
EVENT_KINDS: tuple[EventKind, ...] = (
    "error",
    "alarm",
    "frame_error",
    "model",
    "recipe",
    "fault",
    "state",
    "info",
)


@dataclass(frozen=True)
class EventRecord:
    time: float  # time.time()
    kind: EventKind
    message: str
    frame_id: int | None = None
    file: str | None = None  # the frame's file name when it came from a file


class EventLog:
    """The newest ``maxlen`` events, with per-kind totals that never roll over."""

    def __init__(self, maxlen: int = 2000) -> None:
        self._records: deque[EventRecord] = deque(maxlen=maxlen)
        self._totals: dict[str, int] = dict.fromkeys(EVENT_KINDS, 0)
        self._lock = threading.Lock()
        self._listeners: list[Callable[[EventRecord], None]] = []

    def add(
        self,
        kind: EventKind,
        message: str,
        *,
        frame_id: int | None = None,
        file: str | None = None,
    ) -> EventRecord:
        if kind not in self._totals:
            raise ValueError(f"unknown event kind {kind!r}")
        record = EventRecord(time.time(), kind, message, frame_id, file)
        with self._lock:
            self._records.append(record)
            self._totals[kind] += 1
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(record)
            except Exception:  # noqa: BLE001 - a listener's bug must not stop the line
                log.exception("event listener %r failed", listener)
        return record

    def subscribe(self, listener: Callable[[EventRecord], None]) -> Callable[[], None]:
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)

        return unsubscribe

    def records(self, kind: EventKind | None = None) -> list[EventRecord]:
        """Kept records, oldest first (only ``kind`` when given)."""
        with self._lock:
            return [r for r in self._records if kind is None or r.kind == kind]

    def totals(self) -> dict[str, int]:
        with self._lock:
            return dict(self._totals)

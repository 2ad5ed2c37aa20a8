"""The one object through which the GUI hears the core: session events -> queued Qt signals.

Session callbacks run on the core's worker threads; emitting a signal from there and connecting
with the default (auto) connection makes Qt deliver it on the GUI thread. Payloads are frozen
dataclasses, so no copy is needed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Signal

from app.station.session import InspectionSession


class SessionBridge(QObject):
    result = Signal(object)  # FrameResult
    rejudged = Signal(object)  # FrameResult re-judged with new rules (no inference)
    stats = Signal(object)  # SessionStats
    state = Signal(bool)  # running
    model = Signal(object)  # ModelCard after a (hot) swap
    error = Signal(str)
    alarm = Signal(str)

    def __init__(self, session: InspectionSession, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self._unsubscribe: Callable[[], None] | None = session.subscribe(self._on_event)

    _EVENTS = frozenset({"result", "rejudged", "stats", "state", "model", "error", "alarm"})

    def _on_event(self, event: str, payload: Any) -> None:
        if event in self._EVENTS:  # unknown events from a newer core are ignored, not fatal
            getattr(self, event).emit(payload)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

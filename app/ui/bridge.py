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
    line_state = Signal(str)  # "running" | "stopped" | "fault" (session.state after the change)
    model = Signal(object)  # ModelCard after a (hot) swap
    error = Signal(str)
    alarm = Signal(str)
    fault = Signal(str)  # the reason the station stopped judging
    # Shadows QObject.event() for Python only: PySide6 still dispatches QEvents to C++ (checked).
    event = Signal(object)  # type: ignore[assignment]  # EventRecord, for the events panel

    def __init__(self, session: InspectionSession, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self._unsubscribe: Callable[[], None] | None = session.subscribe(self._on_event)

    _EVENTS = frozenset({"result", "rejudged", "stats", "model", "error", "alarm", "event"})

    def _on_event(self, event: str, payload: Any) -> None:
        if event in self._EVENTS:  # unknown events from a newer core are ignored, not fatal
            getattr(self, event).emit(payload)
        elif event == "state":
            # the core says bool running (or the state's name); both signals follow session.state
            running = payload is True or payload == "running"
            self.state.emit(running)
            # the event's payload is the truth of that moment ("state" True is emitted just
            # before the pipeline thread starts); only a stop may be a fault
            self.line_state.emit("running" if running else line_state(self.session, False))
        elif event == "fault":
            self.fault.emit(str(payload))
            self.line_state.emit("fault")

    def line_state_now(self) -> str:
        return line_state(self.session, self.session.running)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None


def line_state(session: InspectionSession, running: bool) -> str:
    """``session.state`` when the core has it ("running" / "stopped" / "fault"), else from
    ``running``."""
    state = getattr(session, "state", None)
    if running:
        return "running"
    return "fault" if state == "fault" else "stopped"

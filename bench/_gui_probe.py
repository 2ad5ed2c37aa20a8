"""How late the GUI thread serves a steady QTimer: the one measurement both GUI benches make.

A timer asks for a tick every ``tick_ms``; each tick's delay beyond that is time the GUI thread
was busy (or not scheduled). Qt is imported when a probe is made, so importing this is cheap.
"""

from __future__ import annotations

import time
from typing import Any


class LatenessProbe:
    """``start()``, ``stop()``; ``late`` holds the lateness of every tick in ms."""

    def __init__(self, tick_ms: int = 10, *, clamp: bool = True) -> None:
        from PySide6.QtCore import QElapsedTimer, QTimer

        self.tick_ms = tick_ms
        self.clamp = clamp  # negative lateness (a tick a little early) counts as 0
        self.late: list[float] = []
        self._clock = QElapsedTimer()
        self._last = 0.0
        self._timer = QTimer()
        self._timer.setInterval(tick_ms)
        self._timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = self._clock.nsecsElapsed() / 1e6
        if self._last:
            delay = now - self._last - self.tick_ms
            self.late.append(max(0.0, delay) if self.clamp else delay)
        self._last = now

    def start(self) -> None:
        self._clock.start()
        self._timer.start()

    def stop(self) -> None:
        self._timer.stop()


def spin(app: Any, seconds: float) -> float:
    """Run the event loop for ``seconds`` (wall time); returns the time it ran."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        app.processEvents()
        time.sleep(0.001)
    return time.monotonic() - t0

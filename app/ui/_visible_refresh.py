"""Re-read a page's data periodically, but only while the page is on screen, and when it is shown.

Pages that show data written by other threads or processes (audit trail, plant outputs) poll it;
polling a hidden page would only cost GUI-thread time, and a page that becomes visible must not
show data up to one interval old.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QEvent, QObject, QTimer
from PySide6.QtWidgets import QWidget

__all__ = ["RefreshWhileVisible"]


class RefreshWhileVisible(QObject):
    """Calls ``refresh`` every ``interval_ms`` while ``widget`` is visible, and on every show.

    Owned by ``widget`` (Qt parent), so it lives exactly as long as the page.
    """

    def __init__(self, widget: QWidget, refresh: Callable[[], None], interval_ms: int) -> None:
        super().__init__(widget)
        self._widget = widget
        self._refresh = refresh
        self.timer = QTimer(self, interval=interval_ms)
        self.timer.timeout.connect(self._tick)
        self.timer.start()
        # An event filter instead of a showEvent override: the page keeps its own showEvent.
        widget.installEventFilter(self)

    def _tick(self) -> None:
        if self._widget.isVisible():
            self._refresh()

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 - Qt's name
        if watched is self._widget and event.type() == QEvent.Type.Show:
            self._refresh()
        return False  # never swallow the event

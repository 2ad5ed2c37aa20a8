"""The operator's Run screen column: verdict banner, Start / Stop / Step, acknowledge, counters.

The image itself stays in the window's image column (as large as the window allows); this column
beside it holds what an operator reads from two metres. What the banner says comes from a Qt-free
:class:`~app.station.view_state.LineBanner` fed only with live results, so a frame under review
never takes it, and a stopped or faulted line never shows a stale verdict.
"""

from __future__ import annotations

from PySide6.QtCore import QTimer, Signal
from PySide6.QtGui import QResizeEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from app.station.inspection import Inspection
from app.station.stats import SessionStats
from app.station.view_state import LineBanner
from app.ui.verdict import VerdictPanel

HOLD_TICK_MS = 200  # how often a held verdict checks whether its time is up


class RunScreen(QWidget):
    """Banner + run buttons + counters. ``run_buttons`` is the controls' Start/Stop/Step row."""

    acknowledged = Signal()

    def __init__(
        self, run_buttons: QWidget, *, hold_s: float = 2.0, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.line = LineBanner(hold_s)
        self.verdict_panel = VerdictPanel(self)
        self.ack_button = QPushButton("Acknowledge NG (F9)", self)
        self.ack_button.setToolTip(
            f"The NG / ERROR verdict stays {hold_s:g} s on the banner; acknowledge it now"
        )
        self.ack_button.setMinimumHeight(36)
        self.ack_button.clicked.connect(self.acknowledge)
        self.newest_event = QLabel("", self)  # the newest alarm / fault from the events log
        self.newest_event.setWordWrap(True)
        self.newest_event.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.newest_event.setStyleSheet("color:#ffb74d;")
        self.newest_event.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.addWidget(run_buttons)
        self._status_row = QHBoxLayout()
        layout.addLayout(self._status_row)
        layout.addWidget(self.verdict_panel)
        layout.addWidget(self.ack_button)
        layout.addWidget(self.newest_event)
        layout.addStretch(1)
        self._timer = QTimer(self)
        self._timer.setInterval(HOLD_TICK_MS)
        self._timer.timeout.connect(self.refresh)
        self.refresh()

    def add_status(self, widget: QWidget) -> None:
        """A small lamp over the banner (e.g. the PLC link)."""
        self._status_row.addWidget(widget)

    # --- inputs from the window ----------------------------------------------------------------
    def set_line(self, state: str, reason: str | None = None) -> None:
        self.line.set_line(state, reason)
        self.refresh()

    def offer(self, inspection: Inspection) -> None:
        """A live result (never one under review)."""
        self.line.offer(inspection)
        self.refresh()

    def show_stats(self, stats: SessionStats) -> None:
        self.verdict_panel.show_stats(stats)

    def show_alarm(self, message: str | None) -> None:
        self.verdict_panel.show_alarm(message)

    def show_event(self, kind: str, message: str) -> None:
        self.newest_event.setText(f"latest {kind}: {message}")
        self.newest_event.setToolTip(message)
        self.newest_event.setVisible(True)

    def acknowledge(self) -> None:
        if self.line.acknowledge():
            self.acknowledged.emit()
        self.refresh()

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        # 380 px (a 1280-wide window) is the 24 pt design size; wider columns read from further
        self.verdict_panel.set_scale(event.size().width() / 380)

    # --- drawing ---------------------------------------------------------------------------------
    def refresh(self) -> None:
        self.verdict_panel.show_banner(self.line.banner())
        holding = self.line.holding()
        self.ack_button.setEnabled(holding)
        if holding and not self._timer.isActive():
            self._timer.start()
        elif not holding and self._timer.isActive():
            self._timer.stop()

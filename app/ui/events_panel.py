"""The Events workspace: errors, alarms, ERROR frames (file and reason), model swaps, recipe saves.

Reads the session's bounded ``EventLog`` once at start, then appends each ``event`` the bridge
delivers. Records are plain data (``time, kind, message, frame_id, file``); nothing is computed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

KINDS = ("error", "alarm", "frame_error", "model", "recipe", "fault", "state", "info")
KIND_COLOURS = {
    "error": "#ef5350",
    "fault": "#ce93d8",
    "alarm": "#ffa726",
    "frame_error": "#ffa726",
}
MAX_ROWS = 2000  # the core's log is bounded too; the table must not grow for a whole shift
COLUMNS = ("time", "kind", "message", "frame", "file")


def _field(record: Any, name: str) -> Any:
    return getattr(record, name, None)


def _clock(t: Any) -> str:
    try:
        return time.strftime("%H:%M:%S", time.localtime(float(t)))
    except (TypeError, ValueError):
        return str(t)


class EventsPanel(QWidget):
    """A table of the station's events, newest on top, filtered by kind."""

    newest_alarm = Signal(object)  # the newest "alarm" / "fault" / "error" record (Run screen)

    def __init__(self, records: Iterable[Any] = (), parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._records: list[Any] = []
        self.kind = QComboBox(self)
        self.kind.addItem("all kinds", None)
        for k in KINDS:
            self.kind.addItem(k, k)
        self.kind.setToolTip("Show only events of this kind")
        self.kind.currentIndexChanged.connect(self._refill)
        kind_label = QLabel("Show", self)
        kind_label.setBuddy(self.kind)
        self.clear_button = QPushButton("Clear view", self)
        self.clear_button.setToolTip("Empty this table (the events stay in the station's log)")
        self.clear_button.clicked.connect(self.clear)
        self.count = QLabel("", self)
        self.table = QTableWidget(0, len(COLUMNS), self)
        self.table.setHorizontalHeaderLabels(list(COLUMNS))
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setWordWrap(False)
        self.table.verticalHeader().setVisible(False)
        header = self.table.horizontalHeader()
        for col, mode in enumerate(
            (
                QHeaderView.ResizeMode.ResizeToContents,
                QHeaderView.ResizeMode.ResizeToContents,
                QHeaderView.ResizeMode.Stretch,
                QHeaderView.ResizeMode.ResizeToContents,
                QHeaderView.ResizeMode.Interactive,
            )
        ):
            header.setSectionResizeMode(col, mode)
        # long messages are elided and shown whole in the tooltip: no sideways scrolling
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.setToolTip("Station events, newest first; hover a row for the whole message")
        bar = QHBoxLayout()
        bar.addWidget(kind_label)
        bar.addWidget(self.kind)
        bar.addWidget(self.count, 1)
        bar.addWidget(self.clear_button)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.table, 1)
        for record in records:
            self._records.append(record)
        del self._records[:-MAX_ROWS]
        self._refill()

    def add(self, record: Any) -> None:
        """One new event (from the bridge's ``event`` signal)."""
        self._records.append(record)
        if len(self._records) > MAX_ROWS:
            del self._records[0]
            if self.table.rowCount() >= MAX_ROWS:
                self.table.removeRow(self.table.rowCount() - 1)
        if _field(record, "kind") in ("alarm", "fault", "error", "frame_error"):
            self.newest_alarm.emit(record)
        if self._wanted(record):
            self._insert(0, record)
        self._show_count()

    def records(self) -> list[Any]:
        """The records shown (after the filter), newest first."""
        return [r for r in reversed(self._records) if self._wanted(r)]

    def clear(self) -> None:
        self._records.clear()
        self._refill()

    def _wanted(self, record: Any) -> bool:
        kind = self.kind.currentData()
        return kind is None or _field(record, "kind") == kind

    def _refill(self) -> None:
        self.table.setRowCount(0)
        for record in self.records():
            self._insert(self.table.rowCount(), record)
        self._show_count()

    def _insert(self, row: int, record: Any) -> None:
        self.table.insertRow(row)
        frame_id = _field(record, "frame_id")
        file = _field(record, "file")
        message = str(_field(record, "message") or "")
        kind = str(_field(record, "kind") or "")
        cells = (
            _clock(_field(record, "time")),
            kind,
            message,
            "" if frame_id is None else str(frame_id),
            "" if file is None else str(file),
        )
        colour = KIND_COLOURS.get(kind)
        for col, text in enumerate(cells):
            item = QTableWidgetItem(text)
            item.setToolTip(f"{message}\n{file}" if file else message)
            if colour and col == 1:
                item.setForeground(QColor(colour))
            self.table.setItem(row, col, item)

    def _show_count(self) -> None:
        self.count.setText(f"{self.table.rowCount()} shown of {len(self._records)}")

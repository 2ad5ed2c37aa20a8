"""Integration page: each plant output's state and last messages, and the Run screen's PLC lamp.

Both widgets poll a Qt-free callable returning ``list[OutputStatus]`` (the output hub's
``statuses()``) once a second; statuses are in-memory reads, so polling on the GUI thread is cheap.
With no hub (the recipe has no ``[outputs.*]``), pass ``lambda: []``.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.station.outputs.base import OutputStatus
from app.ui._visible_refresh import RefreshWhileVisible

__all__ = ["IntegrationPanel", "PlcIndicator", "StatusSource", "plc_summary"]

StatusSource = Callable[[], list[OutputStatus]]

STATE_COLORS = {
    "connected": "#2e9d47",
    "listening": "#2e7dbd",
    "queueing": "#d08a00",
    "error": "#cc3333",
    "off": "#888888",
}
_COLUMNS = ("output", "state", "detail", "queued", "sent", "dropped")
NO_OUTPUTS = (
    "No plant outputs: add [outputs.opcua], [outputs.modbus] or [outputs.mqtt] to the recipe "
    "(docs/integration.md)."
)


def _state_text(st: OutputStatus) -> str:
    return f"queueing {st.queued}" if st.state == "queueing" else st.state


class IntegrationPanel(QWidget):
    """Table of outputs (state, detail, counters) and the selected output's last messages."""

    error = Signal(str)

    def __init__(
        self,
        hub_status_source: StatusSource,
        parent: QWidget | None = None,
        *,
        interval_ms: int = 1000,
    ) -> None:
        super().__init__(parent)
        self.source = hub_status_source
        self.statuses: list[OutputStatus] = []
        self._last_error = ""

        self.table = QTableWidget(0, len(_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(_COLUMNS))
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QTableWidget.SelectionMode.SingleSelection)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.setToolTip("Plant outputs; select one to see its last messages below")
        self.table.itemSelectionChanged.connect(self._show_messages)
        self.messages = QPlainTextEdit(readOnly=True)
        self.messages.setMaximumBlockCount(200)
        self.messages.setToolTip("The selected output's last connection events and messages")
        self.refresh_btn = QPushButton("Refresh")
        self.refresh_btn.setToolTip("Read the outputs' state now (it refreshes every second)")
        self.refresh_btn.clicked.connect(self.refresh)
        self.summary = QLabel()
        self.summary.setWordWrap(True)

        bar = QHBoxLayout()
        bar.addWidget(self.summary, 1)
        bar.addWidget(self.refresh_btn)
        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(self.table, 2)
        lay.addWidget(QLabel("Last messages"))
        lay.addWidget(self.messages, 1)

        self._poll = RefreshWhileVisible(self, self.refresh, interval_ms)
        self.refresh()

    def refresh(self) -> None:
        """Read the statuses and redraw (keeps the selected output selected)."""
        try:
            statuses = list(self.source())
        except Exception as exc:  # noqa: BLE001 - a failing hub must not break the page
            text = f"cannot read the outputs' state: {exc}"
            self.summary.setText(text)
            if text != self._last_error:
                self._last_error = text
                self.error.emit(text)
            return
        self._last_error = ""
        selected = self._selected_name()
        self.statuses = statuses
        self.table.setRowCount(len(statuses))
        for row, st in enumerate(statuses):
            cells = (st.name, _state_text(st), st.detail, str(st.queued), str(st.sent),
                     str(st.dropped))  # fmt: skip
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if col == 1:
                    item.setForeground(QColor(STATE_COLORS.get(st.state, "#000000")))
                if col >= 3:
                    item.setTextAlignment(
                        Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
                    )
                item.setToolTip(st.detail or st.state)
                self.table.setItem(row, col, item)
        self.table.resizeColumnsToContents()
        if statuses:
            names = [s.name for s in statuses]
            self.table.selectRow(names.index(selected) if selected in names else 0)
            bad = [s.name for s in statuses if s.state == "error"]
            self.summary.setText(
                f"{len(statuses)} output(s)" + (f"; in error: {', '.join(bad)}" if bad else "")
            )
        else:
            self.summary.setText(NO_OUTPUTS)
        self._show_messages()

    def _selected_name(self) -> str | None:
        rows = self.table.selectionModel().selectedRows()
        if rows and rows[0].row() < len(self.statuses):
            return self.statuses[rows[0].row()].name
        return None

    def _show_messages(self) -> None:
        name = self._selected_name()
        st = next((s for s in self.statuses if s.name == name), None)
        text = "\n".join(st.last_messages) if st is not None else ""
        if self.messages.toPlainText() != text:
            self.messages.setPlainText(text)
            self.messages.verticalScrollBar().setValue(self.messages.verticalScrollBar().maximum())


def plc_summary(statuses: list[OutputStatus]) -> tuple[str, str, str]:
    """(kind, text, tooltip) for the Run screen: kind "error" / "connected" / "queueing" / "none".

    An output in error wins (the operator must see it); then a live link; then a backlog while a
    broker is away; else no PLC.
    """
    tip = "\n".join(f"{s.name}: {_state_text(s)} — {s.detail}" for s in statuses) or NO_OUTPUTS
    states = {s.state for s in statuses}
    if "error" in states:
        bad = ", ".join(s.name for s in statuses if s.state == "error")
        return "error", f"PLC error ({bad})", tip
    if "connected" in states:
        return "connected", "PLC connected", tip
    if "queueing" in states:
        n = sum(s.queued for s in statuses if s.state == "queueing")
        return "queueing", f"PLC link down, {n} queued", tip
    return "none", "no PLC", tip


_LAMP = {"connected": "#2e9d47", "error": "#cc3333", "queueing": "#d08a00", "none": "#888888"}


class PlcIndicator(QLabel):
    """A small lamp for the Run screen: green "PLC connected", grey "no PLC", red "PLC error"."""

    def __init__(
        self,
        hub_status_source: StatusSource,
        parent: QWidget | None = None,
        *,
        interval_ms: int = 1000,
    ) -> None:
        super().__init__(parent)
        self.source = hub_status_source
        self.kind = "none"
        self._timer = QTimer(self, interval=interval_ms)
        self._timer.timeout.connect(self.refresh)
        self._timer.start()
        self.refresh()

    def refresh(self) -> None:
        try:
            kind, text, tip = plc_summary(list(self.source()))
        except Exception as exc:  # noqa: BLE001
            kind, text, tip = "error", "PLC error", f"cannot read the outputs' state: {exc}"
        self.kind = kind
        self.setText(f"● {text}")
        self.setToolTip(tip)
        self.setStyleSheet(f"QLabel {{ color: {_LAMP[kind]}; font-weight: bold; }}")

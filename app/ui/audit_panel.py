"""Audit trail page: the hash-chained audit rows, filtered by action, verified, exported as CSV.

Reading the newest rows is a bounded query on the GUI thread; verifying the whole chain and
writing the CSV read every row, so they run on worker threads.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import create_worker

from app.station.audit import ACTIONS, AuditCheck, AuditLog, AuditRow
from app.ui._visible_refresh import RefreshWhileVisible

__all__ = ["AuditPanel"]

ALL_ACTIONS = "all actions"
_COLUMNS = ("id", "time", "role", "user", "action", "target", "old", "new", "detail")


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


class AuditPanel(QWidget):
    """Audit rows (newest first) with an action filter, "Verify chain" and "Export CSV…"."""

    error = Signal(str)
    verified = Signal(object)  # AuditCheck
    exported = Signal(str, int)  # path, rows written

    def __init__(self, audit_log: AuditLog, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.audit = audit_log
        self.rows: list[AuditRow] = []

        self.action = QComboBox()
        self.action.setToolTip("Show only this kind of change")
        self.action.addItem(ALL_ACTIONS)
        self.action.addItems(list(ACTIONS))
        self.action.currentTextChanged.connect(self.refresh)
        self.limit = QSpinBox(minimum=10, maximum=100_000, value=500, singleStep=100)
        self.limit.setToolTip("Most rows shown (newest first)")
        self.limit.valueChanged.connect(self.refresh)
        self.refresh_btn = QPushButton("Refresh")
        self.refresh_btn.setToolTip("Read the audit trail again")
        self.refresh_btn.clicked.connect(self.refresh)
        self.verify_btn = QPushButton("Verify chain")
        self.verify_btn.setToolTip(
            "Recompute every row's hash and link: finds an edited, deleted or reordered row"
        )
        self.verify_btn.clicked.connect(self.verify)
        self.export_btn = QPushButton("Export CSV…")
        self.export_btn.setToolTip("Write the whole audit trail (with hashes) to a CSV file")
        self.export_btn.clicked.connect(self._ask_export)

        bar = QHBoxLayout()
        bar.addWidget(QLabel("Action"))
        bar.addWidget(self.action)
        bar.addWidget(QLabel("Rows"))
        bar.addWidget(self.limit)
        bar.addStretch(1)
        for b in (self.refresh_btn, self.verify_btn, self.export_btn):
            bar.addWidget(b)

        self.table = QTableWidget(0, len(_COLUMNS))
        self.table.setHorizontalHeaderLabels(list(_COLUMNS))
        self.table.setEditTriggers(QTableWidget.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QTableWidget.SelectionBehavior.SelectRows)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setToolTip("Who changed what and when (newest first)")
        self.status = QLabel("Chain not verified yet.")
        self.status.setWordWrap(True)

        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.status)

        # New entries come from the session and from other processes: re-read while visible.
        self._poll = RefreshWhileVisible(self, self.refresh, interval_ms=5000)
        self.refresh()

    def refresh(self) -> None:
        """Re-read the newest rows matching the action filter."""
        action = self.action.currentText()
        try:
            rows = self.audit.rows(
                action=None if action == ALL_ACTIONS else action, limit=self.limit.value()
            )
            known = self.audit.actions()
        except Exception as exc:  # noqa: BLE001 - AuditError or a closed log: say it, keep going
            self.status.setText(f"Cannot read the audit trail: {exc}")
            self.error.emit(str(exc))
            return
        for name in known:  # actions written by other code than the recommended list
            if self.action.findText(name) < 0:
                self.action.addItem(name)
        self.rows = rows
        self.table.setRowCount(len(rows))
        for r, row in enumerate(rows):
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.time))
            values = (str(row.id), when, row.role, row.user or "", row.action, row.target or "",
                      _cell(row.old), _cell(row.new), _cell(row.detail))  # fmt: skip
            for c, text in enumerate(values):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(r, c, item)

    # ---------------------------------------------------------------- verify
    def verify(self) -> None:
        """Walk the whole chain on a worker thread; the result shows below the table."""
        self.verify_btn.setEnabled(False)
        self.status.setText("Verifying the audit chain …")
        worker = create_worker(self.audit.verify, _ignore_errors=True)
        worker.returned.connect(self._verified)
        worker.errored.connect(self._verify_failed)
        worker.start()  # superqt keeps a running worker referenced (WorkerBase._worker_set)

    def _verified(self, check: AuditCheck) -> None:
        self.verify_btn.setEnabled(True)
        if check.ok:
            self.status.setText(f"✔ Audit chain intact: {check.rows} rows.")
            self.status.setStyleSheet("color: #2e9d47;")
        else:
            self.status.setText(
                f"✘ Audit chain BROKEN at row {check.first_bad_id}: {check.reason} "
                f"({check.rows} rows read)."
            )
            self.status.setStyleSheet("color: #cc3333; font-weight: bold;")
        self.verified.emit(check)

    def _verify_failed(self, exc: BaseException) -> None:
        self.verify_btn.setEnabled(True)
        self.status.setText(f"Verification failed: {exc}")
        self.error.emit(f"audit verification failed: {exc}")

    # ---------------------------------------------------------------- export
    def _ask_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export audit trail", str(Path.home() / "audit.csv"), "CSV (*.csv)"
        )
        if path:
            self.export_csv(path)

    def export_csv(self, path: str | Path) -> None:
        """Write every row (not only the shown ones) to ``path`` on a worker thread."""
        self.export_btn.setEnabled(False)
        self.status.setText(f"Exporting to {path} …")
        worker = create_worker(_export, self.audit, path, _ignore_errors=True)
        worker.returned.connect(self._exported)
        worker.errored.connect(self._export_failed)
        worker.start()  # superqt keeps a running worker referenced (WorkerBase._worker_set)

    def _exported(self, written: tuple[str, int]) -> None:
        path, n = written
        self.export_btn.setEnabled(True)
        self.status.setStyleSheet("")
        self.status.setText(f"{n} audit rows written to {path}")
        self.exported.emit(path, n)

    def _export_failed(self, exc: BaseException) -> None:
        self.export_btn.setEnabled(True)
        self.status.setText(f"CSV export failed: {exc}")
        self.error.emit(f"audit CSV export failed: {exc}")


def _export(audit: AuditLog, path: str | Path) -> tuple[str, int]:
    return str(path), int(audit.export_csv(path))

"""History: the newest inspections from the results store, filtered, openable, exportable.

A view of ``HistoryQuery`` (app/station/history_query.py). Store queries run on the GUI thread
but are bounded by the row limit (the store reads SQLite in WAL mode, so a query never waits for
the pipeline's writer). Reading archived PNGs and writing the CSV are disk work of unknown size:
they run on superqt workers. The table refreshes at most once a second while results arrive, and
only while the panel is visible. An opened row is emitted as ``frame_requested``; the window shows
it as REVIEW. A defect-class filter appears when the model (``set_card``) or the rows know
defect classes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QShowEvent
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableView,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import create_worker

from app.station.history_query import (
    ALL_CLASSES,
    MAX_ROWS,
    TIME_RANGES,
    VERDICTS,
    HistoryQuery,
)
from app.station.inspection import FrameResult
from app.station.store import StoredInspection
from app.ui.bridge import SessionBridge
from app.ui.class_legend import ClassCard

__all__ = ["HistoryPanel"]

_COLUMNS = ("time", "frame", "verdict", "defects", "area px", "reasons", "model", "thr", "archived")
_BRUSHES = {"NG": QColor(255, 90, 90, 70), "ERROR": QColor(255, 170, 0, 80)}


class _RowsModel(QAbstractTableModel):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[StoredInspection] = []

    def set_rows(self, rows: list[StoredInspection]) -> None:
        self.beginResetModel()
        self.rows = rows
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(_COLUMNS)

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = 0) -> Any:  # noqa: N802
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return _COLUMNS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = 0) -> Any:
        r = self.rows[index.row()]
        if role == Qt.ItemDataRole.BackgroundRole:
            return _BRUSHES.get(r.verdict)
        if role == Qt.ItemDataRole.ToolTipRole and _COLUMNS[index.column()] in ("reasons", "model"):
            return "; ".join(r.reasons) if _COLUMNS[index.column()] == "reasons" else r.model_id
        if role != Qt.ItemDataRole.DisplayRole:
            return None
        return (
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.timestamp)),
            r.frame_id,
            r.verdict,
            r.n_defects,
            r.total_area_px,
            "; ".join(r.reasons),
            r.model_id,
            f"{r.threshold:.2f}",
            "yes" if r.image_path is not None else "",
        )[index.column()]


class HistoryPanel(QWidget):
    """Recent inspections with verdict / time / model filters, open on double-click, CSV export.

    Opening a row emits ``frame_requested`` (the window shows it as REVIEW); the panel never
    reaches into the window.
    """

    error = Signal(str)
    frame_requested = Signal(object)  # FrameResult opened from the history
    exported = Signal(str, int)  # path, rows written

    def __init__(
        self, query: HistoryQuery, bridge: SessionBridge, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.query = query
        self._dirty = True
        f = query.filters

        self.verdict = QComboBox()
        self.verdict.addItems(list(VERDICTS))
        self.verdict.setCurrentText(f.verdict)
        self.verdict.setToolTip("Show only inspections with this verdict")
        self.period = QComboBox()
        self.period.addItems([label for label, _ in TIME_RANGES])
        self.period.setCurrentText(f.period)
        self.period.setToolTip("How far back to look")
        self.model_filter = QComboBox()
        self.model_filter.addItems(query.model_choices())
        self.model_filter.setToolTip("Show only inspections judged by this model")
        self.class_filter = QComboBox()
        self.class_filter.addItems(query.class_choices())
        self.class_filter.setToolTip("Show only inspections with a defect of this class")
        self.class_label = QLabel("Class")
        self.class_label.setBuddy(self.class_filter)
        self.limit = QSpinBox(minimum=1, maximum=MAX_ROWS, value=f.limit, singleStep=100)
        self.limit.setToolTip("Most rows shown (newest first)")
        refresh = QPushButton("Refresh")
        refresh.setToolTip("Query the results database again now")
        refresh.clicked.connect(self.refresh)
        self.export_btn = QPushButton("Export CSV…")
        self.export_btn.setToolTip("Write every row matching the filters (not only those shown)")
        self.export_btn.clicked.connect(self._ask_export)
        for combo in (self.verdict, self.period, self.model_filter, self.class_filter):
            combo.currentTextChanged.connect(self._filters_changed)
        self.limit.valueChanged.connect(self._filters_changed)
        bar = QHBoxLayout()
        for label, w in (("Verdict", self.verdict), ("Time", self.period), ("Model", self.model_filter),
                         ("Rows", self.limit)):  # fmt: skip
            bar.addWidget(QLabel(label))
            bar.addWidget(w)
        bar.insertWidget(6, self.class_label)  # after Model, before Rows
        bar.insertWidget(7, self.class_filter)
        self._show_class_filter()
        bar.addStretch(1)
        bar.addWidget(refresh)
        bar.addWidget(self.export_btn)

        self.model = _RowsModel()
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setToolTip("Double-click a row to open the frame with its overlay (REVIEW)")
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QTableView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        # fits the workspace without a sideways scroll bar: short columns take what they need,
        # reasons and model share the rest (elided, full text in the tooltip of the cell)
        header = self.table.horizontalHeader()
        for column, name in enumerate(_COLUMNS):
            mode = (
                QHeaderView.ResizeMode.Stretch
                if name in ("reasons", "model")
                else QHeaderView.ResizeMode.ResizeToContents
            )
            header.setSectionResizeMode(column, mode)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.doubleClicked.connect(lambda index: self.open_row(index.row()))
        self.status = QLabel("Double-click a row to open the frame with its overlay.")
        self.status.setWordWrap(True)

        lay = QVBoxLayout(self)
        lay.addLayout(bar)
        lay.addWidget(self.table, 1)
        lay.addWidget(self.status)

        bridge.result.connect(self._mark_dirty)
        # One timer both throttles result-driven refreshes (<= 1/s) and picks up rows written
        # by other processes (e.g. a headless run on the same database) every few seconds.
        self._timer = QTimer(self, interval=1000)
        self._timer.timeout.connect(self._tick)
        self._timer.start()
        self._ticks = 0

    # -------------------------------------------------------------- filters
    def filters(self) -> dict[str, Any]:
        """The current filters in ``store.recent`` / ``store.export_csv`` keywords."""
        return self.query.store_filters()

    def _filters_changed(self, *_: object) -> None:
        try:
            self.query.set_filters(
                verdict=self.verdict.currentText(),
                period=self.period.currentText(),
                model=self.model_filter.currentText() or self.query.filters.model,
                limit=self.limit.value(),
                defect_class=self.class_filter.currentText() or ALL_CLASSES,
            )
        except ValueError as exc:
            self.status.setText(str(exc))
            return
        self.refresh()

    def set_card(self, card: ClassCard | None) -> None:
        """A multi-class model's class names join the class filter's entries."""
        if card is not None and card.multiclass:
            self.query.classes_seen |= set(card.class_names)
        self._sync_combo(self.class_filter, self.query.class_choices(),
                         self.query.filters.defect_class)  # fmt: skip
        self._show_class_filter()

    def _show_class_filter(self) -> None:
        # a one-class station never had classes: its History looks as it always did
        shown = len(self.query.class_choices()) > 1
        self.class_label.setVisible(shown)
        self.class_filter.setVisible(shown)

    @staticmethod
    def _sync_combo(combo: QComboBox, choices: list[str], current: str) -> None:
        if [combo.itemText(i) for i in range(combo.count())] != choices:
            combo.blockSignals(True)
            combo.clear()
            combo.addItems(choices)
            combo.setCurrentText(current)
            combo.blockSignals(False)

    def _mark_dirty(self, _result: object = None) -> None:
        self._dirty = True

    def _tick(self) -> None:
        self._ticks += 1
        if self.isVisible() and (self._dirty or self._ticks % 5 == 0):
            self.refresh()

    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802
        super().showEvent(event)
        self.refresh()

    def refresh(self) -> None:
        self._dirty = False
        try:
            rows = self.query.rows()
        except Exception as exc:  # noqa: BLE001 - a locked / broken DB must not break the GUI
            self.status.setText(f"History unavailable: {exc}")
            return
        self.model.set_rows(rows)
        f = self.query.filters
        self._sync_combo(self.model_filter, self.query.model_choices(), f.model)
        self._sync_combo(self.class_filter, self.query.class_choices(), f.defect_class)
        self._show_class_filter()

    # ----------------------------------------------------------------- open
    def open_row(self, index: int) -> None:
        """Open row ``index``: from memory when still kept (full map), else from the archive."""
        row = self.model.rows[index]
        kept = self.query.in_memory(row)
        if kept is not None:  # no disk: at once
            self._show((kept, f"frame #{row.frame_id} (still in memory)"))
            return
        if row.image_path is None:
            try:
                self.query.open(row)  # raises with the message that explains why not
            except Exception as exc:  # noqa: BLE001 - shown, never fatal
                self.status.setText(str(exc))
            return
        self.status.setText(f"Loading frame #{row.frame_id} from {row.image_path} …")
        worker = create_worker(self.query.open, row, _start_thread=False, _ignore_errors=True)
        # Bound methods, not lambdas: Qt drops the connection if this panel is deleted first.
        worker.returned.connect(self._show)
        worker.errored.connect(self._open_failed)
        worker.start()

    def _open_failed(self, exc: BaseException) -> None:
        self.status.setText(f"Cannot open the frame: {exc}")

    def _show(self, opened: tuple[FrameResult, str]) -> None:
        result, what = opened
        self.status.setText(f"Showing {what} for review (Back to live to follow the line).")
        self.frame_requested.emit(result)

    # ---------------------------------------------------------------- export
    def _ask_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export inspections", str(Path.home() / "inspections.csv"), "CSV (*.csv)"
        )
        if path:
            self.export_csv(path)

    def export_csv(self, path: str | Path) -> None:
        """Write every row matching the current filters (not only the shown ones) to ``path``."""
        self.export_btn.setEnabled(False)
        self.status.setText(f"Exporting to {path} …")
        worker = create_worker(
            self.query.export_csv, path, _start_thread=False, _ignore_errors=True
        )
        worker.returned.connect(self._exported)
        worker.errored.connect(self._export_failed)
        worker.start()

    def _exported(self, written: tuple[str, int]) -> None:
        path, n = written
        self.export_btn.setEnabled(True)
        self.status.setText(f"{n} rows written to {path}")
        self.exported.emit(path, n)

    def _export_failed(self, exc: BaseException) -> None:
        self.export_btn.setEnabled(True)
        message = f"CSV export failed: {exc}"
        self.status.setText(message)
        self.error.emit(message)

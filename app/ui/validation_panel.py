"""Validation: the threshold table and PR curve of the running model on a chosen folder.

The panel shows a ``ValidationJob`` (app/station/validation_job.py): the job loads its own engine
and computes the set on a superqt worker with progress and cancel; after that, table, curve and
operating point are cheap re-scorings of the kept maps and follow the rules wanted now (the
``RulesModel``, throttled to 10 Hz).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    Signal,
)
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import create_worker, qthrottled

from app.station.inspection import Rules
from app.station.rules_model import RulesModel
from app.station.validation import ValidationSet
from app.station.validation_job import ThresholdRow, ValidationCancelled, ValidationJob
from app.ui.rules_panel import RulesSignals

COLUMNS = ("threshold", "TP", "TN", "FP", "FN", "precision", "recall", "FP rate")
_Index = QModelIndex | QPersistentModelIndex


class ThresholdTableModel(QAbstractTableModel):
    """``ThresholdRow`` list as a table; the row nearest the slider's threshold is highlighted."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._rows: list[ThresholdRow] = []
        self._marked = -1

    def set_rows(self, rows: Sequence[ThresholdRow]) -> None:
        self.beginResetModel()
        self._rows = list(rows)
        self.endResetModel()

    def rows(self) -> list[ThresholdRow]:
        return list(self._rows)

    def mark_threshold(self, threshold: float) -> int:
        """Highlight the row nearest ``threshold``; returns its index (-1 with no rows)."""
        if not self._rows:
            return -1
        nearest = min(
            range(len(self._rows)), key=lambda i: abs(self._rows[i].threshold - threshold)
        )
        if nearest != self._marked:
            self._marked = nearest
            self.dataChanged.emit(
                self.index(0, 0), self.index(len(self._rows) - 1, len(COLUMNS) - 1)
            )
        return nearest

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802, B008 (Qt API)
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: N802, B008 (Qt API)
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(  # noqa: N802 (Qt API)
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row = self._rows[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            values = (
                f"{row.threshold:.2f}",
                row.tp,
                row.tn,
                row.fp,
                row.fn,
                f"{row.precision:.3f}",
                f"{row.recall:.3f}",
                f"{row.fpr:.3f}",
            )
            return str(values[index.column()])
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.BackgroundRole and index.row() == self._marked:
            return QBrush(QColor("#fff59d"))
        if role == Qt.ItemDataRole.ForegroundRole and index.row() == self._marked:
            return QBrush(QColor("black"))
        return None


class ValidationPanel(QWidget):
    error = Signal(str)
    computed = Signal(object)  # ValidationSet
    _progress = Signal(int, int)  # emitted on the job's worker thread: queued to the GUI's

    def __init__(
        self, job: ValidationJob, rules: RulesModel, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.job = job
        self.rules = rules
        self._signals = RulesSignals(rules, self)
        self._computing = False
        self._table_area: int | None = None
        self._curve_threshold: float | None = None

        self.folder = QLineEdit(self)
        self.folder.setPlaceholderText("validation folder (images/ + masks/, or DAGM)")
        self.folder.setToolTip(
            "A labelled folder: images/ + masks/, DAGM (Label/ beside the images) or masks beside"
        )
        choose = QPushButton("Choose…", self)
        choose.setToolTip("Pick the validation folder")
        choose.clicked.connect(self._choose)
        self.compute_button = QPushButton("Compute", self)
        self.compute_button.setToolTip(
            "Run the running model once over the folder (off the line: it loads its own copy)"
        )
        self.compute_button.clicked.connect(lambda: self.compute())
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setToolTip("Stop the computation (between chunks of images)")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar(self)
        self.progress.setVisible(False)
        self.summary = QLabel("Choose a folder and press Compute.", self)
        self.summary.setWordWrap(True)

        self.model = ThresholdTableModel(self)
        self.table = QTableView(self)
        self.table.setModel(self.model)
        self.table.setToolTip("Image-level counts per threshold; the rules' threshold is marked")
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setMinimumHeight(150)

        self.plot = pg.PlotWidget(self)
        self.plot.setToolTip(
            "Precision / recall over the minimum area at the rules' threshold; the dot is now"
        )
        self.plot.setBackground("#202020")
        self.plot.setLabel("bottom", "recall")
        self.plot.setLabel("left", "precision")
        self.plot.setXRange(0, 1.04, padding=0)
        self.plot.setYRange(0, 1.06, padding=0)  # room for a point at precision 1
        self.plot.showGrid(x=True, y=True, alpha=0.3)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.setMinimumHeight(180)
        self.curve = self.plot.plot([], [], pen=pg.mkPen("#42a5f5", width=2))
        self.point = pg.ScatterPlotItem(size=14, brush=pg.mkBrush("#ffd600"), pen=pg.mkPen("k"))
        self.plot.addItem(self.point)

        row = QHBoxLayout()
        row.addWidget(self.folder, 1)
        row.addWidget(choose)
        row.addWidget(self.compute_button)
        row.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.progress)
        layout.addWidget(self.summary)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.plot, 1)
        # re-scoring the kept maps costs a connected-components pass per image: not per pixel moved
        self._refresh_throttled = qthrottled(self._refresh, timeout=100, parent=self)
        self._progress.connect(self._on_progress)
        self._signals.changed.connect(self.set_rules)

    @property
    def validation(self) -> ValidationSet | None:
        return self.job.result

    # --- computing ---------------------------------------------------------------------------------
    def _choose(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Validation folder", self.folder.text())
        if folder:
            self.folder.setText(folder)

    def compute(self, folder: Path | None = None) -> None:
        if self._computing:
            return
        try:
            path = self.job.check_folder(folder if folder else self.folder.text())
        except (OSError, ValueError) as exc:
            self.summary.setText(str(exc).capitalize())
            self.error.emit(str(exc).capitalize())
            return
        self.folder.setText(str(path))
        try:
            self.job.begin()
        except RuntimeError as exc:  # ValidationBusy: a job from before is still stopping
            self.error.emit(str(exc))
            return
        self._computing = True
        self.compute_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)  # busy until the first progress report gives a total
        self.progress.setVisible(True)
        self.summary.setText(f"Computing on {path} …")
        worker = create_worker(
            self.job.run, path, self._progress.emit, _start_thread=False, _ignore_errors=True
        )
        worker.returned.connect(self._on_computed)
        worker.errored.connect(self._on_failed)
        worker.finished.connect(self._on_finished)
        worker.start()

    def cancel(self) -> None:
        self.job.cancel()

    def shutdown(self, timeout_s: float = 10.0) -> None:
        """Window closing: cancel and wait (it stops between chunks), so no job outlives us."""
        self.job.cancel()
        self.job.wait(timeout_s)

    def is_computing(self) -> bool:
        return self._computing

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _on_failed(self, exc: BaseException) -> None:
        if isinstance(exc, ValidationCancelled):
            message = "Validation cancelled"
        else:
            message = f"Validation on {self.folder.text()} failed: {exc}"
        self.summary.setText(message)
        self.error.emit(message)

    def _on_computed(self, vs: ValidationSet) -> None:
        self._table_area = None
        self._curve_threshold = None
        self._refresh()
        self.computed.emit(vs)

    def _on_finished(self, *_: object) -> None:
        self._computing = False
        self.compute_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setVisible(False)

    # --- following the rules -------------------------------------------------------------------
    def set_rules(self, _rules: Rules | None = None) -> None:
        if self.job.result is not None:
            self._refresh_throttled()

    def flush(self) -> None:
        self._refresh_throttled.flush()

    def _refresh(self) -> None:
        rules = self.rules.rules
        point = self.job.operating_point(rules)
        if point is None:
            return
        if rules.min_area_px != self._table_area:
            self.model.set_rows(self.job.table(rules))
            self._table_area = rules.min_area_px
        if rules.threshold != self._curve_threshold:
            recall, precision = self.job.pr_curve(rules)
            self.curve.setData(recall, precision)
            self._curve_threshold = rules.threshold
        marked = self.model.mark_threshold(rules.threshold)
        if marked >= 0:
            self.table.scrollTo(self.model.index(marked, 0))
        self.point.setData([point.row.recall], [point.row.precision])
        self.summary.setText(point.summary())

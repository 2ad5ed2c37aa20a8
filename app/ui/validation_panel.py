"""Validation: the threshold table and PR curve of the current model on a chosen folder.

``ValidationSet.compute`` (load images and masks, infer once, keep the maps) runs on a QThread with
progress and cancel; it gets an engine of its own, loaded from the session's model file, because
an engine is driven by one thread and the pipeline's may be busy. After that, table, curve and
operating point are cheap re-scorings of the kept maps and follow the rules sliders.
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
    QThread,
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
from superqt.utils import qthrottled

from app.station.inspection import Rules
from app.station.session import InspectionSession
from app.station.validation import ValidationCancelled, ValidationSet
from app.ui.bridge import SessionBridge
from engines import load_engine
from engines.scoring import ThresholdRow

THRESHOLDS = tuple(round(0.1 * i, 1) for i in range(1, 10))
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


class ComputeThread(QThread):
    """Loads an engine and computes a ``ValidationSet``; ``cancel()`` stops between images."""

    progress = Signal(int, int)  # done, total
    computed = Signal(object)  # ValidationSet
    failed = Signal(str)

    def __init__(self, model_path: Path, folder: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model_path = model_path
        self.folder = folder

    def cancel(self) -> None:
        self.requestInterruption()

    def run(self) -> None:
        try:
            engine = load_engine(self.model_path)
            try:
                vs = ValidationSet.compute(
                    engine,
                    self.folder,
                    progress=lambda done, total: self.progress.emit(done, total),
                    cancel=self.isInterruptionRequested,
                )
            finally:
                engine.close()
        except ValidationCancelled:
            self.failed.emit("Validation cancelled")
        except Exception as exc:  # shown to the user; the station keeps running
            self.failed.emit(f"Validation on {self.folder} failed: {exc}")
        else:
            self.computed.emit(vs)


class ValidationPanel(QWidget):
    error = Signal(str)
    computed = Signal(object)  # ValidationSet

    def __init__(
        self, session: InspectionSession, bridge: SessionBridge, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.bridge = bridge
        self.validation: ValidationSet | None = None
        self._thread: ComputeThread | None = None
        self._rules = session.rules
        self._table_area: int | None = None
        self._curve_threshold: float | None = None

        self.folder = QLineEdit(self)
        self.folder.setPlaceholderText("validation folder (images/ + masks/, or DAGM)")
        choose = QPushButton("Choose…", self)
        choose.clicked.connect(self._choose)
        self.compute_button = QPushButton("Compute", self)
        self.compute_button.clicked.connect(self.compute)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar(self)
        self.progress.setVisible(False)
        self.summary = QLabel("Choose a folder and press Compute.", self)
        self.summary.setWordWrap(True)

        self.model = ThresholdTableModel(self)
        self.table = QTableView(self)
        self.table.setModel(self.model)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.setMinimumHeight(150)

        self.plot = pg.PlotWidget(self)
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

    # --- computing ---------------------------------------------------------------------------------
    def _choose(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Validation folder", self.folder.text())
        if folder:
            self.folder.setText(folder)

    def compute(self, folder: Path | None = None) -> None:
        if self._thread is not None:
            return
        path = Path(folder) if folder else Path(self.folder.text().strip())
        if not str(path) or not path.is_dir():
            self.error.emit(f"Validation folder {path} does not exist")
            return
        self.folder.setText(str(path))
        thread = ComputeThread(Path(self.session.model_path), path, self)
        thread.progress.connect(self._on_progress)
        thread.computed.connect(self._on_computed)
        thread.failed.connect(self._on_failed)
        thread.finished.connect(self._on_finished)
        self._thread = thread
        self.compute_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)  # busy until the first progress report gives a total
        self.progress.setVisible(True)
        self.summary.setText(f"Computing on {path} …")
        thread.start()

    def cancel(self) -> None:
        if self._thread is not None:
            self._thread.cancel()

    def shutdown(self, timeout_ms: int = 10_000) -> None:
        """Window closing: cancel and wait (it stops between chunks), so no thread outlives us."""
        if self._thread is not None:
            self._thread.cancel()
            self._thread.wait(timeout_ms)

    def is_computing(self) -> bool:
        return self._thread is not None

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _on_failed(self, message: str) -> None:
        self.summary.setText(message)
        self.error.emit(message)

    def _on_computed(self, vs: ValidationSet) -> None:
        self.validation = vs
        self._table_area = None
        self._curve_threshold = None
        self._refresh()
        self.computed.emit(vs)

    def _on_finished(self) -> None:
        if self._thread is not None:
            self._thread.deleteLater()
        self._thread = None
        self.compute_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.progress.setVisible(False)

    # --- following the rules -------------------------------------------------------------------
    def set_rules(self, rules: Rules) -> None:
        self._rules = rules
        if self.validation is not None:
            self._refresh_throttled()

    def flush(self) -> None:
        self._refresh_throttled.flush()

    def _refresh(self) -> None:
        vs = self.validation
        if vs is None:
            return
        threshold, min_area = self._rules.threshold, self._rules.min_area_px
        if min_area != self._table_area:
            self.model.set_rows(vs.table(min_area, THRESHOLDS))
            self._table_area = min_area
        if threshold != self._curve_threshold:
            precision, recall = vs.pr_curve(threshold)
            self.curve.setData(list(recall), list(precision))
            self._curve_threshold = threshold
        marked = self.model.mark_threshold(threshold)
        if marked >= 0:
            self.table.scrollTo(self.model.index(marked, 0))
        p = vs.point(threshold, min_area)
        self.point.setData([p.recall], [p.precision])
        self.summary.setText(
            f"{len(vs)} images · operating point: threshold {threshold:.2f}, min area "
            f"{min_area} px → precision {p.precision:.3f}, recall {p.recall:.3f}, "
            f"FP rate {p.fpr:.3f} (TP {p.tp} TN {p.tn} FP {p.fp} FN {p.fn})"
        )

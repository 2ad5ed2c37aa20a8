"""History: the newest inspections from the results store, filtered, openable, exportable.

Store queries run on the GUI thread but are bounded by the row limit (the store reads SQLite in
WAL mode, so a query never waits for the pipeline's writer). Reading archived PNGs and writing the
CSV are disk work of unknown size: they run on worker threads. The table refreshes at most once a
second while results arrive, and only while the panel is visible.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
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
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QTableView,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import create_worker

from app.station.frame import Frame
from app.station.inspection import FrameResult, Inspection, Rules
from app.station.inspector import binary_mask
from app.station.session import InspectionSession
from app.station.store import StoredInspection
from app.ui._workers import RunningWorkers
from app.ui.bridge import SessionBridge

# label -> seconds back from now (None = no lower bound)
TIME_RANGES: tuple[tuple[str, float | None], ...] = (
    ("last hour", 3600.0),
    ("last 8 h", 8 * 3600.0),
    ("last 24 h", 24 * 3600.0),
    ("last 7 days", 7 * 24 * 3600.0),
    ("all", None),
)
ALL_MODELS = "all models"
_COLUMNS = ("time", "frame", "verdict", "defects", "area px", "reasons", "model", "thr", "archived")
_NG_BRUSH = QColor(255, 90, 90, 70)


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
        if role == Qt.ItemDataRole.BackgroundRole and r.verdict == "NG":
            return _NG_BRUSH
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


def result_from_archive(row: StoredInspection, image: np.ndarray, mask: np.ndarray) -> FrameResult:
    """An archived NG frame as a FrameResult the live view can draw and the label panel edit.

    The archive keeps the thresholded mask, not the probability map, so the map is the mask
    (1.0 inside, 0.0 outside): re-judging it at any threshold gives back the archived defects.
    """
    frame = Frame(
        image=image,
        frame_id=row.frame_id,
        timestamp=row.timestamp,
        source=row.source,
        metadata={"path": str(row.image_path), "store_id": row.id, "archived": True},
    )
    inspection = Inspection(
        frame_id=row.frame_id,
        source=row.source,
        timestamp=row.timestamp,
        verdict="NG" if row.verdict == "NG" else "PASS",
        reasons=row.reasons,
        defects=row.defects,
        rules=Rules(threshold=row.threshold, min_area_px=row.min_area_px),
        model_id=row.model_id,
        timings_ms=dict(row.timings_ms),
    )
    prob = (mask > 0).astype(np.float32)
    prob.flags.writeable = False
    return FrameResult(frame=frame, prob=prob, inspection=inspection)


class HistoryPanel(QWidget):
    """Recent inspections with verdict / time / model filters, open on double-click, CSV export."""

    frame_opened = Signal(object)  # FrameResult opened from the history
    exported = Signal(str, int)  # path, rows written

    def __init__(
        self, session: InspectionSession, bridge: SessionBridge, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.bridge = bridge
        self._dirty = True
        self._models_seen: set[str] = set()
        self._workers = RunningWorkers()
        self._viewer: _FrameViewer | None = None

        self.verdict = QComboBox()
        self.verdict.addItems(["all", "NG", "PASS"])
        self.period = QComboBox()
        self.period.addItems([label for label, _ in TIME_RANGES])
        self.period.setCurrentText("last 24 h")
        self.model_filter = QComboBox()
        self.model_filter.addItem(ALL_MODELS)
        self.limit = QSpinBox(minimum=1, maximum=10_000, value=200, singleStep=100)
        self.limit.setToolTip("Most rows shown (newest first)")
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh)
        self.export_btn = QPushButton("Export CSV…")
        self.export_btn.clicked.connect(self._ask_export)
        for combo in (self.verdict, self.period, self.model_filter):
            combo.currentTextChanged.connect(self.refresh)
        self.limit.valueChanged.connect(self.refresh)
        bar = QHBoxLayout()
        for label, w in (("Verdict", self.verdict), ("Time", self.period), ("Model", self.model_filter),
                         ("Rows", self.limit)):  # fmt: skip
            bar.addWidget(QLabel(label))
            bar.addWidget(w)
        bar.addStretch(1)
        bar.addWidget(refresh)
        bar.addWidget(self.export_btn)

        self.model = _RowsModel()
        self.table = QTableView()
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QTableView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QTableView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
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
        verdict = self.verdict.currentText()
        seconds = dict(TIME_RANGES)[self.period.currentText()]
        model = self.model_filter.currentText()
        return {
            "verdict": None if verdict == "all" else verdict,
            "since": None if seconds is None else time.time() - seconds,
            "model_id": None if model == ALL_MODELS else model,
        }

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
            rows = self.session.store.recent(limit=self.limit.value(), **self.filters())
        except Exception as exc:  # noqa: BLE001 - a locked / broken DB must not break the GUI
            self.status.setText(f"History unavailable: {exc}")
            return
        self.model.set_rows(rows)
        self._note_models(r.model_id for r in rows)

    def _note_models(self, ids: Any) -> None:
        new = {i for i in ids if i} - self._models_seen
        if new:
            self._models_seen |= new
            current = self.model_filter.currentText()
            self.model_filter.blockSignals(True)
            self.model_filter.clear()
            self.model_filter.addItems([ALL_MODELS, *sorted(self._models_seen)])
            self.model_filter.setCurrentText(current)
            self.model_filter.blockSignals(False)

    # ----------------------------------------------------------------- open
    def open_row(self, index: int) -> None:
        """Open row ``index``: from memory when still kept (full map), else from the archive."""
        row = self.model.rows[index]
        for kept in reversed(self.session.history()):
            ins = kept.inspection
            if (
                ins.frame_id == row.frame_id
                and ins.source == row.source
                and abs(ins.timestamp - row.timestamp) < 1e-3
            ):
                self._show(kept, f"frame #{row.frame_id} (still in memory)")
                return
        if row.image_path is None:
            what = "PASS frames are not archived" if row.verdict == "PASS" else "not archived"
            self.status.setText(
                f"Frame #{row.frame_id} has no stored image ({what}; only NG frames are kept on "
                "disk) and it is no longer in memory."
            )
            return
        self.status.setText(f"Loading frame #{row.frame_id} from {row.image_path} …")
        worker = create_worker(_load_archived, self.session.store, row, _ignore_errors=True)
        # Bound methods, not lambdas: Qt drops the connection if this panel is deleted first.
        worker.returned.connect(self._archived)
        worker.errored.connect(self._open_failed)
        self._workers.start(worker)

    def _open_failed(self, exc: BaseException) -> None:
        self.status.setText(f"Cannot open the frame: {exc}")

    def _archived(self, loaded: tuple[StoredInspection, Any]) -> None:
        row, pair = loaded
        if pair is None:
            self.status.setText(
                f"The archived image of frame #{row.frame_id} is missing or unreadable."
            )
            return
        image, mask = pair
        self._show(result_from_archive(row, image, mask), f"frame #{row.frame_id} from the archive")

    def _show(self, result: FrameResult, what: str) -> None:
        show = getattr(self.window(), "show_frame", None)
        if callable(show):
            show(result)
            self.status.setText(
                f"Showing {what} in the live view (Resume live to follow the line)."
            )
        else:
            if self._viewer is None:
                self._viewer = _FrameViewer(self)
            self._viewer.show_result(result)
            self.status.setText(f"Showing {what}.")
        self.frame_opened.emit(result)

    # ---------------------------------------------------------------- export
    def _ask_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export inspections", str(Path.home() / "inspections.csv"), "CSV (*.csv)"
        )
        if path:
            self.export_csv(path)

    def export_csv(self, path: str | Path) -> None:
        """Write every row matching the current filters (not only the shown ones) to ``path``."""
        filters = self.filters()
        self.export_btn.setEnabled(False)
        self.status.setText(f"Exporting to {path} …")
        worker = create_worker(_export, self.session.store, path, filters, _ignore_errors=True)
        worker.returned.connect(self._exported)
        worker.errored.connect(self._export_failed)
        self._workers.start(worker)

    def _exported(self, written: tuple[str, int]) -> None:
        path, n = written
        self.export_btn.setEnabled(True)
        self.status.setText(f"{n} rows written to {path}")
        self.exported.emit(path, n)

    def _export_failed(self, exc: BaseException) -> None:
        self.export_btn.setEnabled(True)
        self.status.setText(f"CSV export failed: {exc}")


def _load_archived(store: Any, row: StoredInspection) -> tuple[StoredInspection, Any]:
    return row, store.load_archived(row)


def _export(store: Any, path: str | Path, filters: dict[str, Any]) -> tuple[str, int]:
    return str(path), int(store.export_csv(path, **filters))


class _FrameViewer(QDialog):
    """Image + defect mask, for when the panel is used outside the main window."""

    def __init__(self, parent: QWidget) -> None:
        super().__init__(parent)
        self.setWindowTitle("Inspection")
        self.resize(640, 560)
        view = pg.GraphicsLayoutWidget()
        vb = view.addViewBox(lockAspect=True, invertY=True)
        self.image = pg.ImageItem(axisOrder="row-major")
        self.mask = pg.ImageItem(axisOrder="row-major")
        vb.addItem(self.image)
        vb.addItem(self.mask)
        self._vb = vb
        self.caption = QLabel("")
        lay = QVBoxLayout(self)
        lay.addWidget(view, 1)
        lay.addWidget(self.caption)

    def show_result(self, result: FrameResult) -> None:
        img = result.frame.image
        top = 65535 if img.dtype == np.uint16 else 255
        shown = img[..., ::-1] if img.ndim == 3 else img  # BGR -> RGB
        self.image.setImage(np.ascontiguousarray(shown), autoLevels=False, levels=(0, top))
        lut = np.zeros((256, 4), np.uint8)
        lut[1:] = (255, 40, 40, 140)
        on = binary_mask(result.prob, result.inspection.rules)
        self.mask.setImage(on, autoLevels=False, levels=(0, 255), lut=lut)
        self._vb.autoRange(padding=0.02)
        ins = result.inspection
        self.caption.setText(
            f"#{ins.frame_id} {ins.verdict}: {'; '.join(ins.reasons) or 'no defect'}"
        )
        self.show()
        self.raise_()

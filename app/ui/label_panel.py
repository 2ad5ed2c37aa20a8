"""Technician labelling: pause on a frame, correct the model's mask, save it into the dataset.

The panel follows a *candidate* frame (the main window's ``frame_selected``: the live frame or one
opened from the history). "Pause on this frame" copies the candidate into the editor, starting from
the model's own binary mask at the current threshold, so the technician only paints what the model
missed and erases what it invented. The line keeps running meanwhile. Saving goes through
``app.station.labels.save_label`` (atomic, never overwrites) on a worker thread, so a slow disk
never freezes the station.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import create_worker

from app.station import labels
from app.station.inspection import FrameResult
from app.station.inspector import binary_mask
from app.station.session import InspectionSession
from app.ui._workers import RunningWorkers
from app.ui.bridge import SessionBridge
from app.ui.paint_canvas import PaintCanvas

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def default_label_name(result: FrameResult) -> str:
    """A file stem that tells where the frame came from: the source file's stem, else the id."""
    path = result.frame.metadata.get("path")
    stem = Path(str(path)).stem if path else f"frame{result.frame.frame_id:06d}"
    return _UNSAFE.sub("_", stem).strip("._") or f"frame{result.frame.frame_id:06d}"


class LabelPanel(QWidget):
    """Paint / erase the defect mask of one frame, or mark it a false alarm, and save it."""

    saved = Signal(object)  # labels.LabelPaths of the label just written
    save_failed = Signal(str)

    def __init__(
        self, session: InspectionSession, bridge: SessionBridge, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.bridge = bridge
        self._candidate: FrameResult | None = None
        self._shown_candidate: FrameResult | None = None
        self._editing: FrameResult | None = None
        self._window_connected = False
        self._saving = False
        self._workers = RunningWorkers()

        self._source = QLabel("No frame yet: start the line or open a frame from the history.")
        self._pause = QPushButton("Pause on this frame")
        self._pause.setToolTip(
            "Copy the frame shown in the live view into the editor (the line keeps running)"
        )
        self._pause.clicked.connect(self.pause_on_candidate)
        self._discard = QPushButton("Discard")
        self._discard.setToolTip("Close the frame being edited without saving")
        self._discard.clicked.connect(self.discard)
        top = QHBoxLayout()
        top.addWidget(self._source, 1)
        top.addWidget(self._pause)
        top.addWidget(self._discard)

        self.canvas = PaintCanvas(self)
        self._editing_label = QLabel("")

        self._name = QLineEdit()
        self._name.setPlaceholderText("label name")
        self._name.setToolTip("File stem; an existing label is never overwritten (_2, _3 … added)")
        self._save = QPushButton("Save label")
        self._save.setToolTip("Save the image and the painted mask into the recipe's dataset")
        self._save.clicked.connect(self.save)
        self._false_alarm = QPushButton("Mark false alarm")
        self._false_alarm.setToolTip("Save the image with an empty mask: nothing is wrong here")
        self._false_alarm.clicked.connect(self.mark_false_alarm)
        bottom = QHBoxLayout()
        bottom.addWidget(QLabel("Name"))
        bottom.addWidget(self._name, 1)
        bottom.addWidget(self._save)
        bottom.addWidget(self._false_alarm)

        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary = QLabel("")

        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self._editing_label)
        lay.addWidget(self.canvas, 1)
        lay.addLayout(bottom)
        lay.addWidget(self.status)
        lay.addWidget(self.summary)

        # Until a main window offers frame_selected, follow the live results directly.
        bridge.result.connect(self._on_live_result)
        # The candidate label is redrawn at a few Hz, not at camera rate.
        self._tick = QTimer(self, interval=250)
        self._tick.timeout.connect(self._show_candidate)
        self._tick.start()
        self._sync_enabled()
        self.refresh_summary()
        self._connect_window()  # built with the main window as parent: follow it from the start

    # ------------------------------------------------------------ candidate
    def showEvent(self, event: QShowEvent) -> None:  # noqa: N802 (Qt's name)
        super().showEvent(event)
        self._connect_window()

    def _connect_window(self) -> None:
        if self._window_connected:
            return
        signal = getattr(self.window(), "frame_selected", None)
        if signal is None:
            return
        # The window's signal covers live frames and paused / history ones; the raw live feed
        # would overwrite a history frame the technician just opened.
        self.bridge.result.disconnect(self._on_live_result)
        signal.connect(self.set_candidate)
        self._window_connected = True
        current = getattr(self.window(), "current_result", None)
        if callable(current) and (result := current()) is not None:
            self.set_candidate(result)

    def _on_live_result(self, result: FrameResult) -> None:
        self._candidate = result

    def set_candidate(self, result: FrameResult | None) -> None:
        """The frame "Pause on this frame" would take (live or chosen in the history)."""
        self._candidate = result

    def _show_candidate(self) -> None:
        c = self._candidate
        if c is self._shown_candidate:
            return
        self._shown_candidate = c
        if c is not None:
            self._source.setText(f"Shown now: {_describe(c)}")
        self._sync_enabled()

    # --------------------------------------------------------------- editing
    def pause_on_candidate(self) -> None:
        if self._candidate is not None:
            self.edit(self._candidate)

    def edit(self, result: FrameResult) -> None:
        """Put ``result`` in the editor, starting from the model's mask at the current threshold."""
        start = binary_mask(result.prob, self.session.rules)
        self._editing = result
        self.canvas.set_image(result.frame.image, start)
        self._name.setText(default_label_name(result))
        self._editing_label.setText(
            f"Editing {_describe(result)} — model mask at threshold "
            f"{self.session.rules.threshold:.2f}; paint what it missed, erase what it invented."
        )
        self.status.setText("")
        self._sync_enabled()

    def discard(self) -> None:
        self._editing = None
        self.canvas.clear_image()
        self._editing_label.setText("")
        self._sync_enabled()

    @property
    def editing(self) -> FrameResult | None:
        return self._editing

    # ---------------------------------------------------------------- saving
    def save(self) -> None:
        if self._editing is None:
            return
        self._write(self._editing, self.canvas.mask(), "defect")

    def mark_false_alarm(self) -> None:
        """Save the frame in the editor (or, if none, the shown one) with an empty mask."""
        result = self._editing or self._candidate
        if result is None:
            return
        if self._editing is None:
            self._name.setText(default_label_name(result))
        empty = np.zeros(result.frame.image.shape[:2], np.uint8)
        self._write(result, empty, "false_alarm")

    def dataset_dir(self) -> Path:
        """The recipe's dataset folder (relative ones live under the station's data dir)."""
        return self.session.recipe.dataset_path(self.session.settings.data_dir)

    def _write(self, result: FrameResult, mask: np.ndarray, kind: str) -> None:
        dataset = self.dataset_dir()
        name = self._name.text().strip() or default_label_name(result)
        self._saving = True
        self._sync_enabled()
        self.status.setText(f"Saving to {dataset} …")
        worker = create_worker(
            labels.save_label,
            dataset,
            result.frame.image,
            mask,
            name=name,
            kind=kind,
            _ignore_errors=True,
        )
        worker.returned.connect(self._on_saved)
        worker.errored.connect(self._on_save_error)
        self._workers.start(worker)

    def _on_saved(self, paths: Any) -> None:
        self._saving = False
        self.status.setText(f"Saved image {paths.image}\nand mask {paths.mask}")
        self._sync_enabled()
        self.saved.emit(paths)
        self.refresh_summary()

    def _on_save_error(self, exc: BaseException) -> None:
        self._saving = False
        message = f"Label NOT saved: {exc}"
        self.status.setText(message)
        self._sync_enabled()
        self.save_failed.emit(message)

    # --------------------------------------------------------------- summary
    def refresh_summary(self) -> None:
        worker = create_worker(summarise, self.dataset_dir(), _ignore_errors=True)
        # Bound methods, not lambdas: Qt drops the connection if this panel is deleted first.
        worker.returned.connect(self.summary.setText)
        worker.errored.connect(self._summary_failed)
        self._workers.start(worker)

    def _summary_failed(self, exc: BaseException) -> None:
        self.summary.setText(f"Dataset unreadable: {exc}")

    def _sync_enabled(self) -> None:
        busy = self._saving
        self._pause.setEnabled(self._candidate is not None)
        self._discard.setEnabled(self._editing is not None)
        self._save.setEnabled(self._editing is not None and not busy)
        self._false_alarm.setEnabled(
            (self._editing is not None or self._candidate is not None) and not busy
        )
        self._name.setEnabled(self._editing is not None)


def summarise(folder: Path) -> str:
    """One line about an images+masks dataset (reads every mask: call it off the GUI thread)."""
    n, defective, normal = labels.dataset_summary(folder)
    return f"Dataset {folder}: {n} images — {defective} with a defect, {normal} defect-free"


def _describe(result: FrameResult) -> str:
    ins = result.inspection
    n = len(ins.defects)
    return (
        f"frame #{result.frame.frame_id} from {result.frame.source} — {ins.verdict}, {n} defect(s)"
    )

"""Technician labelling over a ``LabelSession`` (app/station/label_session.py).

The session follows the frame on screen (live, or under review: paused, stepped, opened from the
history) through the window's ``ViewState``. "Pause on this frame" copies it into the editor,
starting from the model's own binary mask under the rules wanted now, so the technician only
paints what the model missed and erases what it invented. The line keeps running meanwhile.
With a multi-class model (``set_card``) the painter gets a class picker and the label is saved
class-index, with the dataset's ``classes.txt``.
Saving runs on a superqt worker, so a slow disk never freezes the station.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Qt, QTimer, Signal
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
from app.station.label_session import LabelError, LabelSession, default_label_name, describe
from app.ui.class_legend import ClassCard, card_classes
from app.ui.paint_canvas import PaintCanvas

__all__ = ["LabelPanel"]


class _SessionSignals(QObject):
    """The label session's events as signals (``saved`` arrives from the saving thread)."""

    candidate = Signal(object)
    editing = Signal(object)
    saved = Signal(object)

    def __init__(self, session: LabelSession, parent: QObject | None = None) -> None:
        super().__init__(parent)
        unsubscribe = session.subscribe(lambda event, payload: getattr(self, event).emit(payload))
        self.destroyed.connect(lambda *_: unsubscribe())


class LabelPanel(QWidget):
    """Paint / erase the defect mask of one frame, or mark it a false alarm, and save it."""

    error = Signal(str)
    saved = Signal(object)  # labels.LabelPaths of the label just written
    save_failed = Signal(str)

    def __init__(self, session: LabelSession, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self._signals = _SessionSignals(session, self)
        self._shown_candidate: FrameResult | None = None
        self._saving = False
        self._colours: dict[str, str] = {}

        self._source = QLabel("No frame yet: start the line or open a frame from the history.")
        self._pause = QPushButton("Pause on this frame")
        self._pause.setToolTip(
            "Copy the frame shown in the image view into the editor (the line keeps running)"
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
        self.canvas.set_empty_text(
            "Nothing in the editor. “Pause on this frame” copies the frame shown in the image "
            "view here, with the model's mask to correct; the line keeps running."
        )
        self._editing_label = QLabel("")
        self._editing_label.setWordWrap(True)

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
        self.summary.setWordWrap(True)

        lay = QVBoxLayout(self)
        lay.addLayout(top)
        lay.addWidget(self._editing_label)
        lay.addWidget(self.canvas, 1)
        lay.addLayout(bottom)
        lay.addWidget(self.status)
        lay.addWidget(self.summary)

        # The candidate caption is redrawn at a few Hz, not at camera rate.
        self._tick = QTimer(self, interval=250)
        self._tick.timeout.connect(self._show_candidate)
        self._tick.start()
        self._signals.saved.connect(self._on_saved)
        self._sync_enabled()
        self.refresh_summary()

    # ------------------------------------------------------------ candidate
    def set_candidate(self, result: FrameResult | None) -> None:
        """The frame "Pause on this frame" would take (normally set by the view state)."""
        self.session.set_candidate(result)
        self._show_candidate()

    def _show_candidate(self) -> None:
        c = self.session.candidate
        if c is self._shown_candidate:
            return
        self._shown_candidate = c
        if c is not None:
            self._source.setText(f"Shown now: {describe(c)}")
        self._sync_enabled()

    # --------------------------------------------------------------- classes
    def set_card(self, card: ClassCard | None) -> None:
        """The running model: several classes give the painter a class picker (next frame)."""
        names, colours = card_classes(card)
        self._colours = dict(zip(names, colours, strict=True))
        self.session.set_classes(names)

    # --------------------------------------------------------------- editing
    def pause_on_candidate(self) -> None:
        if self.session.candidate is not None:
            self.edit(self.session.candidate)

    def edit(self, result: FrameResult) -> None:
        """Put ``result`` in the editor, starting from the model's mask at the current threshold."""
        try:
            start = self.session.edit(result)
        except LabelError as exc:
            self.status.setText(str(exc))
            self.error.emit(str(exc))
            return
        classes = self.session.editing_classes
        self.canvas.set_classes(classes, [self._colours.get(n, "#ff2828") for n in classes])
        self.canvas.set_image(result.frame.image, start)
        self._name.setText(self.session.name)
        what = "paint what it missed, erase what it invented"
        if classes and not start.any() and result.extra.get("class_prob") is None:
            what = "no class map kept for this frame: paint each defect with its class"
        elif classes:
            what += "; pick the class before painting"
        self._editing_label.setText(
            f"Editing {describe(result)} — model mask at threshold "
            f"{self.session.start_threshold:.2f}; {what}."
        )
        self.status.setText("")
        self._sync_enabled()

    def discard(self) -> None:
        self.session.discard()
        self.canvas.clear_image()
        self._editing_label.setText("")
        self._sync_enabled()

    @property
    def editing(self) -> FrameResult | None:
        return self.session.editing

    # ---------------------------------------------------------------- saving
    def save(self) -> None:
        if self.session.editing is None:
            return
        self.session.set_mask(self.canvas.mask())
        self._write(self.session.save)

    def mark_false_alarm(self) -> None:
        """Save the frame in the editor (or, if none, the shown one) with an empty mask."""
        if self.session.editing is None and self.session.candidate is not None:
            self._name.setText(default_label_name(self.session.candidate))
        self._write(self.session.mark_false_alarm)

    def dataset_dir(self) -> Path:
        return self.session.dataset_dir()

    def _write(self, save: Any) -> None:
        name = self._name.text().strip() or None
        self._saving = True
        self._sync_enabled()
        self.status.setText(f"Saving to {self.dataset_dir()} …")
        worker = create_worker(save, name, _start_thread=False, _ignore_errors=True)
        # the label reaches _on_saved through the session's "saved" event (queued signal)
        worker.errored.connect(self._on_save_error)
        worker.start()

    def _on_saved(self, paths: labels.LabelPaths) -> None:
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
        self.error.emit(message)

    # --------------------------------------------------------------- summary
    def refresh_summary(self) -> None:
        worker = create_worker(self.session.summary, _start_thread=False, _ignore_errors=True)
        # Bound methods, not lambdas: Qt drops the connection if this panel is deleted first.
        worker.returned.connect(self.summary.setText)
        worker.errored.connect(self._summary_failed)
        worker.start()

    def _summary_failed(self, exc: BaseException) -> None:
        self.summary.setText(f"Dataset unreadable: {exc}")

    def _sync_enabled(self) -> None:
        busy = self._saving
        editing = self.session.editing is not None
        candidate = self.session.candidate is not None
        self._pause.setEnabled(candidate)
        self._discard.setEnabled(editing)
        self._save.setEnabled(editing and not busy)
        self._false_alarm.setEnabled((editing or candidate) and not busy)
        self._name.setEnabled(editing)

"""Start / stop / single step, the source choice and the recipe file.

Everything that may block (starting or stopping the pipeline, one synchronous step, opening a
source, listing GenICam devices) runs on a superqt worker; the buttons only send intent and follow
the session's ``state`` events.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)
from shiboken6 import isValid
from superqt.utils import FunctionWorker, create_worker

from app.station.session import InspectionSession, source_options
from app.station.sources import CameraSettings, SourceError, list_devices, parse_spec
from app.ui.bridge import SessionBridge

SOURCE_KINDS = ("Image folder", "GenICam device", "Video file", "USB camera")
TRIGGERS = ("(as is)", "off", "software", "hardware")


class CameraBox(QGroupBox):
    """Exposure, gain and trigger of a GenICam source; disabled (with the reason) otherwise.

    The values go into the source options and the source is reopened with them (the core writes
    them to the camera's nodes, and refuses with a message the ones the camera does not have).
    A spin box at its minimum means "leave the camera's value as is".
    """

    apply_requested = Signal(object)  # CameraSettings

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("Camera", parent)
        self.exposure = QDoubleSpinBox(self)
        self.exposure.setRange(0, 10_000_000)
        self.exposure.setSuffix(" µs")
        self.exposure.setSpecialValueText("(as is)")
        self.gain = QDoubleSpinBox(self)
        self.gain.setRange(-1, 48)
        self.gain.setSuffix(" dB")
        self.gain.setSpecialValueText("(as is)")
        self.gain.setValue(-1)
        self.trigger = QComboBox(self)
        self.trigger.addItems(list(TRIGGERS))
        self.apply_button = QPushButton("Apply to camera", self)
        self.apply_button.setToolTip("Reopen the camera with these settings")
        self.apply_button.clicked.connect(lambda: self.apply_requested.emit(self.settings()))
        grid = QGridLayout(self)
        grid.addWidget(QLabel("Exposure", self), 0, 0)
        grid.addWidget(self.exposure, 0, 1)
        grid.addWidget(QLabel("Gain", self), 0, 2)
        grid.addWidget(self.gain, 0, 3)
        grid.addWidget(QLabel("Trigger", self), 1, 0)
        grid.addWidget(self.trigger, 1, 1)
        grid.addWidget(self.apply_button, 1, 2, 1, 2)
        self._camera = False
        self._editable = True
        self._running = False
        self._missing: dict[str, str] = {}
        self._controls = {
            "exposure_us": self.exposure,
            "gain_db": self.gain,
            "trigger": self.trigger,
        }

    def settings(self) -> CameraSettings:
        trigger = self.trigger.currentText()
        return CameraSettings(
            exposure_us=self.exposure.value() or None,
            gain_db=None if self.gain.value() < 0 else self.gain.value(),
            trigger=None if trigger == TRIGGERS[0] else trigger,  # type: ignore[arg-type]  # a TRIGGERS entry
        )

    def show_source(
        self, spec: str, camera: CameraSettings, missing: dict[str, str] | None = None
    ) -> None:
        """``missing``: {control: reason} for controls the open device lacks (greyed out)."""
        try:
            self._camera = parse_spec(spec).kind == "genicam"
        except SourceError:
            self._camera = False
        self._missing = dict(missing or {})
        self.exposure.setValue(camera.exposure_us or 0)
        self.gain.setValue(-1 if camera.gain_db is None else camera.gain_db)
        self.trigger.setCurrentText(camera.trigger or TRIGGERS[0])
        self._update()

    def set_state(self, *, running: bool, editable: bool) -> None:
        self._running, self._editable = running, editable
        self._update()

    def _update(self) -> None:
        self.setEnabled(self._camera and self._editable and not self._running)
        if not self._camera:
            why = "Exposure, gain and trigger exist only on GenICam cameras"
        elif not self._editable:
            why = "Camera settings need engineer mode"
        elif self._running:
            why = "Stop the line to change camera settings"
        else:
            why = "Applied when the camera is reopened"
        self.setToolTip(why)
        for control, widget in self._controls.items():
            reason = self._missing.get(control)
            widget.setEnabled(reason is None)
            widget.setToolTip(reason or why)
        self.apply_button.setEnabled(len(self._missing) < len(self._controls))


class ControlsPanel(QWidget):
    """Run controls, source and recipe choice, camera settings; every call on a worker.

    The Start / Stop / Step row is its own widget (``run_buttons``): the window puts it on the
    Run screen, while the source and camera boxes (this widget) go to the Source workspace.
    """

    error = Signal(str)
    stepped = Signal(object)  # FrameResult of a single step
    recipe_open_requested = Signal(Path)
    source_opened = Signal(str)  # spec

    def __init__(
        self, session: InspectionSession, bridge: SessionBridge, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.bridge = bridge
        # start/stop/step/open in flight: the buttons wait for them (superqt itself keeps the
        # workers referenced; this counts them)
        self._in_flight = 0
        self._busy = False
        self._editable = True
        self._camera = source_options(session.recipe).camera

        self.run_buttons = QWidget(self)
        self.start_button = QPushButton("▶ Start", self.run_buttons)
        self.start_button.setToolTip("Start inspecting the line (F5 or Space)")
        self.stop_button = QPushButton("■ Stop", self.run_buttons)
        self.stop_button.setToolTip("Stop inspecting (F5 or Space); the verdict then says STOPPED")
        self.step_button = QPushButton("Step", self.run_buttons)
        self.step_button.setToolTip("Inspect one frame from the source, while stopped (F10)")
        run_row = QHBoxLayout(self.run_buttons)
        run_row.setContentsMargins(0, 0, 0, 0)
        for b in (self.start_button, self.stop_button, self.step_button):
            b.setMinimumHeight(40)
            run_row.addWidget(b)

        self.kind = QComboBox(self)
        self.kind.addItems(list(SOURCE_KINDS))
        self.kind.setToolTip("Kind of source: image folder, GenICam camera, video file, USB camera")
        self.stack = QStackedWidget(self)
        self.folder_button = QPushButton("Choose folder…", self)
        self.folder_button.setToolTip(
            "Inspect the images of a folder (replayed at the recipe's fps)"
        )
        self.devices = QComboBox(self)
        self.devices.setPlaceholderText("no device listed")
        self.devices.setToolTip("GenICam devices found by Refresh")
        self.refresh_button = QPushButton("Refresh", self)
        self.refresh_button.setToolTip("List GenICam devices (GenTL producers from the settings)")
        self.open_device_button = QPushButton("Open", self)
        self.open_device_button.setToolTip("Use the chosen GenICam device as the source")
        self.open_device_button.setEnabled(False)  # until Refresh has listed a device
        self.video_button = QPushButton("Choose video…", self)
        self.video_button.setToolTip("Inspect the frames of a video file")
        self.usb_index = QSpinBox(self)
        self.usb_index.setRange(0, 16)
        self.usb_index.setToolTip("Index of the USB / V4L2 camera (0 = the first)")
        self.open_usb_button = QPushButton("Open", self)
        self.open_usb_button.setToolTip("Use this USB camera as the source")
        self.stack.addWidget(self._row(self.folder_button))
        self.stack.addWidget(self._row(self.devices, self.refresh_button, self.open_device_button))
        self.stack.addWidget(self._row(self.video_button))
        self.stack.addWidget(self._row(QLabel("index", self), self.usb_index, self.open_usb_button))
        self.kind.currentIndexChanged.connect(self.stack.setCurrentIndex)
        self.source_label = QLabel(self)
        self.source_label.setWordWrap(True)
        self.recipe_button = QPushButton("Open recipe…", self)
        self.recipe_button.setToolTip("Open another product's recipe (model, rules, source)")
        self.camera = CameraBox(self)
        self.camera.apply_requested.connect(self.apply_camera)

        source_box = QGroupBox("Source", self)
        source_layout = QGridLayout(source_box)
        source_layout.addWidget(self.kind, 0, 0)
        source_layout.addWidget(self.stack, 0, 1)
        source_layout.addWidget(self.source_label, 1, 0)
        source_layout.addWidget(self.recipe_button, 1, 1)
        source_layout.setColumnStretch(1, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.hint = QLabel("", self)  # why the boxes are greyed out, when they are
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color:#ef6c00;")
        layout.addWidget(self.hint)
        layout.addWidget(source_box)
        layout.addWidget(self.camera)
        layout.addStretch(1)

        self.start_button.clicked.connect(self.start)
        self.stop_button.clicked.connect(self.stop)
        self.step_button.clicked.connect(self.step)
        self.folder_button.clicked.connect(self._choose_folder)
        self.refresh_button.clicked.connect(self.refresh_devices)
        self.open_device_button.clicked.connect(self._open_device)
        self.video_button.clicked.connect(self._choose_video)
        self.open_usb_button.clicked.connect(
            lambda: self.open_source(f"video:{self.usb_index.value()}")
        )
        self.recipe_button.clicked.connect(self._choose_recipe)
        bridge.state.connect(self._update_buttons)
        self._update_buttons(session.running)
        self._show_source()

    def _row(self, *widgets: QWidget) -> QWidget:
        row = QWidget(self)
        layout = QHBoxLayout(row)
        layout.setContentsMargins(0, 0, 0, 0)
        for w in widgets:
            layout.addWidget(w)
        return row

    # --- running ---------------------------------------------------------------------------------
    def _run(
        self,
        fn: Callable[..., Any],
        *args: Any,
        on_done: Callable[[Any], None] | None = None,
        what: str,
        **kwargs: Any,
    ) -> FunctionWorker[Any]:
        """Run ``fn`` on a worker thread; errors go to ``error`` with ``what`` in front."""
        worker = create_worker(fn, *args, _start_thread=False, **kwargs)
        if on_done is not None:
            worker.returned.connect(on_done)
        worker.errored.connect(lambda exc: self.error.emit(f"{what}: {exc}"))
        self._in_flight += 1
        worker.finished.connect(self._finished)
        self._busy = True
        self._update_buttons(self.session.running)
        worker.start()
        return worker

    def _finished(self) -> None:
        self._in_flight -= 1
        if not isValid(self.start_button):
            return  # the window closed while the worker ran (its result is of no use now)
        self._busy = self._in_flight > 0
        self._update_buttons(self.session.running)
        self._show_source()

    def busy(self) -> bool:
        return self._busy

    def start(self) -> None:
        self._run(self.session.start, what="Cannot start")

    def stop(self) -> None:
        self._run(self.session.stop, what="Cannot stop")

    def step(self) -> None:
        self._run(self.session.step, on_done=self._stepped, what="Step failed")

    def _stepped(self, result: object) -> None:
        if result is None:
            self.error.emit("Step: no frame (the source has no more, or the line is running)")
        else:
            self.stepped.emit(result)

    def _update_buttons(self, running: bool) -> None:
        idle = not self._busy
        self.start_button.setEnabled(idle and not running)
        self.stop_button.setEnabled(idle and running)
        self.step_button.setEnabled(idle and not running)
        # a source is swapped only while stopped: the acquisition thread owns the running one
        for w in (self.kind, self.stack, self.recipe_button):
            w.setEnabled(idle and not running and self._editable)
        self.camera.set_state(running=running or not idle, editable=self._editable)
        if not self._editable:
            self.hint.setText("Choosing the source, camera and recipe needs engineer mode.")
        elif running:
            self.hint.setText("Stop the line (F5) to change the source, camera or recipe.")
        else:
            self.hint.setText("")
        self.hint.setVisible(bool(self.hint.text()))

    def set_editable(self, editable: bool) -> None:
        """Operators start and stop; choosing the source, recipe and camera is for engineers."""
        self._editable = editable
        self._update_buttons(self.session.running)

    # --- source ------------------------------------------------------------------------------------
    def open_source(self, spec: str, camera: CameraSettings | None = None) -> None:
        options = replace(source_options(self.session.recipe), camera=camera or self._camera)

        def opened(_none: object) -> None:
            self._camera = options.camera
            self.source_opened.emit(spec)

        self._run(
            self.session.open_source,
            spec,
            options=options,
            on_done=opened,
            what=f"Cannot open {spec}",
        )

    def apply_camera(self, camera: CameraSettings) -> None:
        self.open_source(self.session.source_spec, camera)

    def _show_source(self) -> None:
        spec = self.session.source_spec
        self.source_label.setText(f"Source: {spec or 'none'}")
        self.camera.show_source(spec, self._camera, self.session.missing_controls)

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Image folder")
        if folder:
            self.open_source(f"folder:{folder}")

    def _choose_video(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Video file", "", "Video (*.mp4 *.avi *.mkv *.mov);;All files (*)"
        )
        if path:
            self.open_source(f"video:{path}")

    def refresh_devices(self) -> None:
        self.refresh_button.setEnabled(False)
        worker = create_worker(list_devices, _start_thread=False)
        worker.returned.connect(self._show_devices)
        worker.errored.connect(lambda exc: self.error.emit(f"Device listing failed: {exc}"))
        worker.finished.connect(lambda *_: self.refresh_button.setEnabled(True))
        worker.start()  # superqt keeps it referenced until it finishes

    def _show_devices(self, devices: list[Any]) -> None:
        self.devices.clear()
        for d in devices:
            label = f"{d.vendor} {d.model} ({d.serial or d.id})"
            self.devices.addItem(label, f"genicam:{d.serial or d.id}@{d.cti}")
        if devices:
            self.devices.setCurrentIndex(0)  # select the first device explicitly
        self.open_device_button.setEnabled(bool(devices))

    def _open_device(self) -> None:
        spec = self.devices.currentData()
        if spec:
            self.open_source(str(spec))

    def _choose_recipe(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Recipe", "", "Recipe (*.toml)")
        if path:
            self.recipe_open_requested.emit(Path(path))

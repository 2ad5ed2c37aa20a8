"""Threshold and rule sliders over the ``RulesModel``: every move re-judges the frame on screen.

The panel holds no rules of its own. A slider move calls ``RulesModel.set`` (throttled to 20 Hz);
the model is the single owner of the live rules and hands them to the session off the GUI thread,
latest wins. The area sliders are logarithmic and span 1 px … the frame's area, so a 5 px speck
and an 8,000 px DAGM defect are both a short drag away; their spin boxes take any value the
recipe allows.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import create_worker, qthrottled

from app.station.inspection import FrameResult, Rules
from app.station.rules_model import RulesModel
from app.ui.bridge import SessionBridge

AREA_MAX = 2**31 - 1  # the recipe takes any non-negative int; a QSpinBox stops here
DEFAULT_FRAME_AREA = 1024 * 1024  # the area sliders' top until a frame has been seen
LOG_STEPS = 1000  # slider positions on a log axis


class SliderSpin(QWidget):
    """A slider and a spin box showing one number; the spin box may go past the slider's range.

    Linear: ``decimals`` maps the float value onto the integer slider (2 -> hundredths).
    Logarithmic (``log=True``, integers >= 0): the slider spans 1 … ``slider_max`` in
    ``LOG_STEPS`` steps, its left end meaning 0 (no limit); ``set_slider_max`` moves the top.
    """

    value_changed = Signal(float)

    def __init__(
        self,
        minimum: float,
        maximum: float,
        *,
        slider_max: float | None = None,
        decimals: int = 0,
        log: bool = False,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._scale = 10**decimals
        self._log = log
        self._top = float(maximum if slider_max is None else slider_max)
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        if log:
            self.slider.setRange(0, LOG_STEPS)
        else:
            self.slider.setRange(round(minimum * self._scale), round(self._top * self._scale))
        if decimals:
            spin = QDoubleSpinBox(self)
            spin.setDecimals(decimals)
            spin.setSingleStep(1 / self._scale)
            spin.setRange(minimum, maximum)
            self.spin: QDoubleSpinBox | QSpinBox = spin
        else:
            self.spin = QSpinBox(self)
            self.spin.setRange(int(minimum), int(maximum))
            self.spin.setGroupSeparatorShown(True)
        self.spin.setMinimumWidth(110)
        self.slider.valueChanged.connect(self._from_slider)
        self.spin.valueChanged.connect(self._from_spin)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.spin)

    def setToolTip(self, text: str) -> None:  # noqa: N802 (Qt's name)
        """The same tip on the slider and the spin box (each is a control of its own)."""
        super().setToolTip(text)
        self.slider.setToolTip(text)
        self.spin.setToolTip(text)

    def value(self) -> float:
        return float(self.spin.value())

    def slider_max(self) -> float:
        return self._top

    def set_slider_max(self, top: float) -> None:
        """Move the top of a log slider (the spin box's range is unchanged)."""
        self._top = max(2.0, float(top))
        self.slider.blockSignals(True)
        self.slider.setValue(self._to_slider(self.value()))
        self.slider.blockSignals(False)

    def set_value(self, value: float) -> None:
        """Show ``value`` without emitting (used when the rules change elsewhere)."""
        for w in (self.slider, self.spin):
            w.blockSignals(True)
        self._put_in_spin(value)
        self.slider.setValue(self._to_slider(value))
        for w in (self.slider, self.spin):
            w.blockSignals(False)

    def _put_in_spin(self, value: float) -> None:
        if isinstance(self.spin, QDoubleSpinBox):
            self.spin.setValue(value)
        else:
            self.spin.setValue(round(value))

    # --- value <-> slider position ---------------------------------------------------------------
    def _to_slider(self, value: float) -> int:
        if not self._log:
            return round(value * self._scale)
        if value < 1:
            return 0
        frac = math.log(min(value, self._top)) / math.log(self._top)
        return max(1, round(frac * LOG_STEPS))  # 1 px is the first step after "0 = off"

    def _from_position(self, raw: int) -> float:
        if not self._log:
            return raw / self._scale
        if raw <= 0:
            return 0.0
        return float(round(self._top ** (raw / LOG_STEPS)))

    def _from_slider(self, raw: int) -> None:
        value = self._from_position(raw)
        self.spin.blockSignals(True)
        self._put_in_spin(value)
        self.spin.blockSignals(False)
        self.value_changed.emit(value)

    def _from_spin(self, value: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(self._to_slider(value))  # clamps past the slider's range
        self.slider.blockSignals(False)
        self.value_changed.emit(float(value))


class RulesSignals(QObject):
    """The ``RulesModel``'s events as Qt signals, delivered on the GUI thread."""

    changed = Signal(object)  # Rules wanted now
    applied = Signal(object)  # Rules the session now judges with
    error = Signal(str)

    def __init__(self, model: RulesModel, parent: QObject | None = None) -> None:
        super().__init__(parent)
        # emitted from the model's worker thread too: auto connections queue them to this thread
        self._unsubscribe = model.subscribe(self._on_event)
        self.destroyed.connect(lambda *_: self._unsubscribe())

    def _on_event(self, event: str, payload: Any) -> None:
        getattr(self, event).emit(payload)


class RulesPanel(QWidget):
    """Edits threshold, min area, max count and max total area; saves and reverts the recipe."""

    error = Signal(str)
    rules_changed = Signal(object)  # Rules wanted now: the window re-judges the frame on screen

    def __init__(
        self, model: RulesModel, bridge: SessionBridge, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.model = model
        self.signals = RulesSignals(model, self)
        self._frame_area = 0
        self.threshold = SliderSpin(0.01, 0.99, decimals=2, parent=self)
        self.threshold.setToolTip("Probability above which a pixel is defect")
        self.min_area = SliderSpin(
            0, AREA_MAX, slider_max=DEFAULT_FRAME_AREA, log=True, parent=self
        )
        self.min_area.setToolTip(
            "Smaller blobs (px) are ignored; the slider is logarithmic, 1 px … the frame's area"
        )
        self.max_count = SliderSpin(0, 1000, slider_max=20, parent=self)
        self.max_count.setToolTip("Defects tolerated on a part (0 = any defect is NG)")
        self.limit_total = QCheckBox("limit", self)
        self.limit_total.setToolTip("NG when the defects' total area exceeds the value beside")
        self.max_total = SliderSpin(
            0, AREA_MAX, slider_max=DEFAULT_FRAME_AREA, log=True, parent=self
        )
        self.max_total.setToolTip("Most total defect area (px) a part may have; logarithmic")
        self.recipe_label = QLabel(self)
        self.recipe_label.setWordWrap(True)
        self.save_button = QPushButton("Save to recipe", self)
        self.save_button.setToolTip("Write rules and zones into the recipe file (new version)")
        self.revert_button = QPushButton("Revert", self)
        self.revert_button.setToolTip("Back to the rules and model saved in the recipe")

        form = QFormLayout()
        form.addRow("Threshold", self.threshold)
        form.addRow("Min defect area (px)", self.min_area)
        form.addRow("Max defect count", self.max_count)
        total_row = QHBoxLayout()
        total_row.addWidget(self.limit_total)
        total_row.addWidget(self.max_total, 1)
        form.addRow("Max total area (px)", total_row)
        buttons = QHBoxLayout()
        buttons.addWidget(self.save_button)
        buttons.addWidget(self.revert_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.recipe_label)
        layout.addLayout(buttons)
        layout.addStretch(1)

        self._apply_throttled = qthrottled(self._apply, timeout=50, parent=self)
        for w in (self.threshold, self.min_area, self.max_count, self.max_total):
            w.value_changed.connect(self._edited)
        self.limit_total.toggled.connect(self._edited)
        self.limit_total.toggled.connect(self.max_total.setEnabled)
        self.save_button.clicked.connect(self.save)
        self.revert_button.clicked.connect(self.revert)
        bridge.model.connect(lambda _card: self._show_recipe())
        bridge.result.connect(self._follow_frame_size)
        self.signals.changed.connect(self.show_rules)
        self.signals.changed.connect(self.rules_changed)
        self.signals.applied.connect(lambda _rules: self._show_recipe())
        self.signals.error.connect(self.error)
        self._busy = False
        self.show_rules(model.rules)

    # --- rules -> widgets ------------------------------------------------------------------------
    def show_rules(self, rules: Rules) -> None:
        """Show ``rules`` without sending them back (signals blocked)."""
        self.threshold.set_value(rules.threshold)
        self.min_area.set_value(rules.min_area_px)
        self.max_count.set_value(rules.max_count)
        self.limit_total.blockSignals(True)
        self.limit_total.setChecked(rules.max_total_area_px is not None)
        self.limit_total.blockSignals(False)
        self.max_total.setEnabled(rules.max_total_area_px is not None)
        self.max_total.set_value(rules.max_total_area_px or 0)
        self._show_recipe()

    def _show_recipe(self) -> None:
        recipe = self.model.recipe
        state = "unsaved changes" if self.model.dirty else "saved"
        self.recipe_label.setText(f"Recipe {recipe.name!r} v{recipe.version} · {state}")

    def set_frame_size(self, height: int, width: int) -> None:
        """The area sliders span 1 px … ``height * width`` (the spin boxes go further)."""
        area = int(height) * int(width)
        if area > 1 and area != self._frame_area:
            self._frame_area = area
            self.min_area.set_slider_max(area)
            self.max_total.set_slider_max(area)

    def _follow_frame_size(self, result: FrameResult) -> None:
        shape = result.frame.image.shape
        if len(shape) >= 2 and shape[0] * shape[1] > 0:
            self.set_frame_size(shape[0], shape[1])

    # --- widgets -> model ------------------------------------------------------------------------
    def rules_from_widgets(self) -> Rules:
        total = int(self.max_total.value()) if self.limit_total.isChecked() else None
        return replace(
            self.model.rules,  # keeps the zones drawn in the zone editor
            threshold=round(self.threshold.value(), 4),
            min_area_px=int(self.min_area.value()),
            max_count=int(self.max_count.value()),
            max_total_area_px=total,
        )

    def _edited(self, *_: object) -> None:
        self._apply_throttled()

    def _apply(self) -> None:
        self.model.set(self.rules_from_widgets())

    def flush(self) -> None:
        """Apply a pending throttled change now (before saving, and in tests)."""
        self._apply_throttled.flush()

    def save(self) -> None:
        """Write the wanted rules into the recipe (on a worker: it touches the disk)."""
        self.flush()
        self._run(self.model.save, "Recipe not saved")

    def revert(self) -> None:
        """Back to the recipe's rules (and model: it may be reloaded, so on a worker)."""
        self._apply_throttled.cancel()
        self._run(self.model.revert, "Recipe not reverted")

    def _run(self, fn: Any, what: str) -> None:
        if self._busy:
            return
        self._busy = True
        for b in (self.save_button, self.revert_button):
            b.setEnabled(False)
        worker = create_worker(fn, _start_thread=False, _ignore_errors=True)
        worker.errored.connect(lambda exc: self.error.emit(f"{what}: {exc}"))
        worker.finished.connect(self._run_done)
        worker.start()

    def busy(self) -> bool:
        return self._busy

    def _run_done(self) -> None:
        self._busy = False
        for b in (self.save_button, self.revert_button):
            b.setEnabled(True)
        self._show_recipe()

"""Threshold and rule sliders; every move re-judges the current frame from its kept map.

Edits go through one ``RulesApplier`` shared with the zone editor. It holds the rules the engineer
wants *now*: the window re-judges the frame on screen with them at once (one connected-components
pass, no inference), while ``session.set_rules``, which re-judges every kept result (tens of
frames, up to a second on large ones), runs on a worker, coalesced so that a slider drag never
queues more than one pending hand-over.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

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

from app.station.inspection import Rules
from app.station.session import InspectionSession
from app.ui.bridge import SessionBridge


class SliderSpin(QWidget):
    """A slider and a spin box showing one number; the spin box may go past the slider's range.

    ``scale`` maps the float value onto the integer slider (100 -> two decimals).
    """

    value_changed = Signal(float)

    def __init__(
        self,
        minimum: float,
        maximum: float,
        *,
        slider_max: float | None = None,
        decimals: int = 0,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self._scale = 10**decimals
        self.slider = QSlider(Qt.Orientation.Horizontal, self)
        top = maximum if slider_max is None else slider_max
        self.slider.setRange(round(minimum * self._scale), round(top * self._scale))
        if decimals:
            spin = QDoubleSpinBox(self)
            spin.setDecimals(decimals)
            spin.setSingleStep(1 / self._scale)
            spin.setRange(minimum, maximum)
            self.spin: QDoubleSpinBox | QSpinBox = spin
        else:
            self.spin = QSpinBox(self)
            self.spin.setRange(int(minimum), int(maximum))
        self.spin.setMinimumWidth(90)
        self.slider.valueChanged.connect(self._from_slider)
        self.spin.valueChanged.connect(self._from_spin)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.slider, 1)
        layout.addWidget(self.spin)

    def value(self) -> float:
        return float(self.spin.value())

    def set_value(self, value: float) -> None:
        """Show ``value`` without emitting (used when the session's rules change elsewhere)."""
        for w in (self.slider, self.spin):
            w.blockSignals(True)
        self.spin.setValue(value if isinstance(self.spin, QDoubleSpinBox) else round(value))
        self.slider.setValue(round(value * self._scale))
        for w in (self.slider, self.spin):
            w.blockSignals(False)

    def _from_slider(self, raw: int) -> None:
        value = raw / self._scale
        self.spin.blockSignals(True)
        self.spin.setValue(value if isinstance(self.spin, QDoubleSpinBox) else round(value))
        self.spin.blockSignals(False)
        self.value_changed.emit(value)

    def _from_spin(self, value: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(round(value * self._scale))  # clamps past the slider's range
        self.slider.blockSignals(False)
        self.value_changed.emit(float(value))


class RulesApplier(QObject):
    """The rules wanted now, handed to the session off the GUI thread (latest wins)."""

    changed = Signal(object)  # Rules wanted now (emitted at once, on the GUI thread)
    applied = Signal(object)  # Rules in force in the session, with the kept results re-judged
    error = Signal(str)

    def __init__(self, session: InspectionSession, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self._wanted = session.rules
        self._busy = False

    @property
    def rules(self) -> Rules:
        return self._wanted

    def idle(self) -> bool:
        """True when the session has the wanted rules and no hand-over is running."""
        return not self._busy and self.session.rules == self._wanted

    def set(self, rules: Rules) -> None:
        if rules == self._wanted:
            return
        self._wanted = rules
        self.changed.emit(rules)
        self._hand_over()

    def reset(self) -> None:
        """The session's rules changed under us (revert): take them as the wanted ones."""
        self._wanted = self.session.rules
        self.changed.emit(self._wanted)

    def _hand_over(self) -> None:
        if self._busy:
            return  # _done sends the newest wanted rules when the running hand-over ends
        self._busy = True
        worker = create_worker(self.session.set_rules, self._wanted, _start_thread=False)
        worker.errored.connect(lambda exc: self.error.emit(f"Rules not applied: {exc}"))
        worker.finished.connect(self._done)
        worker.start()

    def _done(self) -> None:
        self._busy = False
        if self.session.rules != self._wanted:
            self._hand_over()
        else:
            self.applied.emit(self._wanted)


class RulesPanel(QWidget):
    """Edits threshold, min area, max count and max total area; saves and reverts the recipe."""

    error = Signal(str)

    def __init__(
        self,
        session: InspectionSession,
        bridge: SessionBridge,
        applier: RulesApplier,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.bridge = bridge
        self.applier = applier
        self.threshold = SliderSpin(0.01, 0.99, decimals=2, parent=self)
        self.threshold.setToolTip("Probability above which a pixel is defect")
        self.min_area = SliderSpin(0, 10_000_000, slider_max=2000, parent=self)
        self.min_area.setToolTip("Smaller blobs (px) are ignored")
        self.max_count = SliderSpin(0, 1000, slider_max=20, parent=self)
        self.max_count.setToolTip("Defects tolerated on a part (0 = any defect is NG)")
        self.limit_total = QCheckBox("limit", self)
        self.limit_total.setToolTip("NG when the defects' total area exceeds this (px)")
        self.max_total = SliderSpin(0, 10_000_000, slider_max=20_000, parent=self)
        self.recipe_label = QLabel(self)
        self.recipe_label.setWordWrap(True)
        self.save_button = QPushButton("Save to recipe", self)
        self.save_button.setToolTip("Write rules and zones into the recipe file (new version)")
        self.revert_button = QPushButton("Revert", self)
        self.revert_button.setToolTip("Back to the rules saved in the recipe")

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
        applier.changed.connect(self.show_rules)
        applier.applied.connect(lambda _rules: self._show_recipe())
        self._busy = False
        self.show_rules(applier.rules)

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
        recipe = self.session.recipe
        dirty = self.session.dirty or self.applier.rules != recipe.rules
        state = "unsaved changes" if dirty else "saved"
        self.recipe_label.setText(f"Recipe {recipe.name!r} v{recipe.version} · {state}")

    # --- widgets -> session ----------------------------------------------------------------------
    def rules_from_widgets(self) -> Rules:
        total = int(self.max_total.value()) if self.limit_total.isChecked() else None
        return replace(
            self.applier.rules,  # keeps the zones drawn in the zone editor
            threshold=round(self.threshold.value(), 4),
            min_area_px=int(self.min_area.value()),
            max_count=int(self.max_count.value()),
            max_total_area_px=total,
        )

    def _edited(self, *_: object) -> None:
        self._apply_throttled()

    def _apply(self) -> None:
        self.applier.set(self.rules_from_widgets())

    def flush(self) -> None:
        """Apply a pending throttled change now (before saving, and in tests)."""
        self._apply_throttled.flush()

    def save(self) -> None:
        """Write the wanted rules into the recipe (on a worker: it touches the disk)."""
        self.flush()
        session, rules = self.session, self.applier.rules

        def save() -> object:
            if session.rules != rules:  # a hand-over may still be on its way
                session.set_rules(rules)
            return session.save_recipe()

        self._run(save, "Recipe not saved")

    def revert(self) -> None:
        """Back to the recipe's rules (and model: the session may reload it, so on a worker)."""
        self._apply_throttled.cancel()
        self._run(self.session.revert_recipe, "Recipe not reverted", then=self.applier.reset)

    def _run(
        self, fn: Callable[[], object], what: str, then: Callable[[], None] | None = None
    ) -> None:
        if self._busy:
            return
        self._busy = True
        for b in (self.save_button, self.revert_button):
            b.setEnabled(False)
        worker = create_worker(fn, _start_thread=False)
        if then is not None:
            worker.returned.connect(lambda _r: then())
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

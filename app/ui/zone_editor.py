"""Draw include / exclude / critical polygons on the live image; they become part of the rules.

Points are clicked on the image (image pixel coordinates; the window forwards the image's clicks to
``image_clicked``); Close (or a double click) turns them into a ``Zone`` appended to the rules'
zones through the shared rules owner, so the frame on screen is re-judged with the new zone at once.
The editor never touches the image widget: it emits ``draft_changed`` and ``zones_changed``.
"""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtGui import QBrush
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.station.inspection import FrameResult, Rules, Zone
from app.station.rules_model import RulesModel
from app.ui.bridge import SessionBridge
from app.ui.live_panel import colour_of
from app.ui.rules_panel import AREA_MAX, DEFAULT_FRAME_AREA, RulesSignals, SliderSpin

KINDS = ("critical", "include", "exclude")


class ZoneEditor(QWidget):
    error = Signal(str)
    draft_changed = Signal(object)  # list of (x, y) image points being drawn
    zones_changed = Signal(object)  # tuple[Zone, ...] of the rules wanted now

    def __init__(
        self, model: RulesModel, bridge: SessionBridge, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.model = model
        self.signals = RulesSignals(model, self)
        self._points: list[tuple[float, float]] = []

        self.kind = QComboBox(self)
        self.kind.addItems(list(KINDS))
        self.kind.setToolTip(
            "critical: a defect inside makes the part NG; include: only defects inside count;"
            " exclude: defects inside are ignored"
        )
        self.kind.currentTextChanged.connect(self._kind_changed)
        self.name = QLineEdit(self)
        self.name.setPlaceholderText("zone name")
        self.name.setToolTip("Names the zone's defects and its bar in the Pareto chart")
        self.min_area = SliderSpin(
            0, AREA_MAX, slider_max=DEFAULT_FRAME_AREA, log=True, parent=self
        )
        self.min_area.setToolTip(
            "A defect of at least this area (px) inside makes the part NG (logarithmic slider)"
        )
        self.draw_button = QPushButton("Draw", self)
        self.draw_button.setCheckable(True)
        self.draw_button.setToolTip("Click points on the image; double click or Close to finish")
        self.close_button = QPushButton("Close polygon", self)
        self.close_button.setToolTip("Turn the clicked points (3 or more) into a zone")
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setToolTip("Drop the points clicked so far")
        self.hint = QLabel(self)
        self.table = QTableWidget(0, 4, self)
        self.table.setHorizontalHeaderLabels(["name", "kind", "min area px", "points"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setToolTip("The zones in the rules now; select rows to delete them")
        self.delete_button = QPushButton("Delete zone", self)
        self.delete_button.setToolTip("Remove the selected zones from the rules")

        form = QFormLayout()
        form.addRow("Kind", self.kind)
        form.addRow("Name", self.name)
        form.addRow("Min area (px)", self.min_area)
        row = QHBoxLayout()
        for b in (self.draw_button, self.close_button, self.cancel_button):
            row.addWidget(b)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(row)
        layout.addWidget(self.hint)
        layout.addWidget(self.table, 1)
        layout.addWidget(self.delete_button)

        self.draw_button.toggled.connect(self._draw_toggled)
        self.close_button.clicked.connect(self.close_polygon)
        self.cancel_button.clicked.connect(self.cancel)
        self.delete_button.clicked.connect(self.delete_selected)
        self.signals.changed.connect(self.show_rules)
        self.signals.error.connect(self.error)
        bridge.result.connect(self._follow_frame_size)
        self._kind_changed(self.kind.currentText())
        self.show_rules(model.rules)

    # --- drawing -----------------------------------------------------------------------------------
    def _draw_toggled(self, on: bool) -> None:
        if not on:
            self._points.clear()
            self.draft_changed.emit([])
        self._update_buttons()

    def add_point(self, x: float, y: float) -> None:
        self._points.append((round(x, 1), round(y, 1)))
        self.draft_changed.emit(list(self._points))
        self._update_buttons()

    def image_clicked(self, x: float, y: float) -> None:
        """A click on the image (pixel coordinates): a point of the polygon while drawing."""
        if self.draw_button.isChecked():
            self.add_point(x, y)

    def image_double_clicked(self, _x: float = 0.0, _y: float = 0.0) -> None:
        if self.draw_button.isChecked():
            self.close_polygon()

    def close_polygon(self) -> Zone | None:
        """Turn the clicked points into a zone in the session's rules; None if < 3 points."""
        if len(self._points) < 3:
            return None
        kind = self.kind.currentText()
        zone = Zone(
            name=self._unique_name(self.name.text().strip() or f"{kind} zone"),
            kind=kind,  # type: ignore[arg-type]  # one of KINDS, from the combo
            polygon=tuple(self._points),
            min_area_px=int(self.min_area.value()) if kind == "critical" else 0,
        )
        self._set_zones((*self.model.rules.zones, zone))
        self.name.clear()
        self.draw_button.setChecked(False)  # clears the draft
        return zone

    def cancel(self) -> None:
        self.draw_button.setChecked(False)

    def delete_selected(self) -> None:
        rows = {i.row() for i in self.table.selectedIndexes()}
        if rows:
            zones = self.model.rules.zones
            self._set_zones(tuple(z for i, z in enumerate(zones) if i not in rows))

    def _set_zones(self, zones: tuple[Zone, ...]) -> None:
        self.model.set_zones(zones)

    def _unique_name(self, name: str) -> str:
        # zone names label defects and the Pareto chart: two zones must not share one
        taken = {z.name for z in self.model.rules.zones}
        candidate, n = name, 2
        while candidate in taken:
            candidate, n = f"{name} {n}", n + 1
        return candidate

    # --- view ----------------------------------------------------------------------------------------
    def show_rules(self, rules: Rules) -> None:
        zones = rules.zones
        self.table.setRowCount(len(zones))
        for i, zone in enumerate(zones):
            cells = (zone.name, zone.kind, str(zone.min_area_px), str(len(zone.polygon)))
            for j, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if j == 1:
                    item.setForeground(QBrush(colour_of(zone.kind)))
                self.table.setItem(i, j, item)
        self.zones_changed.emit(zones)
        self._update_buttons()

    def _follow_frame_size(self, result: FrameResult) -> None:
        shape = result.frame.image.shape
        if len(shape) >= 2 and shape[0] * shape[1] > 1:
            self.min_area.set_slider_max(shape[0] * shape[1])

    def _kind_changed(self, kind: str) -> None:
        self.min_area.setEnabled(kind == "critical")

    def _update_buttons(self) -> None:
        drawing = self.draw_button.isChecked()
        self.close_button.setEnabled(drawing and len(self._points) >= 3)
        self.cancel_button.setEnabled(drawing)
        self.delete_button.setEnabled(bool(self.model.rules.zones))
        self.hint.setText(
            f"{len(self._points)} point(s) — click on the image" if drawing else "Press Draw"
        )

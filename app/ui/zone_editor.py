"""Draw include / exclude / critical polygons on the live image; they become part of the rules.

Points are clicked on the live panel (image pixel coordinates); Close (or a double click) turns
them into a ``Zone`` appended to the rules' zones through the shared ``RulesApplier``, so the
frame on screen is re-judged with the new zone at once and the session gets it off the GUI thread.
"""

from __future__ import annotations

from dataclasses import replace

from PySide6.QtGui import QBrush
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.station.inspection import Rules, Zone
from app.station.session import InspectionSession
from app.ui.bridge import SessionBridge
from app.ui.live_panel import LivePanel, colour_of
from app.ui.rules_panel import RulesApplier

KINDS = ("critical", "include", "exclude")


class ZoneEditor(QWidget):
    def __init__(
        self,
        session: InspectionSession,
        bridge: SessionBridge,
        live_panel: LivePanel,
        applier: RulesApplier,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.bridge = bridge
        self.live_panel = live_panel
        self.applier = applier
        self._points: list[tuple[float, float]] = []

        self.kind = QComboBox(self)
        self.kind.addItems(list(KINDS))
        self.kind.currentTextChanged.connect(self._kind_changed)
        self.name = QLineEdit(self)
        self.name.setPlaceholderText("zone name")
        self.min_area = QSpinBox(self)
        self.min_area.setRange(0, 10_000_000)
        self.min_area.setToolTip("A defect of at least this area (px) inside makes the part NG")
        self.draw_button = QPushButton("Draw", self)
        self.draw_button.setCheckable(True)
        self.draw_button.setToolTip("Click points on the image; double click or Close to finish")
        self.close_button = QPushButton("Close polygon", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.hint = QLabel(self)
        self.table = QTableWidget(0, 4, self)
        self.table.setHorizontalHeaderLabels(["name", "kind", "min area px", "points"])
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.delete_button = QPushButton("Delete zone", self)

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
        live_panel.clicked.connect(self._on_click)
        live_panel.double_clicked.connect(lambda _x, _y: self.close_polygon())
        applier.changed.connect(self.show_rules)
        self._kind_changed(self.kind.currentText())
        self.show_rules(applier.rules)

    # --- drawing -----------------------------------------------------------------------------------
    def _draw_toggled(self, on: bool) -> None:
        if not on:
            self._points.clear()
            self.live_panel.set_draft([])
        self._update_buttons()

    def add_point(self, x: float, y: float) -> None:
        self._points.append((round(x, 1), round(y, 1)))
        self.live_panel.set_draft(self._points)
        self._update_buttons()

    def _on_click(self, x: float, y: float) -> None:
        if self.draw_button.isChecked():
            self.add_point(x, y)

    def close_polygon(self) -> Zone | None:
        """Turn the clicked points into a zone in the session's rules; None if < 3 points."""
        if len(self._points) < 3:
            return None
        kind = self.kind.currentText()
        zone = Zone(
            name=self._unique_name(self.name.text().strip() or f"{kind} zone"),
            kind=kind,  # type: ignore[arg-type]  # one of KINDS, from the combo
            polygon=tuple(self._points),
            min_area_px=self.min_area.value() if kind == "critical" else 0,
        )
        self._set_zones((*self.applier.rules.zones, zone))
        self.name.clear()
        self.draw_button.setChecked(False)  # clears the draft
        return zone

    def cancel(self) -> None:
        self.draw_button.setChecked(False)

    def delete_selected(self) -> None:
        rows = {i.row() for i in self.table.selectedIndexes()}
        if rows:
            zones = self.applier.rules.zones
            self._set_zones(tuple(z for i, z in enumerate(zones) if i not in rows))

    def _set_zones(self, zones: tuple[Zone, ...]) -> None:
        self.applier.set(replace(self.applier.rules, zones=zones))

    def _unique_name(self, name: str) -> str:
        # zone names label defects and the Pareto chart: two zones must not share one
        taken = {z.name for z in self.applier.rules.zones}
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
        self.live_panel.set_zones(zones)
        self._update_buttons()

    def _kind_changed(self, kind: str) -> None:
        self.min_area.setEnabled(kind == "critical")

    def _update_buttons(self) -> None:
        drawing = self.draw_button.isChecked()
        self.close_button.setEnabled(drawing and len(self._points) >= 3)
        self.cancel_button.setEnabled(drawing)
        self.delete_button.setEnabled(bool(self.applier.rules.zones))
        self.hint.setText(
            f"{len(self._points)} point(s) — click on the image" if drawing else "Press Draw"
        )

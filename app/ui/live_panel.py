"""The live image: frame, defect-mask overlay, labelled defect boxes and rule zones (pyqtgraph).

Drawing is the fast path of pyqtgraph's VideoSpeedTest: ``setImage(..., autoLevels=False,
levels=...)`` so no frame is scanned for its range, and the mask is a second ``ImageItem`` with a
two-entry lookup table, so colour and opacity change without touching pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyqtgraph as pg
from numpy.typing import NDArray
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from app.station.inspection import Defect, FrameResult, Rules, Zone
from app.station.inspector import binary_mask, class_mask
from app.ui.class_legend import ClassCard, ClassLegend, card_classes

# Colours an operator reads at a glance: zones by what they do, critical in red like NG.
ZONE_COLOURS = {"include": "#4caf50", "exclude": "#9e9e9e", "critical": "#f44336"}
MASK_COLOURS = {"red": (255, 40, 40), "magenta": (255, 0, 255), "yellow": (255, 235, 0)}
MAX_LABELS = 20  # text items are costly to lay out; beyond this only boxes are drawn
# The view header: what the picture is. REVIEW is blue, a colour no verdict uses, so a frame under
# review is never read as the live line.
VIEW_STYLE = {
    "live": ("#1b5e20", "white"),
    "review": ("#1565c0", "white"),
    "stopped": ("#424242", "#eeeeee"),
}


def _levels_for(image: NDArray) -> tuple[float, float]:
    # Fixed by dtype, never scanned from the pixels: that scan is what the fast path avoids.
    return (0.0, 65535.0) if image.dtype == np.uint16 else (0.0, 255.0)


def _box_path(boxes: Sequence[tuple[int, int, int, int]]) -> tuple[NDArray, NDArray, NDArray]:
    """All boxes as one polyline with breaks, so N defects cost one item, not N."""
    xs = np.empty(len(boxes) * 5, dtype=np.float64)
    ys = np.empty_like(xs)
    for i, (x, y, w, h) in enumerate(boxes):
        xs[i * 5 : i * 5 + 5] = (x, x + w, x + w, x, x)
        ys[i * 5 : i * 5 + 5] = (y, y, y + h, y + h, y)
    connect = np.ones(len(xs), dtype=bool)
    connect[4::5] = False  # do not join one box's last corner to the next box
    return xs, ys, connect


def defect_label(area_px: int, area_mm2: float | None, max_prob: float) -> str:
    area = f"{area_px} px" if area_mm2 is None else f"{area_px} px / {area_mm2:.2f} mm²"
    return f"{area}  p={max_prob:.2f}"


def class_defect_label(d: Defect) -> str:
    """``crack 0.93 · 144 px  p=0.99``: the class and its confidence first, then as before."""
    base = defect_label(d.area_px, d.area_mm2, d.max_prob)
    if d.class_name is None:
        return base
    conf = "" if d.class_confidence is None else f" {d.class_confidence:.2f}"
    return f"{d.class_name}{conf} · {base}"


def _hex_rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


class LivePanel(QWidget):
    """Shows one ``FrameResult`` at a time; the main window decides which (live or paused).

    Signals carry image coordinates (x, y) of clicks on the picture, for the zone editor.
    """

    clicked = Signal(float, float)
    double_clicked = Signal(float, float)
    resume_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._result: FrameResult | None = None
        self._zones: tuple[Zone, ...] | None = None
        self._shape: tuple[int, ...] | None = None
        # (names, colours) of a multi-class model; () for a one-class model (overlay as before)
        self._classes: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())
        self.legend = ClassLegend(self)

        self.graphics = pg.GraphicsLayoutWidget(self)
        self.graphics.setBackground("#202020")
        self.view: pg.ViewBox = self.graphics.addViewBox(lockAspect=True, invertY=True)
        self.view.setMenuEnabled(False)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.mask_item = pg.ImageItem(axisOrder="row-major")
        self.mask_item.setZValue(10)
        self.box_item = pg.PlotCurveItem(pen=pg.mkPen("#ffd600", width=2))
        self.box_item.setZValue(20)
        self.draft_item = pg.PlotDataItem(
            pen=pg.mkPen("#00e5ff", width=2, style=Qt.PenStyle.DashLine),
            symbol="o",
            symbolSize=7,
            symbolBrush="#00e5ff",
        )
        self.draft_item.setZValue(30)
        for item in (self.image_item, self.mask_item, self.box_item, self.draft_item):
            self.view.addItem(item)
        self._labels: list[pg.TextItem] = []
        self._zone_items: list[pg.GraphicsObject] = []
        self.graphics.scene().sigMouseClicked.connect(self._on_scene_click)

        self.view_header = QLabel("", self)
        font = self.view_header.font()
        font.setPointSize(font.pointSize() + 3)
        font.setBold(True)
        self.view_header.setFont(font)
        self.view_header.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.view_kind = ""
        self.caption = QLabel("no frame yet", self)
        # a long source path must not widen the window: the caption gives way, the tools do not
        self.caption.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.live_button = QPushButton("Back to live (Esc)", self)
        self.live_button.setToolTip("Leave the frame under review and follow the line again")
        self.live_button.clicked.connect(self.resume_requested)
        self.live_button.setVisible(False)
        self.show_mask = QCheckBox("Mask", self)
        self.show_boxes = QCheckBox("Boxes", self)
        self.show_zones = QCheckBox("Zones", self)
        for box in (self.show_mask, self.show_boxes, self.show_zones):
            box.setChecked(True)
            box.toggled.connect(self._apply_visibility)
        self.colour = QComboBox(self)
        self.colour.addItems(list(MASK_COLOURS))
        self.colour.setToolTip("Mask colour")
        self.colour.currentTextChanged.connect(self.set_mask_colour)
        self.opacity = QSlider(Qt.Orientation.Horizontal, self)
        self.opacity.setRange(0, 100)
        self.opacity.setValue(50)
        self.opacity.setMinimumWidth(50)
        self.opacity.setMaximumWidth(140)
        self.opacity.setToolTip("Mask opacity")
        self.opacity.valueChanged.connect(lambda v: self.mask_item.setOpacity(v / 100.0))
        fit = QPushButton("Fit", self)
        fit.setToolTip("Zoom to the whole image (wheel zooms, drag pans)")
        fit.clicked.connect(lambda: self.view.autoRange(padding=0.0))

        # two short rows rather than one long one: beside a wide workspace the image column is
        # narrow, and its tools must not force a sideways scroll bar on the window
        bar = QHBoxLayout()
        bar.addWidget(self.caption, 1)
        bar.addWidget(self.live_button)
        bar.addWidget(fit)
        tools = QHBoxLayout()
        for w in (self.show_mask, self.show_boxes, self.show_zones, self.colour, self.opacity):
            tools.addWidget(w)
        tools.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.view_header)
        picture = QHBoxLayout()
        picture.setSpacing(0)
        picture.addWidget(self.graphics, 1)
        picture.addWidget(self.legend)
        layout.addLayout(picture, 1)
        layout.addLayout(bar)
        layout.addLayout(tools)
        self.show_mask.setToolTip("Show the defect mask (every pixel over the threshold)")
        self.show_boxes.setToolTip("Show the boxes and labels of the counted defects")
        self.show_zones.setToolTip("Show the rule zones")
        self.set_mask_colour(self.colour.currentText())
        self.mask_item.setOpacity(0.5)
        self.set_view("stopped", "STOPPED · no frame yet")

    def set_view(self, kind: str, text: str) -> None:
        """The header over the picture and the colour of its frame: ``live``, ``review`` or
        ``stopped`` (what the window's view state says the picture is)."""
        if (kind, text) == (self.view_kind, self.view_header.text()):
            return
        self.view_kind = kind
        bg, fg = VIEW_STYLE.get(kind, VIEW_STYLE["stopped"])
        self.view_header.setText(text)
        self.view_header.setStyleSheet(f"background:{bg}; color:{fg}; padding:4px 8px;")
        # a thick border in the same colour: the whole picture says REVIEW, not only a caption
        self.graphics.setStyleSheet(f"border: 4px solid {bg};")
        self.live_button.setVisible(kind == "review")

    # --- what is shown --------------------------------------------------------------------------
    def show_result(self, result: FrameResult) -> None:
        self._result = result
        image = result.frame.image
        insp = result.inspection
        if image.size == 0:  # an unreadable frame (ERROR): nothing to draw but its reason
            self.image_item.clear()
            self.mask_item.clear()
            self.box_item.setData([], [])
            for label in self._labels:
                label.setVisible(False)
            why = getattr(insp, "error", None) or "; ".join(insp.reasons)
            self.caption.setText(f"frame {insp.frame_id} · {insp.source} · {insp.verdict}: {why}")
            return
        # BGR (OpenCV order) -> RGB as a view, no copy
        shown = image[..., ::-1] if image.ndim == 3 else image
        self.image_item.setImage(shown, autoLevels=False, levels=_levels_for(image))
        # every pixel over the threshold, also blobs below the minimum area: an engineer tuning
        # the area rule needs to see what it filters out (the boxes show what was counted)
        if result.prob is not None:
            self.mask_item.setImage(self._mask_of(result), autoLevels=False, levels=(0, 255))
        else:
            self.mask_item.clear()
        if image.shape[:2] != (self._shape or ())[:2]:
            self._shape = image.shape
            self.view.autoRange(padding=0.0)  # only when the size changes: keep the user's zoom
        self._draw_defects(result)
        self.set_zones(insp.rules.zones)
        self.caption.setText(
            f"frame {insp.frame_id} · {insp.verdict} · {len(insp.defects)} defect(s) · "
            f"{insp.source}"
        )
        self.caption.setToolTip(self.caption.text())

    def _mask_of(self, result: FrameResult) -> NDArray[np.uint8]:
        """0 / 255 (one class, or no class map kept), or class index + 1 per blob."""
        assert result.prob is not None
        rules = result.inspection.rules
        names = self._classes[0]
        class_prob = result.extra.get("class_prob")
        if (
            names
            and class_prob is not None
            and class_prob.ndim == 3
            and class_prob.shape[:2] == result.prob.shape[:2]
            and class_prob.shape[2] == len(names)
        ):
            return class_mask(result.prob, rules, class_prob, names, defects_only=False)
        # 255 keeps the chosen mask colour in the class lookup table too (an archived frame)
        return binary_mask(result.prob, rules)

    def _draw_defects(self, result: FrameResult) -> None:
        defects = result.inspection.defects
        if defects:
            xs, ys, connect = _box_path([d.bbox for d in defects])
            self.box_item.setData(xs, ys, connect=connect)
        else:
            self.box_item.setData([], [])
        while len(self._labels) < min(len(defects), MAX_LABELS):
            label = pg.TextItem(color="#ffd600", fill=pg.mkBrush(0, 0, 0, 150), anchor=(0, 1))
            label.setZValue(25)
            self.view.addItem(label)
            self._labels.append(label)
        for i, label in enumerate(self._labels):
            if i < len(defects):
                d = defects[i]
                label.setText(class_defect_label(d))
                label.setColor("#ff5252" if d.zone else self._label_colour(d))
                label.setPos(d.bbox[0], d.bbox[1])
                label.setVisible(self.show_boxes.isChecked())
            else:
                label.setVisible(False)

    def set_zones(self, zones: tuple[Zone, ...]) -> None:
        """Redraw the zone outlines; a no-op while the rules' zones are unchanged."""
        if zones == self._zones:
            return
        self._zones = zones
        for item in self._zone_items:
            self.view.removeItem(item)
        self._zone_items = []
        for zone in zones:
            colour = ZONE_COLOURS.get(zone.kind, "#ffffff")
            pts = list(zone.polygon) + [zone.polygon[0]] if zone.polygon else []
            curve = pg.PlotCurveItem(
                [p[0] for p in pts], [p[1] for p in pts], pen=pg.mkPen(colour, width=2)
            )
            curve.setZValue(15)
            text = pg.TextItem(f"{zone.kind}: {zone.name}", color=colour, anchor=(0, 1))
            if zone.polygon:
                text.setPos(*zone.polygon[0])
            text.setZValue(15)
            for item in (curve, text):
                self.view.addItem(item)
                self._zone_items.append(item)
        self._apply_visibility()

    def show_rules(self, rules: Rules) -> None:
        """New rules without a new frame (e.g. a zone was added while nothing runs)."""
        self.set_zones(rules.zones)

    def set_draft(self, points: Sequence[tuple[float, float]]) -> None:
        """The polygon being drawn in the zone editor (empty = none)."""
        self.draft_item.setData([p[0] for p in points], [p[1] for p in points])

    # --- appearance ------------------------------------------------------------------------------
    def set_card(self, card: ClassCard | None) -> None:
        """The running model: a multi-class card colours the overlay per class, with a legend;
        a one-class card (or None) keeps the single mask colour."""
        classes = card_classes(card)
        if classes == self._classes:
            return
        self._classes = classes
        self.legend.set_classes(*classes)
        # the colours come from the model card: the one-colour choice would only mislead
        self.colour.setVisible(not classes[0])
        self.set_mask_colour(self.colour.currentText())
        if self._result is not None:
            self.show_result(self._result)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._classes[0]

    def _label_colour(self, d: Defect) -> str:
        names, colours = self._classes
        if d.class_name is not None and d.class_name in names:
            return colours[names.index(d.class_name)]
        return "#ffd600"

    def set_mask_colour(self, name: str) -> None:
        r, g, b = MASK_COLOURS.get(name, MASK_COLOURS["red"])
        if self._classes[0]:  # 0 clear, k + 1 the colour of class k, 255 a blob with no class
            lut = np.zeros((256, 4), dtype=np.uint8)
            for k, colour in enumerate(self._classes[1]):
                lut[k + 1] = (*_hex_rgb(colour), 255)
            lut[255] = (r, g, b, 255)
        else:
            lut = np.array([[0, 0, 0, 0], [r, g, b, 255]], dtype=np.uint8)
        self.mask_item.setLookupTable(lut)

    def mask_opacity(self) -> float:
        return float(self.mask_item.opacity())

    def _apply_visibility(self) -> None:
        self.mask_item.setVisible(self.show_mask.isChecked())
        boxes = self.show_boxes.isChecked()
        self.box_item.setVisible(boxes)
        n = len(self._result.inspection.defects) if self._result else 0
        for i, label in enumerate(self._labels):
            label.setVisible(boxes and i < n)
        for item in self._zone_items:
            item.setVisible(self.show_zones.isChecked())

    # --- mouse -------------------------------------------------------------------------------------
    def _on_scene_click(self, event: Any) -> None:
        # ``event``: pyqtgraph's MouseClickEvent (pyqtgraph ships no types).
        if event.button() != Qt.MouseButton.LeftButton:
            return
        pos = event.scenePos()
        if not self.view.sceneBoundingRect().contains(pos):
            return
        p = self.view.mapSceneToView(pos)
        if event.double():
            self.double_clicked.emit(float(p.x()), float(p.y()))
        else:
            self.clicked.emit(float(p.x()), float(p.y()))


def colour_of(kind: str) -> QColor:
    return QColor(ZONE_COLOURS.get(kind, "#ffffff"))

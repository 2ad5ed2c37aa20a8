"""A mask painter over a frame: brush, eraser and ellipse tools with a bounded undo stack.

The mask is a plain ``H x W`` uint8 array (0 or 255) at the frame's full resolution, the same
layout ``labels.save_label`` writes. Each stroke, ellipse or clear is one undo step that stores
only the changed rectangle (before and after), so a 5-megapixel frame does not cost 10 MB per
step. With defect classes (``set_classes``) the mask is class-index instead (0 background, k + 1
class k): a class picker chooses what the brush and the ellipse paint, each class in its colour. Left button paints; right / middle drag and the wheel pan and zoom (pyqtgraph's ViewBox).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import cv2
import numpy as np
import pyqtgraph as pg
from numpy.typing import NDArray
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QIcon, QKeySequence, QPen, QPixmap, QUndoCommand, QUndoStack
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QGraphicsEllipseItem,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QStackedWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

Tool = Literal["brush", "eraser", "ellipse"]
TOOLS: tuple[Tool, ...] = ("brush", "eraser", "ellipse")
UNDO_LIMIT = 100  # steps; each holds only the changed rectangle

# 0 -> transparent, anything painted -> translucent red, so the defect under it stays visible.
_MASK_LUT = np.zeros((256, 4), dtype=np.uint8)
_MASK_LUT[1:] = (255, 40, 40, 140)


def _class_lut(colours: Sequence[str]) -> NDArray[np.uint8]:
    lut = _MASK_LUT.copy()  # a value that is no class id stays red
    for k, colour in enumerate(colours):
        c = QColor(colour)
        lut[k + 1] = (c.red(), c.green(), c.blue(), 140)
    return lut


class _MaskEdit(QUndoCommand):
    """One painting step: the changed rectangle of the mask before and after."""

    def __init__(
        self,
        canvas: PaintCanvas,
        y: int,
        x: int,
        before: NDArray[np.uint8],
        after: NDArray[np.uint8],
        text: str,
    ) -> None:
        super().__init__(text)
        self._canvas, self._y, self._x = canvas, y, x
        self._before, self._after = before, after

    def _put(self, patch: NDArray[np.uint8]) -> None:
        h, w = patch.shape
        self._canvas._mask[self._y : self._y + h, self._x : self._x + w] = patch
        self._canvas._mask_updated()

    def undo(self) -> None:
        self._put(self._before)

    def redo(self) -> None:  # also runs on push(); writing the "after" patch again is harmless
        self._put(self._after)


class _MaskItem(pg.ImageItem):
    """The overlay that receives the painting mouse events, in image pixel coordinates."""

    def __init__(self, canvas: PaintCanvas) -> None:
        super().__init__(axisOrder="row-major")
        self._canvas = canvas

    # ``ev``: pyqtgraph's HoverEvent / MouseDragEvent / MouseClickEvent (pyqtgraph ships no types).
    def hoverEvent(self, ev: Any) -> None:  # noqa: N802 (pyqtgraph's name)
        if ev.isExit():
            self._canvas._hover(None)
            return
        # Claim left drags so the ViewBox does not pan while the technician paints.
        ev.acceptDrags(Qt.MouseButton.LeftButton)
        ev.acceptClicks(Qt.MouseButton.LeftButton)
        self._canvas._hover(ev.pos())

    def mouseDragEvent(self, ev: Any) -> None:  # noqa: N802
        if ev.button() != Qt.MouseButton.LeftButton or not self._canvas.has_image:
            ev.ignore()
            return
        ev.accept()
        if ev.isStart():
            self._canvas._begin(ev.buttonDownPos())
        self._canvas._drag_to(ev.pos())
        if ev.isFinish():
            self._canvas._finish()

    def mouseClickEvent(self, ev: Any) -> None:  # noqa: N802
        if ev.button() != Qt.MouseButton.LeftButton or not self._canvas.has_image:
            ev.ignore()
            return
        ev.accept()
        p = ev.pos()
        if self._canvas.tool != "ellipse":  # a click is a single dab of the brush / eraser
            self._canvas.paint_stroke([(p.x(), p.y())])


class PaintCanvas(QWidget):
    """Frame + editable defect mask, with the tool bar that drives it.

    Public API (also used by tests): ``set_image``, ``mask``, ``set_tool``, ``set_brush_size``,
    ``paint_stroke``, ``paint_ellipse``, ``clear_mask``, ``undo``, ``redo``, ``undo_stack``.
    """

    mask_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._mask: NDArray[np.uint8] = np.zeros((0, 0), np.uint8)
        self._tool: Tool = "brush"
        self._brush = 9
        self._classes: tuple[str, ...] = ()
        self._lut = _MASK_LUT
        self._before: NDArray[np.uint8] | None = None  # mask at stroke start
        self._last: tuple[float, float] | None = None
        self._anchor: tuple[float, float] | None = None  # ellipse drag start
        # During a stroke the overlay is redrawn at most every 30 ms (a 5 MP mask takes a while).
        self._redraw = QTimer(self, singleShot=True, interval=30)
        self._redraw.timeout.connect(self._mask_updated)
        self.undo_stack = QUndoStack(self)
        self.undo_stack.setUndoLimit(UNDO_LIMIT)

        self._view = pg.GraphicsLayoutWidget()
        self._view.setToolTip(
            "Left button paints with the chosen tool; right / middle drag and the wheel pan and zoom"
        )
        self._vb = self._view.addViewBox(lockAspect=True, invertY=True)
        self._vb.setMenuEnabled(False)
        self._frame_item = pg.ImageItem(axisOrder="row-major")
        self._mask_item = _MaskItem(self)
        self._vb.addItem(self._frame_item)
        self._vb.addItem(self._mask_item)
        self._cursor = QGraphicsEllipseItem()
        self._cursor.setPen(pg.mkPen(QColor(255, 255, 0), width=0))  # cosmetic 1-px outline
        self._cursor.setVisible(False)
        self._vb.addItem(self._cursor, ignoreBounds=True)
        self._preview = QGraphicsEllipseItem()
        preview_pen = QPen(QColor(255, 40, 40))
        preview_pen.setCosmetic(True)
        preview_pen.setStyle(Qt.PenStyle.DashLine)
        self._preview.setPen(preview_pen)
        self._preview.setVisible(False)
        self._vb.addItem(self._preview, ignoreBounds=True)

        # With nothing to edit the view would be a black square: say how to get a frame instead.
        self._empty = QLabel("Nothing to edit yet.")
        self._empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self._empty.setWordWrap(True)
        self._stack = QStackedWidget()
        self._stack.addWidget(self._view)
        self._stack.addWidget(self._empty)

        self._build_toolbar()
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(self._bar)
        lay.addWidget(self._stack, 1)
        self._sync_enabled()

    def set_empty_text(self, text: str) -> None:
        """What the canvas says while it has no image (how to put one in)."""
        self._empty.setText(text)

    def _build_toolbar(self) -> None:
        self._bar = QHBoxLayout()
        self._tool_group = QButtonGroup(self)
        self._tool_buttons: dict[Tool, QToolButton] = {}
        for name, key in zip(TOOLS, ("B", "E", "O"), strict=True):
            btn = QToolButton()
            btn.setText(name.capitalize())
            btn.setCheckable(True)
            btn.setShortcut(QKeySequence(key))
            btn.setToolTip(f"{name.capitalize()} ({key})")
            btn.clicked.connect(lambda _=False, n=name: self.set_tool(n))
            self._tool_group.addButton(btn)
            self._tool_buttons[name] = btn
            self._bar.addWidget(btn)
        self._tool_buttons["brush"].setChecked(True)
        self._bar.addWidget(QLabel("Size"))
        self._size = QSpinBox(minimum=1, maximum=200, value=self._brush, suffix=" px")
        self._size.setToolTip("Brush / eraser diameter in frame pixels")
        self._size.valueChanged.connect(self.set_brush_size)
        self._bar.addWidget(self._size)
        undo = self.undo_stack.createUndoAction(self, "Undo")
        undo.setShortcut(QKeySequence.StandardKey.Undo)
        redo = self.undo_stack.createRedoAction(self, "Redo")
        redo.setShortcut(QKeySequence.StandardKey.Redo)
        for act in (undo, redo):
            self.addAction(act)  # shortcuts work while the canvas has focus
            btn = QToolButton()
            btn.setDefaultAction(act)
            self._bar.addWidget(btn)
        self._class_label = QLabel("Class")
        self._class = QComboBox()
        self._class.setToolTip(
            "Defect class the brush and the ellipse paint (the eraser clears any)"
        )
        self._class_label.setBuddy(self._class)
        self._bar.addWidget(self._class_label)
        self._bar.addWidget(self._class)
        self._class_label.setVisible(False)
        self._class.setVisible(False)
        self._clear_btn = QToolButton()
        self._clear_btn.setText("Clear")
        self._clear_btn.setToolTip("Erase the whole mask (undoable)")
        self._clear_btn.clicked.connect(self.clear_mask)
        self._bar.addWidget(self._clear_btn)
        self._bar.addStretch(1)

    # ----------------------------------------------------------------- state
    @property
    def has_image(self) -> bool:
        return self._mask.size > 0

    @property
    def tool(self) -> Tool:
        return self._tool

    @property
    def brush_size(self) -> int:
        return self._brush

    @property
    def class_names(self) -> tuple[str, ...]:
        return self._classes

    def set_classes(self, names: Sequence[str], colours: Sequence[str]) -> None:
        """Paint class ids with a class picker (two or more names), else a binary 0 / 255 mask.

        Call before ``set_image``: the mask in the editor is read with the classes set then.
        """
        names = tuple(names) if len(names) >= 2 else ()
        self._classes = names
        self._lut = _class_lut(tuple(colours)[: len(names)]) if names else _MASK_LUT
        self._class.blockSignals(True)
        self._class.clear()
        for name, colour in zip(names, colours, strict=False):
            swatch = QPixmap(12, 12)
            swatch.fill(QColor(colour))
            self._class.addItem(QIcon(swatch), name)
        self._class.blockSignals(False)
        self._class_label.setVisible(bool(names))
        self._class.setVisible(bool(names))
        self._mask_updated()

    @property
    def current_class(self) -> int:
        """Index into ``class_names`` of the class painted now (0 without classes)."""
        return max(0, self._class.currentIndex())

    def set_class(self, index: int) -> None:
        if not 0 <= index < len(self._classes):
            raise ValueError(f"class index {index} is not in 0..{len(self._classes) - 1}")
        self._class.setCurrentIndex(index)

    def _paint_value(self) -> int:
        return self.current_class + 1 if self._classes else 255

    def set_tool(self, tool: Tool) -> None:
        if tool not in TOOLS:
            raise ValueError(f"unknown tool {tool!r}; expected one of {TOOLS}")
        self._tool = tool
        self._tool_buttons[tool].setChecked(True)

    def set_brush_size(self, px: int) -> None:
        self._brush = max(1, int(px))
        if self._size.value() != self._brush:
            self._size.setValue(self._brush)

    def set_image(
        self,
        image: NDArray[np.uint8] | NDArray[np.uint16],
        mask: NDArray[np.generic] | None = None,
    ) -> None:
        """Show ``image`` (grey or BGR, 8/16 bit) and start editing ``mask`` (non-zero = defect;
        class ids when the canvas has classes).

        Clears the undo history: undoing into another frame's mask would be meaningless.
        """
        h, w = image.shape[:2]
        if mask is not None and mask.shape[:2] != (h, w):
            raise ValueError(f"mask shape {mask.shape} does not match image {image.shape}")
        top = 65535 if image.dtype == np.uint16 else 255
        shown = image[..., ::-1] if image.ndim == 3 else image  # BGR (OpenCV) -> RGB for Qt
        self._frame_item.setImage(np.ascontiguousarray(shown), autoLevels=False, levels=(0, top))
        if mask is None:
            self._mask = np.zeros((h, w), np.uint8)
        elif self._classes:  # class ids as they are; anything else is not a class: background
            m = np.asarray(mask)
            self._mask = np.where((m >= 0) & (m <= len(self._classes)), m, 0).astype(np.uint8)
        else:
            self._mask = np.where(np.asarray(mask) > 0, 255, 0).astype(np.uint8)
        self.undo_stack.clear()
        self._before = self._last = self._anchor = None
        self._mask_updated()
        self._vb.autoRange(padding=0.02)
        self._sync_enabled()

    def clear_image(self) -> None:
        self._frame_item.clear()
        self._mask = np.zeros((0, 0), np.uint8)
        self._mask_item.clear()
        self.undo_stack.clear()
        self._sync_enabled()
        self.mask_changed.emit()

    def mask(self) -> NDArray[np.uint8]:  # type: ignore[override]  # the painted mask, not Qt's shape mask
        """A copy of the edited mask, 0 / 255 (class ids with classes), at frame resolution."""
        return self._mask.copy()

    # ------------------------------------------------------------- editing API
    def paint_stroke(self, points: Sequence[tuple[float, float]], tool: Tool | None = None) -> None:
        """Paint (or erase) along ``points`` in image (x, y) pixels as one undo step."""
        if not self.has_image or not points:
            return
        saved = self._tool
        if tool is not None:
            self._tool = tool
        try:
            self._begin(QPointF(*points[0]))
            for x, y in points:
                self._drag_to(QPointF(x, y))
            self._finish()
        finally:
            self._tool = saved

    def paint_ellipse(self, x0: float, y0: float, x1: float, y1: float) -> None:
        """Fill the ellipse inscribed in the box (x0, y0)-(x1, y1) as one undo step."""
        if not self.has_image:
            return
        before = self._mask.copy()
        self._fill_ellipse((x0, y0), (x1, y1))
        self._commit(before, "Ellipse")

    def clear_mask(self) -> None:
        if self.has_image and self._mask.any():
            before = self._mask.copy()
            self._mask[:] = 0
            self._commit(before, "Clear")

    def undo(self) -> None:
        self.undo_stack.undo()

    def redo(self) -> None:
        self.undo_stack.redo()

    # -------------------------------------------------------- mouse plumbing
    def _begin(self, pos: QPointF) -> None:
        self._before = self._mask.copy()
        self._last = (pos.x(), pos.y())
        self._anchor = self._last
        if self._tool != "ellipse":
            self._dab(self._last, self._last)

    def _drag_to(self, pos: QPointF) -> None:
        if self._before is None or self._last is None:
            return
        p = (pos.x(), pos.y())
        if self._tool == "ellipse":
            assert self._anchor is not None
            ax, ay = self._anchor
            self._preview.setRect(QRectF(QPointF(ax, ay), QPointF(*p)).normalized())
            self._preview.setVisible(True)
        else:
            self._dab(self._last, p)
        self._last = p

    def _finish(self) -> None:
        if self._before is None:
            return
        before, self._before = self._before, None
        if self._tool == "ellipse" and self._anchor is not None and self._last is not None:
            self._preview.setVisible(False)
            self._fill_ellipse(self._anchor, self._last)
        self._commit(before, self._tool.capitalize())
        self._last = self._anchor = None

    def _dab(self, p0: tuple[float, float], p1: tuple[float, float]) -> None:
        value = 0 if self._tool == "eraser" else self._paint_value()
        a = (round(p0[0]), round(p0[1]))
        b = (round(p1[0]), round(p1[1]))
        if self._brush <= 1:
            cv2.line(self._mask, a, b, value, 1)
        else:  # a thick cv2.line has round caps, so a stroke is a chain of brush discs
            cv2.line(self._mask, a, b, value, self._brush)
            cv2.circle(self._mask, a, self._brush // 2, value, -1)
        if not self._redraw.isActive():  # mouse moves come faster than a big frame redraws
            self._redraw.start()

    def _fill_ellipse(self, p0: tuple[float, float], p1: tuple[float, float]) -> None:
        cx, cy = (p0[0] + p1[0]) / 2, (p0[1] + p1[1]) / 2
        ax, ay = abs(p1[0] - p0[0]) / 2, abs(p1[1] - p0[1]) / 2
        if ax < 0.5 and ay < 0.5:
            return
        cv2.ellipse(
            self._mask,
            (round(cx), round(cy)),
            (max(1, round(ax)), max(1, round(ay))),
            0,
            0,
            360,
            self._paint_value(),
            -1,
        )
        self._mask_updated()

    def _commit(self, before: NDArray[np.uint8], text: str) -> None:
        changed = np.nonzero(before != self._mask)
        if changed[0].size == 0:
            return  # a stroke that changed nothing must not clutter the undo history
        y0, y1 = int(changed[0].min()), int(changed[0].max()) + 1
        x0, x1 = int(changed[1].min()), int(changed[1].max()) + 1
        cmd = _MaskEdit(
            self,
            y0,
            x0,
            before[y0:y1, x0:x1].copy(),
            self._mask[y0:y1, x0:x1].copy(),
            text,
        )
        self.undo_stack.push(cmd)

    def _mask_updated(self) -> None:
        self._redraw.stop()
        if self._mask.size:
            self._mask_item.setImage(self._mask, autoLevels=False, levels=(0, 255), lut=self._lut)
        self.mask_changed.emit()

    def _hover(self, pos: QPointF | None) -> None:
        if pos is None or self._tool == "ellipse":
            self._cursor.setVisible(False)
            return
        r = self._brush / 2
        self._cursor.setRect(QRectF(pos.x() - r, pos.y() - r, 2 * r, 2 * r))
        self._cursor.setVisible(True)

    def _sync_enabled(self) -> None:
        enabled = self.has_image
        self._stack.setCurrentWidget(self._view if enabled else self._empty)
        for btn in self._tool_buttons.values():
            btn.setEnabled(enabled)
        self._clear_btn.setEnabled(enabled)
        self._size.setEnabled(enabled)
        self._class.setEnabled(enabled)

"""Technician labelling: paint with the mouse, undo/redo, save into the dataset, false alarms."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from PySide6.QtCore import QEvent, QPoint, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication

from app.station.inspection import FrameResult
from app.station.inspector import binary_mask
from app.station.label_session import LabelSession
from app.station.recipe import Recipe
from app.station.session import InspectionSession
from app.station.settings import Settings
from app.ui.label_panel import LabelPanel
from app.ui.paint_canvas import PaintCanvas

pytestmark = pytest.mark.gui


LEFT = Qt.MouseButton.LeftButton
NONE = Qt.MouseButton.NoButton


@pytest.fixture
def session(recipe: Recipe, settings: Settings) -> Iterator[InspectionSession]:
    s = InspectionSession(recipe, settings=settings)
    yield s
    s.close()


@pytest.fixture
def panel(qtbot: Any, session: InspectionSession) -> Iterator[LabelPanel]:
    labels = LabelSession(
        lambda: session.recipe.dataset_path(session.settings.data_dir), lambda: session.rules
    )
    p = LabelPanel(labels)
    qtbot.addWidget(p)
    p.resize(700, 600)
    p.show()
    qtbot.waitExposed(p)
    yield p


def _result_with_defect(session: InspectionSession) -> FrameResult:
    for _ in range(8):  # conftest frames: every other one has a bright blob
        r = session.step()
        assert r is not None
        if r.inspection.verdict == "NG":
            return r
    raise AssertionError("no NG frame among the test frames")


def _send(widget: Any, kind: QEvent.Type, pos: QPoint, button: Any, buttons: Any) -> None:
    ev = QMouseEvent(
        kind, QPointF(pos), QPointF(widget.mapToGlobal(pos)), button, buttons,
        Qt.KeyboardModifier.NoModifier,
    )  # fmt: skip
    QApplication.sendEvent(widget, ev)


def drag(canvas: PaintCanvas, a: tuple[float, float], b: tuple[float, float], n: int = 12) -> None:
    """A real left-button drag over the canvas viewport, from image pixel a to image pixel b.

    Moves are spaced like a hand's: pyqtgraph drops mouse moves closer than 10 ms apart
    (``mouseRateLimit``), and a drag whose moves were all dropped is delivered as a click.
    """
    view = canvas._view
    vp = view.viewport()

    def to_vp(x: float, y: float) -> QPoint:
        return view.mapFromScene(canvas._mask_item.mapToScene(QPointF(x, y)))

    pa, pb = to_vp(*a), to_vp(*b)
    _send(vp, QEvent.Type.MouseButtonPress, pa, LEFT, LEFT)
    for i in range(1, n + 1):
        p = QPoint(pa.x() + (pb.x() - pa.x()) * i // n, pa.y() + (pb.y() - pa.y()) * i // n)
        QTest.qWait(15)
        _send(vp, QEvent.Type.MouseMove, p, NONE, LEFT)
    _send(vp, QEvent.Type.MouseButtonRelease, pb, LEFT, NONE)


def test_brush_drag_paints_and_undo_redo_restore(qtbot: Any) -> None:
    canvas = PaintCanvas()
    qtbot.addWidget(canvas)
    canvas.resize(500, 500)
    canvas.show()
    qtbot.waitExposed(canvas)
    canvas.set_image(np.full((100, 120), 90, np.uint8))
    canvas.set_brush_size(7)
    qtbot.wait(20)

    drag(canvas, (20, 50), (90, 50))
    painted = canvas.mask()
    assert painted[50, 55] == 255 and painted[50, 25] == 255  # along the stroke
    assert painted[10, 55] == 0 and painted[50, 110] == 0  # not elsewhere
    assert set(np.unique(painted)) == {0, 255}
    assert canvas.undo_stack.count() == 1

    canvas.set_tool("eraser")
    drag(canvas, (55, 35), (55, 65))
    erased = canvas.mask()
    assert erased[50, 55] == 0 and erased[50, 25] == 255

    canvas.undo()
    np.testing.assert_array_equal(canvas.mask(), painted)
    canvas.undo()
    assert not canvas.mask().any()
    canvas.redo()
    np.testing.assert_array_equal(canvas.mask(), painted)
    canvas.redo()
    np.testing.assert_array_equal(canvas.mask(), erased)


def test_ellipse_tool_and_clear_are_undoable(qtbot: Any) -> None:
    canvas = PaintCanvas()
    qtbot.addWidget(canvas)
    canvas.resize(400, 400)
    canvas.show()
    qtbot.waitExposed(canvas)
    canvas.set_image(np.zeros((80, 80, 3), np.uint8))
    qtbot.wait(20)  # let the view lay out the new image before mapping pixels to the screen
    canvas.set_tool("ellipse")
    drag(canvas, (10, 20), (50, 40))
    m = canvas.mask()
    assert m[30, 30] == 255 and m[5, 5] == 0 and m[30, 60] == 0
    canvas.clear_mask()
    assert not canvas.mask().any()
    canvas.undo()
    np.testing.assert_array_equal(canvas.mask(), m)


def test_save_label_writes_image_and_mask_and_never_overwrites(
    qtbot: Any, panel: LabelPanel, session: InspectionSession
) -> None:
    result = _result_with_defect(session)
    panel.set_candidate(result)
    panel.pause_on_candidate()
    # The editor starts from the model's own mask at the current threshold.
    start = binary_mask(result.prob, session.rules)
    assert start.any()
    np.testing.assert_array_equal(panel.canvas.mask(), start)

    panel.canvas.set_brush_size(5)
    qtbot.wait(20)
    drag(panel.canvas, (5, 5), (30, 5))  # the "missed" defect along the top edge
    edited = panel.canvas.mask()
    assert edited[5, 15] == 255 and not start[5, 15]

    with qtbot.waitSignal(panel.saved, timeout=10_000) as first:
        panel.save()
    paths = first.args[0]
    dataset = Path(session.recipe.dataset_dir)
    assert paths.image.parent == dataset / "images" and paths.mask.parent == dataset / "masks"
    assert str(paths.image) in panel.status.text()
    image = cv2.imread(str(paths.image), cv2.IMREAD_UNCHANGED)
    mask = cv2.imread(str(paths.mask), cv2.IMREAD_GRAYSCALE)
    np.testing.assert_array_equal(image, result.frame.image)
    np.testing.assert_array_equal(mask, edited)

    with qtbot.waitSignal(panel.saved, timeout=10_000) as second:
        panel.save()
    again = second.args[0]
    assert again.image != paths.image and again.mask != paths.mask
    assert again.name == f"{paths.name}_2"
    np.testing.assert_array_equal(cv2.imread(str(paths.mask), cv2.IMREAD_GRAYSCALE), edited)
    qtbot.waitUntil(lambda: "2 images" in panel.summary.text(), timeout=5000)


def test_an_empty_editor_says_how_to_fill_it(
    qtbot: Any, panel: LabelPanel, session: InspectionSession
) -> None:
    """No black square before a frame is paused on: the canvas explains, then shows the frame."""
    empty, view = panel.canvas._empty, panel.canvas._view
    assert empty.isVisible() and not view.isVisible()
    assert "Pause on this frame" in empty.text()
    panel.set_candidate(_result_with_defect(session))
    panel.pause_on_candidate()
    assert view.isVisible() and not empty.isVisible()
    panel.discard()
    assert empty.isVisible() and not view.isVisible()


def test_mark_false_alarm_saves_an_empty_mask(
    qtbot: Any, panel: LabelPanel, session: InspectionSession
) -> None:
    result = _result_with_defect(session)  # an NG frame the technician says is fine
    panel.set_candidate(result)
    qtbot.waitUntil(lambda: panel._pause.isEnabled(), timeout=2000)
    with qtbot.waitSignal(panel.saved, timeout=10_000) as saved:
        panel.mark_false_alarm()
    paths = saved.args[0]
    assert paths.kind == "false_alarm"
    mask = cv2.imread(str(paths.mask), cv2.IMREAD_GRAYSCALE)
    assert mask.shape == result.frame.image.shape[:2] and not mask.any()
    assert cv2.imread(str(paths.image), cv2.IMREAD_UNCHANGED) is not None
    qtbot.waitUntil(lambda: "0 with a defect, 1 defect-free" in panel.summary.text(), timeout=5000)


def test_an_empty_defect_mask_is_refused_with_a_message(
    qtbot: Any, panel: LabelPanel, session: InspectionSession
) -> None:
    panel.edit(_result_with_defect(session))
    panel.canvas.clear_mask()
    with qtbot.waitSignal(panel.save_failed, timeout=10_000):
        panel.save()
    assert "NOT saved" in panel.status.text() and "mark a false alarm" in panel.status.text()
    assert not (Path(session.recipe.dataset_dir) / "masks").exists() or not any(
        (Path(session.recipe.dataset_dir) / "masks").iterdir()
    )


def test_the_frame_on_screen_becomes_the_candidate(qtbot: Any, make_panels: Any) -> None:
    p = make_panels()
    label: LabelPanel = p["label"]
    result = _result_with_defect(p.session)
    p.view_state.review(result, "archived")  # e.g. opened from the history: no window involved
    qtbot.waitUntil(lambda: "Shown now" in label._source.text(), timeout=2000)
    label.pause_on_candidate()
    assert label.editing is not None
    assert label.editing.frame.frame_id == result.frame.frame_id
    assert label.canvas.has_image


def test_saved_labels_refresh_the_training_data_summary(qtbot: Any, make_panels: Any) -> None:
    p = make_panels()
    label: LabelPanel = p["label"]
    train = p["train"]
    qtbot.waitUntil(lambda: "0 images" in train.summary.text(), timeout=5000)
    p.view_state.offer_live(_result_with_defect(p.session))
    with qtbot.waitSignal(label.saved, timeout=10_000):
        label.mark_false_alarm()
    qtbot.waitUntil(lambda: "1 images" in train.summary.text(), timeout=5000)
    assert "1 defect-free" in train.summary.text()

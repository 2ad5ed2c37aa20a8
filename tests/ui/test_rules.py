"""The engineer's sliders and zones: the current frame is re-judged at once, with no inference."""

from __future__ import annotations

from typing import Any

import pytest
from PySide6.QtCore import QPointF, Qt

from app.station.recipe import load_recipe
from engines._onnxruntime import OnnxRuntimeEngine

pytestmark = pytest.mark.gui


@pytest.fixture
def infer_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts every engine inference (wraps the real ONNX Runtime call)."""
    calls: list[int] = []
    real = OnnxRuntimeEngine.infer

    def counting(self: OnnxRuntimeEngine, batch: Any) -> Any:
        calls.append(len(batch))
        return real(self, batch)

    monkeypatch.setattr(OnnxRuntimeEngine, "infer", counting)
    return calls


def _step(qtbot: Any, window: Any) -> Any:
    with qtbot.waitSignal(window.controls.stepped, timeout=10_000) as blocker:
        window.controls.step_button.click()
    qtbot.waitUntil(lambda: window.controls.step_button.isEnabled(), timeout=5_000)
    return blocker.args[0]


def _step_to_strong_ng(qtbot: Any, window: Any) -> Any:
    """Step until the frame with the bright blob (max probability ~0.95) is on screen."""
    for _ in range(6):
        result = _step(qtbot, window)
        if result.inspection.verdict == "NG" and result.inspection.defects[0].max_prob > 0.9:
            return result
    raise AssertionError("no strongly defective frame in the test folder")


def test_threshold_slider_rejudges_without_inference(
    qtbot: Any, make_main_window: Any, infer_calls: list[int]
) -> None:
    window = make_main_window(unlocked=True)
    ng = _step_to_strong_ng(qtbot, window)
    assert window.verdict_panel.verdict.text() == "NG"
    calls_before = len(infer_calls)
    assert calls_before > 0  # the counter does see the real inferences

    window.rules_panel.threshold.slider.setValue(97)  # 0.97: above the blob's max probability
    window.rules_panel.flush()
    current = window.current_result()  # re-judged at once, before the session has the rules
    assert current.frame.frame_id == ng.frame.frame_id
    assert current.inspection.verdict == "PASS"
    assert window.verdict_panel.verdict.text() == "PASS"
    assert window.live_panel.mask_item.image.max() == 0  # the overlay follows the threshold too

    qtbot.waitUntil(window.rules.idle, timeout=5_000)  # then the session, off the GUI thread
    assert window.session.rules.threshold == pytest.approx(0.97)
    assert window.session.latest().inspection.verdict == "PASS"  # kept results re-judged too

    window.rules_panel.threshold.spin.setValue(0.5)
    window.rules_panel.flush()
    assert window.current_result().inspection.verdict == "NG"
    assert window.verdict_panel.verdict.text() == "NG"
    qtbot.waitUntil(window.rules.idle, timeout=5_000)
    assert len(infer_calls) == calls_before, "moving a slider must not run the model"


def test_min_area_and_count_rules(qtbot: Any, make_main_window: Any) -> None:
    window = make_main_window(unlocked=True)
    ng = _step_to_strong_ng(qtbot, window)
    area = ng.inspection.defects[0].area_px
    panel = window.rules_panel
    panel.min_area.spin.setValue(area + 1)
    panel.flush()
    assert window.current_result().inspection.verdict == "PASS"
    panel.min_area.spin.setValue(0)
    panel.max_count.spin.setValue(1)  # one defect tolerated
    panel.flush()
    assert window.current_result().inspection.verdict == "PASS"
    panel.max_count.spin.setValue(0)
    panel.limit_total.setChecked(True)
    panel.max_total.spin.setValue(area * 10)
    panel.flush()
    qtbot.waitUntil(window.rules.idle, timeout=5_000)
    assert window.session.rules.max_total_area_px == area * 10
    assert window.current_result().inspection.verdict == "NG"  # count 1 > max 0 still


def test_save_to_recipe_and_revert(qtbot: Any, make_main_window: Any) -> None:
    window = make_main_window(unlocked=True)
    session = window.session
    version = session.recipe.version
    panel = window.rules_panel
    panel.threshold.spin.setValue(0.8)
    panel.flush()
    assert "unsaved" in panel.recipe_label.text()
    panel.save_button.click()
    qtbot.waitUntil(lambda: session.recipe.version == version + 1, timeout=10_000)
    qtbot.waitUntil(lambda: not panel.busy(), timeout=5_000)
    assert load_recipe(session.recipe_path).rules.threshold == pytest.approx(0.8)
    assert not session.dirty and "saved" in panel.recipe_label.text()

    panel.threshold.spin.setValue(0.3)
    panel.flush()
    qtbot.waitUntil(window.rules.idle, timeout=5_000)
    assert session.rules.threshold == pytest.approx(0.3)
    panel.revert_button.click()
    qtbot.waitUntil(lambda: not panel.busy(), timeout=5_000)
    assert session.rules.threshold == pytest.approx(0.8)
    assert window.rules.rules.threshold == pytest.approx(0.8)
    assert panel.threshold.value() == pytest.approx(0.8)


def _click_image(qtbot: Any, window: Any, x: float, y: float) -> None:
    """A real mouse click on the live view at image pixel (x, y)."""
    panel = window.live_panel
    scene_pos = panel.view.mapViewToScene(QPointF(x, y))
    pos = panel.graphics.mapFromScene(scene_pos)
    qtbot.mouseClick(panel.graphics.viewport(), Qt.MouseButton.LeftButton, pos=pos)


def test_zone_drawn_on_the_image_becomes_a_rule(qtbot: Any, make_main_window: Any) -> None:
    window = make_main_window(unlocked=True)
    ng = _step_to_strong_ng(qtbot, window)
    window.show_tab(window.zone_editor)
    editor = window.zone_editor
    editor.kind.setCurrentText("exclude")
    editor.name.setText("edge")
    editor.draw_button.click()
    # the whole frame: the defect's centroid lies inside, so the exclude zone hides it
    for x, y in ((1, 1), (94, 1), (94, 94), (1, 94)):
        _click_image(qtbot, window, x, y)
        qtbot.wait(300)  # keep clicks apart so they are not taken for a double click
    assert len(editor._points) == 4
    editor.close_button.click()
    qtbot.waitUntil(window.rules.idle, timeout=5_000)
    zones = window.session.rules.zones
    assert len(zones) == 1
    zone = zones[0]
    assert (zone.name, zone.kind) == ("edge", "exclude")
    assert zone.polygon[0] == pytest.approx((1, 1), abs=1.5)
    assert zone.polygon[2] == pytest.approx((94, 94), abs=1.5)
    current = window.current_result()
    assert current.frame.frame_id == ng.frame.frame_id
    assert current.inspection.verdict == "PASS"
    assert editor.table.rowCount() == 1
    assert len(window.live_panel._zone_items) == 2  # outline + name

    editor.table.selectRow(0)
    editor.delete_button.click()
    qtbot.waitUntil(window.rules.idle, timeout=5_000)
    assert window.session.rules.zones == ()
    assert window.current_result().inspection.verdict == "NG"


def test_critical_zone_min_area(qtbot: Any, make_main_window: Any) -> None:
    window = make_main_window(unlocked=True)
    ng = _step_to_strong_ng(qtbot, window)
    defect = ng.inspection.defects[0]
    window.rules_panel.max_count.spin.setValue(5)  # counts alone would pass the part
    window.rules_panel.flush()
    assert window.current_result().inspection.verdict == "PASS"
    editor = window.zone_editor
    editor.kind.setCurrentText("critical")
    editor.min_area.setValue(1)
    editor.draw_button.setChecked(True)
    x, y, w, h = defect.bbox
    for px, py in ((x - 3, y - 3), (x + w + 3, y - 3), (x + w + 3, y + h + 3), (x - 3, y + h + 3)):
        editor.add_point(px, py)
    zone = editor.close_polygon()
    assert zone is not None and zone.kind == "critical" and zone.min_area_px == 1
    qtbot.waitUntil(window.rules.idle, timeout=5_000)
    assert window.session.rules.zones == (zone,)
    assert window.current_result().inspection.verdict == "NG"

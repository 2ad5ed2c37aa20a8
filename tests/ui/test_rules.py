"""The engineer's sliders and zones over the RulesModel: re-judging with no inference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from app.station.recipe import load_recipe
from engines._onnxruntime import OnnxRuntimeEngine
from tests.ui.conftest import write_frames

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


def test_threshold_slider_rejudges_without_inference(
    qtbot: Any, make_panels: Any, infer_calls: list[int]
) -> None:
    p = make_panels()
    ng = p.step_to_strong_ng()
    panel, model = p["rules"], p["rules"].model
    calls_before = len(infer_calls)
    assert calls_before > 0  # the counter does see the real inferences

    with qtbot.waitSignal(panel.rules_changed, timeout=2_000) as wanted:
        panel.threshold.slider.setValue(97)  # 0.97: above the blob's max probability
        panel.flush()
    assert wanted.args[0].threshold == pytest.approx(0.97)
    assert model.rules.threshold == pytest.approx(0.97)  # the model's at once
    assert model.rejudge(ng).inspection.verdict == "PASS"  # what the window puts on screen

    qtbot.waitUntil(model.idle, timeout=5_000)  # then the session, off the GUI thread
    assert p.session.rules.threshold == pytest.approx(0.97)
    assert p.session.latest().inspection.verdict == "PASS"  # kept results re-judged too

    panel.threshold.spin.setValue(0.5)
    panel.flush()
    assert model.rejudge(ng).inspection.verdict == "NG"
    qtbot.waitUntil(model.idle, timeout=5_000)
    assert len(infer_calls) == calls_before, "moving a slider must not run the model"


def test_min_area_count_and_total_rules(qtbot: Any, make_panels: Any) -> None:
    p = make_panels()
    ng = p.step_to_strong_ng()
    area = ng.inspection.defects[0].area_px
    panel, model = p["rules"], p["rules"].model
    panel.min_area.spin.setValue(area + 1)
    panel.flush()
    assert model.rejudge(ng).inspection.verdict == "PASS"
    panel.min_area.spin.setValue(0)
    panel.max_count.spin.setValue(1)  # one defect tolerated
    panel.flush()
    assert model.rejudge(ng).inspection.verdict == "PASS"
    panel.max_count.spin.setValue(0)
    panel.limit_total.setChecked(True)
    panel.max_total.spin.setValue(area * 10)
    panel.flush()
    qtbot.waitUntil(model.idle, timeout=5_000)
    assert p.session.rules.max_total_area_px == area * 10
    assert model.rejudge(ng).inspection.verdict == "NG"  # count 1 > max 0 still


def test_area_sliders_are_logarithmic_up_to_the_frame_area(qtbot: Any, make_panels: Any) -> None:
    p = make_panels()
    panel = p["rules"]
    panel.set_frame_size(512, 512)  # a DAGM frame
    slider = panel.min_area.slider
    assert panel.min_area.slider_max() == 512 * 512
    slider.setValue(slider.maximum())
    assert panel.min_area.value() == 512 * 512  # the whole frame is reachable
    slider.setValue(1)
    assert panel.min_area.value() == 1  # and so is a single pixel
    slider.setValue(0)
    assert panel.min_area.value() == 0  # the left end is "no minimum"
    # a DAGM defect (4,000-8,000 px) sits near three quarters of the way, not past the end
    panel.min_area.spin.setValue(6000)
    assert slider.minimum() < slider.value() < slider.maximum()
    assert 0.6 < slider.value() / slider.maximum() < 0.8
    panel.min_area.spin.setValue(50_000_000)  # the spin box takes what the recipe allows
    panel.flush()
    assert panel.model.rules.min_area_px == 50_000_000
    # the frames seen decide the range: the tiny test frames are 96 x 96
    p.step()
    qtbot.waitUntil(lambda: panel.min_area.slider_max() == 96 * 96, timeout=2_000)
    assert p["zones"].min_area.slider_max() == 96 * 96


def test_save_to_recipe_and_revert(qtbot: Any, make_panels: Any, tmp_path: Path) -> None:
    p = make_panels()
    session = p.session
    version = session.recipe.version
    panel, model = p["rules"], p["rules"].model
    other = write_frames(tmp_path / "other", 2)
    session.open_source(f"folder:{other}")  # the source chosen at the station is saved too
    panel.threshold.spin.setValue(0.8)
    panel.flush()
    assert "unsaved" in panel.recipe_label.text()
    panel.save_button.click()
    qtbot.waitUntil(lambda: session.recipe.version == version + 1, timeout=10_000)
    qtbot.waitUntil(lambda: not panel.busy(), timeout=5_000)
    saved = load_recipe(session.recipe_path)
    assert saved.rules.threshold == pytest.approx(0.8)
    assert saved.source.spec == f"folder:{other}"
    assert not session.dirty and "saved" in panel.recipe_label.text()

    panel.threshold.spin.setValue(0.3)
    panel.flush()
    qtbot.waitUntil(model.idle, timeout=5_000)
    assert session.rules.threshold == pytest.approx(0.3)
    panel.revert_button.click()
    qtbot.waitUntil(lambda: not panel.busy(), timeout=5_000)
    assert session.rules.threshold == pytest.approx(0.8)
    assert model.rules.threshold == pytest.approx(0.8)
    qtbot.waitUntil(lambda: panel.threshold.value() == pytest.approx(0.8), timeout=2_000)


def test_zone_drawn_on_the_image_becomes_a_rule(qtbot: Any, make_panels: Any) -> None:
    p = make_panels()
    ng = p.step_to_strong_ng()
    editor, model = p["zones"], p["rules"].model
    drafts: list[Any] = []
    drawn: list[Any] = []
    editor.draft_changed.connect(drafts.append)
    editor.zones_changed.connect(drawn.append)
    editor.kind.setCurrentText("exclude")
    editor.name.setText("edge")
    editor.image_clicked(1, 1)  # not drawing yet: ignored
    assert editor._points == []
    editor.draw_button.click()
    # the whole frame: the defect's centroid lies inside, so the exclude zone hides it
    for x, y in ((1, 1), (94, 1), (94, 94), (1, 94)):
        editor.image_clicked(x, y)  # the window forwards the image's clicks
    assert len(drafts[-1]) == 4
    editor.image_double_clicked()
    assert drafts[-1] == []  # the draft is gone from the image
    qtbot.waitUntil(model.idle, timeout=5_000)
    zones = p.session.rules.zones
    assert len(zones) == 1 and drawn[-1] == zones
    zone = zones[0]
    assert (zone.name, zone.kind) == ("edge", "exclude")
    assert zone.polygon[2] == pytest.approx((94, 94))
    assert model.rejudge(ng).inspection.verdict == "PASS"
    assert editor.table.rowCount() == 1

    editor.table.selectRow(0)
    editor.delete_button.click()
    qtbot.waitUntil(model.idle, timeout=5_000)
    assert p.session.rules.zones == () and drawn[-1] == ()
    assert model.rejudge(ng).inspection.verdict == "NG"


def test_critical_zone_min_area(qtbot: Any, make_panels: Any) -> None:
    p = make_panels()
    ng = p.step_to_strong_ng()
    defect = ng.inspection.defects[0]
    model = p["rules"].model
    p["rules"].max_count.spin.setValue(5)  # counts alone would pass the part
    p["rules"].flush()
    assert model.rejudge(ng).inspection.verdict == "PASS"
    editor = p["zones"]
    editor.kind.setCurrentText("critical")
    editor.min_area.spin.setValue(1)
    editor.draw_button.setChecked(True)
    x, y, w, h = defect.bbox
    for px, py in ((x - 3, y - 3), (x + w + 3, y - 3), (x + w + 3, y + h + 3), (x - 3, y + h + 3)):
        editor.add_point(px, py)
    zone = editor.close_polygon()
    assert zone is not None and zone.kind == "critical" and zone.min_area_px == 1
    qtbot.waitUntil(model.idle, timeout=5_000)
    assert p.session.rules.zones == (zone,)
    assert model.rejudge(ng).inspection.verdict == "NG"
    # the rules panel kept the zone when its own slider moved afterwards
    p["rules"].threshold.spin.setValue(0.55)
    p["rules"].flush()
    assert model.rules.zones == (zone,)

"""The operator's view: a running line, throttled drawing, overlay, filmstrip, single step."""

from __future__ import annotations

import gc
import sys
import threading
import time
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.gui


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None/True are immortal from 3.12 on")
def test_signal_delivery_keeps_reference_counts(qtbot: Any) -> None:
    """PySide6 6.12.0 on CPython 3.11 loses a reference to True (Python-emitted signals) or None
    (C++-emitted ones) per slot call: the station then aborts after a few hundred results with
    "Fatal Python error: bool_dealloc". Pin a PySide6 without that bug (6.11.3 is fine)."""
    from PySide6.QtCore import QEvent, QObject, Signal
    from PySide6.QtWidgets import QApplication, QSlider

    class Emitter(QObject):
        value = Signal(object)

    emitter = Emitter()
    got: list[object] = []
    emitter.value.connect(got.append)
    slider = QSlider()
    qtbot.addWidget(slider)
    slider.setRange(0, 1000)
    slider.valueChanged.connect(lambda v: None)
    # Objects deleted meanwhile legitimately release references: delete the pending ones first
    # (earlier tests' widgets wait in deleteLater) so that only the signal calls count.
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    gc.collect()
    before = sys.getrefcount(True), sys.getrefcount(None)
    worker = threading.Thread(target=lambda: [emitter.value.emit(i) for i in range(200)])
    worker.start()
    worker.join()
    for i in range(200):
        emitter.value.emit(i)
        slider.setValue(i + 1)
    qtbot.waitUntil(lambda: len(got) == 400, timeout=5_000)
    after = sys.getrefcount(True), sys.getrefcount(None)
    assert after[0] > before[0] - 50, f"True lost {before[0] - after[0]} references"
    assert after[1] > before[1] - 50, f"None lost {before[1] - after[1]} references"


def _collect(window: Any) -> list[Any]:
    got: list[Any] = []
    window.bridge.result.connect(got.append)
    return got


def test_demo_runs_and_delivers_results(qtbot: Any, make_main_window: Any) -> None:
    window = make_main_window()
    results = _collect(window)
    shown: list[Any] = []
    window.frame_selected.connect(shown.append)
    with qtbot.waitSignal(window.bridge.state, timeout=10_000, check_params_cb=lambda r: r):
        window.controls.start_button.click()
    qtbot.waitUntil(lambda: len(results) >= 20, timeout=30_000)
    qtbot.waitUntil(lambda: window.current_result() is not None, timeout=5_000)
    qtbot.waitUntil(lambda: window.verdict_panel.banner.kind in ("PASS", "NG"), timeout=5_000)
    qtbot.waitUntil(lambda: window.verdict_panel._values["judged"].text() != "0", timeout=5_000)
    assert window.live_panel.image_item.image is not None
    assert not window.controls.start_button.isEnabled()
    assert window.controls.stop_button.isEnabled()
    with qtbot.waitSignal(window.bridge.state, timeout=10_000, check_params_cb=lambda r: not r):
        window.controls.stop_button.click()
    qtbot.waitUntil(lambda: window.controls.start_button.isEnabled(), timeout=5_000)
    assert shown, "the window never showed a frame"


def test_drawing_is_throttled_to_display_rate(
    qtbot: Any, make_main_window: Any, recipe: Any
) -> None:
    # fps 0: the folder is read as fast as the pipeline goes, far faster than a display
    window = make_main_window(source=replace(recipe.source, fps=0.0))
    results = _collect(window)
    shown: list[Any] = []
    window.frame_selected.connect(shown.append)
    t0 = time.monotonic()
    window.controls.start()
    qtbot.waitUntil(lambda: len(results) >= 60, timeout=30_000)
    elapsed = time.monotonic() - t0
    window.controls.stop()
    qtbot.waitUntil(lambda: not window.session.running, timeout=10_000)
    # 33 ms throttle: at most ~30 draws a second (+ leading and trailing calls), never one per frame
    assert len(shown) <= elapsed * 31 + 3
    assert len(shown) < len(results)


def test_overlay_boxes_and_labels(qtbot: Any, make_main_window: Any) -> None:
    window = make_main_window()
    ng = _step_until_ng(qtbot, window)
    panel = window.live_panel
    assert panel.mask_item.image is not None and panel.mask_item.image.max() == 255
    labels = [lab for lab in panel._labels if lab.isVisible()]
    assert len(labels) == len(ng.inspection.defects) >= 1
    text = labels[0].textItem.toPlainText()
    assert "px" in text and "mm²" in text and "p=0." in text  # area px + mm², max probability
    xs, _ys = panel.box_item.getData()
    assert len(xs) == 5 * len(ng.inspection.defects)
    panel.opacity.setValue(20)
    assert panel.mask_opacity() == pytest.approx(0.2)
    panel.colour.setCurrentText("yellow")
    assert tuple(panel.mask_item.lut[1][:3]) == (255, 235, 0)
    panel.show_mask.setChecked(False)
    assert not panel.mask_item.isVisible()


def test_image_is_drawn_without_auto_levels(qtbot: Any, make_main_window: Any) -> None:
    window = make_main_window()
    _step_until_ng(qtbot, window)
    levels = window.live_panel.image_item.getLevels()
    assert np.allclose(levels, (0, 255))  # fixed by dtype, not scanned from the frame


def test_filmstrip_click_opens_the_frame(qtbot: Any, make_main_window: Any) -> None:
    window = make_main_window()
    ng = _step_until_ng(qtbot, window)
    strip = window.filmstrip
    strip._refresh_throttled.flush()
    qtbot.waitUntil(lambda: strip.list.count() >= 1, timeout=5_000)
    _step(qtbot, window)  # a newer frame is on screen now
    assert window.current_result().frame.frame_id != ng.frame.frame_id
    item = strip.list.item(0)
    with qtbot.waitSignal(window.frame_selected, timeout=2_000) as sel:
        strip.list.itemClicked.emit(item)
    assert sel.args[0].frame.frame_id == ng.frame.frame_id
    assert window.current_result().frame.frame_id == ng.frame.frame_id
    assert not window.live and window.live_panel.live_button.isVisible()
    window.live_panel.live_button.click()
    assert window.live


def _step(qtbot: Any, window: Any) -> Any:
    with qtbot.waitSignal(window.controls.stepped, timeout=10_000) as blocker:
        window.controls.step_button.click()
    qtbot.waitUntil(lambda: window.controls.step_button.isEnabled(), timeout=5_000)
    return blocker.args[0]


def _step_until_ng(qtbot: Any, window: Any, tries: int = 6) -> Any:
    for _ in range(tries):
        result = _step(qtbot, window)
        if result.inspection.verdict == "NG":
            assert window.current_result() is result
            assert window.view.why == "stepped"  # a step is reviewed, not live
            assert " NG " in f" {window.live_panel.caption.text()} "
            return result
    raise AssertionError("no NG frame in the test folder")


def test_open_recipe_replaces_the_session(
    qtbot: Any, recipe: Any, settings: Any, tmp_path: Any
) -> None:
    from app.station.recipe import save_recipe
    from app.station.session import InspectionSession
    from app.ui.app import Station

    first = save_recipe(recipe, tmp_path / "first.toml")
    second = save_recipe(replace(recipe, name="second"), tmp_path / "second.toml")
    station = Station(InspectionSession(first, recipe_path=first.path, settings=settings), settings)
    # not given to qtbot: the Station closes and deletes the first window itself
    old_session, old_window = station.session, station.window
    station.window.lock.unlock(settings.engineer_pin)
    station.window.recipe_open_requested.emit(second.path)
    qtbot.waitUntil(lambda: station.session is not old_session, timeout=20_000)
    qtbot.addWidget(station.window)
    assert station.session.recipe.name == "second"
    assert station.window.session is station.session
    assert not station.window.locked  # the engineer who opened it stays in engineer mode
    result = _step(qtbot, station.window)
    assert result.inspection.model_id == "tiny-sigmoid"
    assert station.window is not old_window
    station.close()
    qtbot.waitUntil(lambda: old_session._closed, timeout=10_000)


@pytest.mark.camera
def test_genicam_device_list_and_camera_box(qtbot: Any, make_main_window: Any) -> None:
    """The Viky GenTL simulator from the genicam wheel: listing off the GUI thread, open, step."""
    pytest.importorskip("harvesters")
    window = make_main_window(unlocked=True)
    controls = window.controls
    assert not controls.camera.isEnabled()  # an image folder has no exposure / gain / trigger
    assert "GenICam" in controls.camera.toolTip()
    controls.kind.setCurrentIndex(1)
    controls.refresh_button.click()
    qtbot.waitUntil(lambda: controls.devices.count() > 0, timeout=20_000)
    assert controls.devices.currentData().startswith("genicam:")
    with qtbot.waitSignal(controls.source_opened, timeout=20_000) as opened:
        controls.open_device_button.click()
    qtbot.waitUntil(lambda: not controls.busy(), timeout=10_000)
    assert window.session.source_spec == opened.args[0]
    assert controls.camera.isEnabled()
    # Viky has no exposure, gain or trigger node: each control is greyed out and says why.
    assert set(window.session.missing_controls) == {"exposure_us", "gain_db", "trigger"}
    for widget in (controls.camera.exposure, controls.camera.gain, controls.camera.trigger):
        assert not widget.isEnabled() and "node" in widget.toolTip()
    assert not controls.camera.apply_button.isEnabled()
    result = _step(qtbot, window)
    assert result.frame.source.startswith("genicam:")


def test_counters_latency_and_alarm_banner(qtbot: Any) -> None:
    from app.station.stats import SessionStats
    from app.ui.verdict import VerdictPanel

    panel = VerdictPanel()
    qtbot.addWidget(panel)
    panel.show()
    stats = SessionStats(
        judged=200,
        passed=190,
        ng=10,
        yield_pct=95.0,
        fps=31.5,
        latency_ms={"total": 9.0, "infer": 6.0, "acquire": 1.0},
        dropped=7,
        skipped=2,
        alarm="line too fast: triggered queue full",
    )
    panel.show_stats(stats)
    values = panel._values
    assert values["yield"].text() == "95.0 %"
    assert values["fps"].text() == "31.5 fps"
    assert values["latency"].text() == "acquire 1.0  infer 6.0  total 9.0 ms"  # pipeline order
    assert values["dropped"].text() == "7"
    assert "skipped 2" in panel.detail.text()
    assert panel.alarm.isVisible() and "line too fast" in panel.alarm.text()
    panel.show_stats(replace(stats, alarm=None))
    assert not panel.alarm.isVisible()

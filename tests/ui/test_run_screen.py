"""The operator's Run screen: never a stale verdict, NG held, REVIEW never taken for live, keys."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import pytest

from app.station.frame import Frame
from app.station.inspection import FrameResult, Inspection, Rules

pytestmark = pytest.mark.gui


def _start(qtbot: Any, window: Any) -> None:
    with qtbot.waitSignal(
        window.bridge.line_state, timeout=10_000, check_params_cb=lambda s: s == "running"
    ):
        window.start_action.trigger()


def _stop(qtbot: Any, window: Any) -> None:
    with qtbot.waitSignal(
        window.bridge.line_state, timeout=10_000, check_params_cb=lambda s: s != "running"
    ):
        window.stop_action.trigger()
    qtbot.waitUntil(lambda: not window.controls.busy(), timeout=10_000)


def _banner(window: Any) -> Any:
    return window.verdict_panel.banner


def test_stop_shows_stopped_never_the_last_verdict(qtbot: Any, make_main_window: Any) -> None:
    window = make_main_window()
    assert _banner(window).kind == "STOPPED"  # before anything ran: not a blank, not a PASS
    _start(qtbot, window)
    qtbot.waitUntil(lambda: _banner(window).kind in ("PASS", "NG"), timeout=15_000)
    assert window.live_panel.view_kind == "live" and "LIVE" in window.windowTitle()
    _stop(qtbot, window)
    qtbot.waitUntil(lambda: _banner(window).kind == "STOPPED", timeout=5_000)
    assert window.verdict_panel.verdict.text() == "STOPPED — NOT INSPECTING"
    assert window.live_panel.view_kind == "stopped"
    assert "STOPPED" in window.windowTitle() and "STOPPED" in window.status_view.text()
    window.live_action.trigger()  # "back to live" with nothing running is still STOPPED
    assert window.live_panel.view_kind == "stopped"
    assert "LIVE" not in window.live_panel.view_header.text()


def test_review_is_framed_and_never_takes_the_live_banner(
    qtbot: Any, make_main_window: Any
) -> None:
    window = make_main_window()
    _start(qtbot, window)
    qtbot.waitUntil(lambda: len(window.session.history()) >= 3, timeout=15_000)
    old = window.session.history()[0]
    window.show_frame(old)  # e.g. reopened from the history
    assert not window.live and window.view.why == "archived"
    assert window.current_result().frame.frame_id == old.frame.frame_id
    header = window.live_panel.view_header.text()
    assert header.startswith("REVIEW") and str(old.inspection.frame_id) in header
    assert window.live_panel.view_kind == "review" and window.live_panel.live_button.isVisible()
    assert "REVIEW" in window.windowTitle() and "REVIEW" in window.status_view.text()
    # the line runs on: the banner follows newer live frames, the picture stays on the review
    qtbot.waitUntil(
        lambda: (_banner(window).frame_id or -1) > old.inspection.frame_id, timeout=10_000
    )
    assert window.current_result().frame.frame_id == old.frame.frame_id
    window.live_action.trigger()  # Esc
    assert window.live and window.live_panel.view_kind == "live"
    _stop(qtbot, window)


def test_start_returns_to_live_and_a_step_is_review(qtbot: Any, make_main_window: Any) -> None:
    window = make_main_window()
    with qtbot.waitSignal(window.controls.stepped, timeout=10_000):
        window.step_action.trigger()
    assert window.view.why == "stepped" and window.live_panel.view_kind == "review"
    qtbot.waitUntil(
        lambda: window.step_action.isEnabled() or window.controls.step_button.isEnabled(),
        timeout=5_000,
    )
    _start(qtbot, window)
    assert window.live
    qtbot.waitUntil(lambda: window.live_panel.view_kind == "live", timeout=5_000)
    _stop(qtbot, window)


def _inspection(frame_id: int, verdict: str, reasons: tuple[str, ...] = ()) -> Inspection:
    return Inspection(
        frame_id=frame_id, source="t", timestamp=0.0, verdict=verdict,  # type: ignore[arg-type]
        reasons=reasons, defects=(), rules=Rules(), model_id="m",
    )  # fmt: skip


def test_ng_is_held_until_acknowledged(qtbot: Any) -> None:
    from PySide6.QtWidgets import QWidget

    from app.ui.run_screen import RunScreen

    screen = RunScreen(QWidget(), hold_s=60.0)  # a bare row instead of Start / Stop / Step
    qtbot.addWidget(screen)
    screen.show()
    screen.set_line("running")
    assert not screen.ack_button.isEnabled()
    screen.offer(_inspection(7, "NG", ("2 defects > max 0",)))
    screen.offer(_inspection(8, "PASS"))
    assert screen.verdict_panel.verdict.text() == "NG (held)"
    assert "frame 7" in screen.verdict_panel.reasons.text()
    assert screen.ack_button.isEnabled()
    screen.ack_button.click()
    assert screen.verdict_panel.verdict.text() == "PASS"
    assert not screen.ack_button.isEnabled()


def test_ng_hold_time_comes_from_the_recipe(qtbot: Any, make_main_window: Any) -> None:
    window = make_main_window(ng_hold_s=0.3)
    run = window.run_screen
    run.set_line("running")
    run.offer(_inspection(1, "NG"))
    run.offer(_inspection(2, "PASS"))
    assert window.verdict_panel.verdict.text() == "NG (held)"
    t0 = time.monotonic()
    qtbot.waitUntil(lambda: window.verdict_panel.verdict.text() == "PASS", timeout=3_000)
    assert 0.2 < time.monotonic() - t0 < 2.0


def test_counters_are_big_enough_to_read_from_two_metres(qtbot: Any, make_main_window: Any) -> None:
    from app.station.stats import SessionStats

    window = make_main_window()
    panel = window.verdict_panel
    panel.show_stats(
        SessionStats(judged=10, passed=7, ng=2, errors=1, yield_pct=70.0, fps=9.5, dropped=3)
    )
    values = panel._values
    assert [values[k].text() for k in ("passed", "ng", "errors", "yield", "fps", "dropped")] == [
        "7", "2", "1", "70.0 %", "9.5 fps", "3",
    ]  # fmt: skip
    for key in ("passed", "ng", "errors", "yield", "fps", "dropped"):
        assert values[key].font().pointSize() >= 24, key
    assert panel.verdict.font().pointSize() >= 22
    strip = window.strip
    assert "ui-test" in strip.recipe.text() and "tiny-sigmoid" in strip.model.text()
    assert "folder:" in strip.source.text() and strip.state.text().strip() == "STOPPED"


def test_a_run_of_only_error_frames_shows_zero_yield(qtbot: Any, make_main_window: Any) -> None:
    from app.station.stats import SessionStats

    panel = make_main_window().verdict_panel
    panel.show_stats(SessionStats(judged=0, passed=0, ng=0, errors=8, acquired=8, yield_pct=0.0))
    assert panel._values["yield"].text() == "0.0 %"  # not "—": nothing inspected passed
    panel.show_stats(SessionStats())
    assert panel._values["yield"].text() == "—"


def test_unreadable_frame_shows_its_reason(qtbot: Any, make_main_window: Any) -> None:
    window = make_main_window()
    frame = Frame.unreadable(3, 0.0, "folder:x", "cannot decode bad.png", {"file": "bad.png"})
    insp = dataclasses.replace(
        _inspection(3, "ERROR", ("cannot decode bad.png",)), error="cannot decode bad.png"
    )
    window.show_frame(FrameResult(frame, None, insp))
    assert "cannot decode bad.png" in window.live_panel.caption.text()
    assert window.live_panel.view_kind == "review"


def test_keys_are_in_the_menus(qtbot: Any, make_main_window: Any) -> None:
    from PySide6.QtGui import QKeySequence

    window = make_main_window()
    want = {
        "start_action": {"F5", "Space"},
        "stop_action": {"F5", "Space"},
        "step_action": {"F10"},
        "live_action": {"Esc"},
        "save_recipe_action": {"Ctrl+S"},
        "quit_action": {"Ctrl+Q"},
    }
    menu_actions = {a for m in window.menuBar().actions() for a in m.menu().actions()}
    for name, keys in want.items():
        action = getattr(window, name)
        got = {s.toString(QKeySequence.SequenceFormat.PortableText) for s in action.shortcuts()}
        assert keys <= got, (name, got)
        assert action in menu_actions, name
    # Space belongs to the focused control outside the Run screen
    window.lock.unlock("1234")
    window.show_workspace("rules")
    assert "Space" not in {s.toString() for s in window.start_action.shortcuts()}
    window.show_workspace("run")
    assert "Space" in {s.toString() for s in window.start_action.shortcuts()}


def test_f5_starts_and_stops(qtbot: Any, make_main_window: Any) -> None:
    from PySide6.QtCore import Qt

    window = make_main_window()
    window.activateWindow()
    qtbot.waitUntil(lambda: window.isActiveWindow(), timeout=2_000)
    with qtbot.waitSignal(
        window.bridge.line_state, timeout=10_000, check_params_cb=lambda s: s == "running"
    ):
        qtbot.keyClick(window, Qt.Key.Key_F5)
    qtbot.waitUntil(lambda: window.stop_action.isEnabled(), timeout=5_000)
    with qtbot.waitSignal(
        window.bridge.line_state, timeout=10_000, check_params_cb=lambda s: s != "running"
    ):
        qtbot.keyClick(window, Qt.Key.Key_Space)
    # the Stop worker reports back to the window: let it finish before the window goes
    qtbot.waitUntil(lambda: not window.controls.busy(), timeout=10_000)


def test_close_asks_while_the_line_runs(qtbot: Any, make_main_window: Any) -> None:
    window = make_main_window()
    window.ask_before_close = True  # the factory turns it off for pytest-qt's teardown
    asked: list[bool] = []
    window.confirm_quit = lambda: asked.append(True) or False  # "No"
    window.close()  # stopped: closes without asking
    assert asked == [] and not window.isVisible()
    window.show()
    _start(qtbot, window)
    window.quit_action.trigger()
    assert asked == [True] and window.isVisible() and window.session.running
    window.confirm_quit = lambda: True
    window.close()
    assert not window.isVisible()


def test_events_workspace_and_newest_alarm(qtbot: Any, make_main_window: Any) -> None:
    window = make_main_window()
    session = window.session
    session.log_event("alarm", "camera delivers faster than the station inspects: 36 %")
    session.log_event("frame_error", "cannot decode", frame_id=4, file="bad\udcff.png")
    session.log_event("recipe", "recipe saved (v3)")
    panel = window.events_panel
    qtbot.waitUntil(lambda: panel.table.rowCount() >= 3, timeout=5_000)
    assert panel.table.item(0, 2).text() == "recipe saved (v3)"  # newest first
    assert "cannot decode" in window.run_screen.newest_event.text()
    panel.kind.setCurrentIndex(panel.kind.findData("frame_error"))
    assert panel.table.rowCount() == 1
    assert panel.table.item(0, 3).text() == "4" and "bad" in panel.table.item(0, 4).text()
    assert window.has_tab(panel)  # the operator sees events too (no PIN)


def test_help_keyboard_page_lists_the_keys() -> None:
    from app.ui.help_dialog import keyboard_html

    html = keyboard_html()
    for key in ("F5 / Space", "F10", "Esc", "Ctrl+S", "F9"):
        assert key in html


def test_autostart_shows_the_first_judged_frame_within_5_s(qtbot: Any, settings: Any) -> None:
    """`make run`: the demo recipe starts the line by itself; a judged frame is on screen fast."""
    from app.station.recipe import demo_recipe_path
    from app.ui.app import Station, build_session

    t0 = time.monotonic()
    session = build_session(demo_recipe_path(), settings)
    assert session.recipe.autostart
    station = Station(session, settings)
    qtbot.addWidget(station.window)
    station.window.show()
    try:
        assert station.autostart()
        qtbot.waitUntil(lambda: station.window.current_result() is not None, timeout=5_000)
        assert time.monotonic() - t0 < 5.0
        assert station.window.live_panel.view_kind == "live"
        assert _banner(station.window).kind in ("PASS", "NG")
    finally:
        station.window.ask_before_close = False
        station.window.close()
        station.close()


def test_a_faulted_line_shows_fault_with_its_reason(
    qtbot: Any, make_main_window: Any, tmp_path: Any
) -> None:
    """A model whose output is NaN: frames end as ERROR, then the line faults; the banner says
    FAULT (never the last PASS) and the events workspace lists the frames not judged."""
    window = make_main_window(model=_nan_on_frames_model(tmp_path), max_model_faults=2)
    window.start_action.trigger()
    qtbot.waitUntil(lambda: _banner(window).kind == "FAULT", timeout=20_000)
    assert _banner(window).reasons and _banner(window).reasons[0]
    assert window.live_panel.view_kind == "stopped"
    assert window.live_panel.view_header.text().startswith("FAULT")
    assert "FAULT" in window.windowTitle()
    kinds = {r.kind for r in window.events_panel.records()}
    assert "fault" in kinds
    assert window.verdict_panel._values["errors"].text() != "0" or "frame_error" in kinds


def _nan_on_frames_model(folder: Any) -> Any:
    """``sqrt(0.1 - x)``: finite on the blank tile of the load-time check, NaN on every test
    frame (background 0.2) — a model that broke after it was loaded, as far as the line sees."""
    import onnx
    from onnx import TensorProto, helper

    from engines.card import ModelCard

    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 32, 32, 1])
    y = helper.make_tensor_value_info("probability", TensorProto.FLOAT, ["N", 32, 32, 1])
    graph = helper.make_graph(
        [helper.make_node("Sub", ["tenth", "image"], ["d"]), helper.make_node("Sqrt", ["d"], ["probability"])],
        "nan-on-frames", [x], [y],
        initializer=[helper.make_tensor("tenth", TensorProto.FLOAT, [], [0.1])],
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    path = folder / "nan.onnx"
    onnx.save(model, str(path))
    ModelCard(name="nan", input_height=32, input_width=32, model_id="nan").save(
        path.with_suffix(".json")
    )
    return path

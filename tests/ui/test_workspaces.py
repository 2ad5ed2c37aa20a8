"""The navigation rail: each workspace gets the main area; the engineer lock gates the rail."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.gui

ENGINEER = ("rules", "zones", "validation", "label", "train", "source")
EVERYONE = ("run", "history", "stats", "events", "integration")


def test_rail_lists_every_workspace_in_order(make_main_window: Any) -> None:
    window = make_main_window(unlocked=True)
    titles = [
        a.text().replace("&&", "&") for a in window.workspaces.rail.actions() if a.isVisible()
    ]
    assert titles[:9] == [
        "Run", "Rules", "Zones", "Validation", "Label", "Train & Deploy", "Source", "History",
        "Stats",
    ]  # fmt: skip
    assert titles[9:] == ["Events", "Integration"]
    assert window.workspaces.current == "run"  # the station opens on the operator's screen


def test_locked_rail_shows_only_the_operator_workspaces(qtbot: Any, make_main_window: Any) -> None:
    window = make_main_window(unlocked=True)
    window.show_workspace("train")
    window.lock.lock()
    ws = window.workspaces
    assert ws.current == "run"  # the open engineering workspace closed with the lock
    for key in ENGINEER:
        assert not ws.available(key) and not ws.get(key).action.isVisible()
        assert not window.show_workspace(key)
    for key in EVERYONE:
        assert ws.available(key) and window.show_workspace(key)
    assert window.workspaces.rail.toggleViewAction().isEnabled() is False


def test_picking_a_workspace_on_the_rail_shows_its_panel(qtbot: Any, make_main_window: Any) -> None:
    window = make_main_window(unlocked=True)
    ws = window.workspaces
    ws.get("label").action.trigger()
    assert ws.current == "label" and window.label_panel.isVisible()
    assert not window.run_screen.isVisible() and not window.filmstrip.isVisible()
    window.run_screen_action.trigger()
    assert ws.current == "run" and window.run_screen.isVisible() and window.filmstrip.isVisible()
    # the view header (LIVE / REVIEW / STOPPED) stays beside every workspace
    for key in ws.keys():
        window.show_workspace(key)
        assert window.live_panel.view_header.isVisible(), key


def test_history_holds_the_audit_trail_and_run_screen_the_plc_lamp(make_main_window: Any) -> None:
    window = make_main_window()
    window.show_workspace("history")
    assert window.history_panel.isVisible()
    assert window.audit_panel is not None and window.has_tab(window.audit_panel)
    assert window.plc_lamp.text() == "● no PLC"  # the test recipe has no [outputs]
    window.show_workspace("integration")
    assert window.integration_panel.isVisible()


def test_open_recent_lists_the_recipes_opened_here(make_main_window: Any, tmp_path: Any) -> None:
    window = make_main_window(unlocked=True)
    other = tmp_path / "other.toml"
    other.write_text('name = "x"\nmodel = "m.onnx"\n')
    window.recent.add(other)
    window._fill_recent_menu()
    actions = window.recent_menu.actions()
    assert [a.text() for a in actions][:1] == ["other.toml"]  # newest first
    assert window.session.recipe_path is not None
    assert window.session.recipe_path.name in [a.text() for a in actions]
    got: list[Any] = []
    window.recipe_open_requested.connect(got.append)
    actions[0].trigger()
    assert got == [other]


def test_logins_failed_pins_and_logouts_go_to_the_audit_trail(make_main_window: Any) -> None:
    window = make_main_window()
    assert not window.lock.unlock("0000")  # wrong PIN
    assert window.lock.unlock("1234")
    assert window.session.actor == ("engineer", None)
    window.lock.lock()
    assert window.session.actor == ("operator", None)
    audit = window.session.audit
    assert audit is not None
    rows = audit.rows(limit=20)
    actions = [r.action for r in sorted(rows, key=lambda r: r.id)]
    assert actions[-3:] == ["login.failed", "login", "logout"]
    assert audit.verify().ok

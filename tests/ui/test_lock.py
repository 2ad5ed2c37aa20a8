"""Engineer lock: operators see the live view only; the right PIN unlocks editing, a wrong one not."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.station.access import hash_pin
from app.station.settings import Settings, load_settings
from app.ui.lock import EngineerLock, PinDialog

pytestmark = pytest.mark.gui


def _editing_widgets(window: Any) -> list[Any]:
    return [
        window.rules_panel,
        window.zone_editor,
        window.validation_panel,
        window.label_panel,
        window.train_panel,
    ]


def _assert_locked(window: Any) -> None:
    assert window.locked
    for widget in _editing_widgets(window):
        assert not window.has_tab(widget)
        assert not widget.isVisible()
    assert not window.save_recipe_action.isEnabled()
    assert not window.open_recipe_action.isEnabled()
    assert not window.controls.recipe_button.isEnabled()
    assert not window.controls.kind.isEnabled()
    assert not window.controls.camera.isEnabled()
    # the operator keeps the live view and start / stop
    assert window.live_panel.isVisible() and window.verdict_panel.isVisible()
    assert window.controls.start_button.isEnabled()


def test_starts_locked_and_hides_editing(make_main_window: Any) -> None:
    window = make_main_window()
    _assert_locked(window)
    assert window.has_tab(window.history_panel)  # read-only views stay


def test_wrong_pin_keeps_it_locked(qtbot: Any, make_main_window: Any) -> None:
    window = make_main_window()
    dialog = PinDialog(window.lock, window)
    qtbot.addWidget(dialog)
    dialog.pin_edit.setText("not-the-pin")
    dialog.try_pin()
    assert "Wrong PIN" in dialog.message.text()
    assert dialog.result() != PinDialog.DialogCode.Accepted
    _assert_locked(window)


def test_right_pin_unlocks_and_lock_hides_again(
    qtbot: Any, make_main_window: Any, settings: Any
) -> None:
    window = make_main_window()
    dialog = PinDialog(window.lock, window)
    qtbot.addWidget(dialog)
    dialog.pin_edit.setText(settings.engineer_pin)
    with qtbot.waitSignal(window.locked_changed, timeout=1_000) as blocker:
        dialog.try_pin()
    assert blocker.args == [False]
    assert dialog.result() == PinDialog.DialogCode.Accepted
    assert not window.locked
    for widget in _editing_widgets(window):
        assert window.has_tab(widget)
    window.show_tab(window.rules_panel)
    assert window.rules_panel.isVisible()
    assert window.save_recipe_action.isEnabled()
    assert window.controls.recipe_button.isEnabled()

    with qtbot.waitSignal(window.locked_changed, timeout=1_000) as blocker:
        window.lock_action.trigger()
    assert blocker.args == [True]
    _assert_locked(window)


def test_lock_model() -> None:
    lock = EngineerLock(hash_pin("4711"))
    assert lock.locked
    assert not lock.unlock("4712") and lock.locked
    assert not lock.unlock("") and lock.locked
    assert lock.unlock("4711") and not lock.locked
    lock.lock()
    assert lock.locked


def test_repeated_wrong_pins_make_the_dialog_wait(qtbot: Any) -> None:
    events: list[tuple[str, str]] = []
    lock = EngineerLock(hash_pin("4711"), on_event=lambda k, m: events.append((k, m)))
    dialog = PinDialog(lock)
    qtbot.addWidget(dialog)
    for pin in ("1", "2", "3"):
        dialog.pin_edit.setText(pin)
        dialog.try_pin()
    assert "try again in 2 s" in dialog.message.text()
    dialog.pin_edit.setText("4711")  # right, but inside the wait
    dialog.try_pin()
    assert lock.locked and "Too many wrong PINs" in dialog.message.text()
    assert [k for k, _ in events] == ["alarm"] * 3


def test_first_login_sets_the_pin(qtbot: Any, tmp_path: Path) -> None:
    path = tmp_path / "conf" / "settings.toml"
    settings = replace(Settings.defaults(tmp_path / "data"), path=path)
    lock = EngineerLock(settings)
    assert lock.locked and not lock.has_pin
    assert not lock.unlock("") and not lock.unlock("1234")  # no default PIN in force
    dialog = PinDialog(lock)
    qtbot.addWidget(dialog)
    assert dialog.setting_pin and not dialog.repeat_edit.isHidden()
    dialog.pin_edit.setText("2468")
    dialog.repeat_edit.setText("2469")
    dialog.try_pin()
    assert "differ" in dialog.message.text() and not lock.has_pin and lock.locked
    dialog.pin_edit.setText("12")
    dialog.repeat_edit.setText("12")
    dialog.try_pin()
    assert "at least 4" in dialog.message.text() and not lock.has_pin
    dialog.pin_edit.setText("2468")
    dialog.repeat_edit.setText("2468")
    with qtbot.waitSignal(lock.locked_changed, timeout=1_000):
        dialog.try_pin()
    assert dialog.result() == PinDialog.DialogCode.Accepted and not lock.locked
    assert "2468" not in path.read_text()
    # the next start reads the hash: the same PIN unlocks, another does not
    again = EngineerLock(load_settings(path, environ={}))
    assert again.has_pin and not again.unlock("1234") and again.unlock("2468")


def test_unlocked_state_carries_over_to_a_new_window_lock() -> None:
    old, new = EngineerLock(hash_pin("4711")), EngineerLock(hash_pin("4711"))
    new.grant(old)
    assert new.locked  # the old one was locked: nothing to carry
    assert old.unlock("4711")
    new.grant(old)
    assert not new.locked
    tool = EngineerLock(hash_pin("4711"))
    tool.unlock_trusted("screenshot")
    assert not tool.locked

"""Engineer lock: operators see the live view only; the right PIN unlocks editing, a wrong one not."""

from __future__ import annotations

from typing import Any

import pytest

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
    lock = EngineerLock("4711")
    assert lock.locked
    assert not lock.unlock("4712") and lock.locked
    assert not lock.unlock("") and lock.locked
    assert lock.unlock("4711") and not lock.locked
    lock.lock()
    assert lock.locked

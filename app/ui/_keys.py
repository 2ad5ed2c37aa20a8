"""The station's keyboard shortcuts: one table, read by the menus and by Help → Keyboard."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Key:
    name: str  # the action's attribute on MainWindow
    keys: tuple[str, ...]  # QKeySequence strings; the first is the one shown in the menu
    what: str


KEYS: tuple[Key, ...] = (
    Key("start_action", ("F5", "Space"), "Start the line (when stopped)"),
    Key("stop_action", ("F5", "Space"), "Stop the line (when running)"),
    Key("step_action", ("F10",), "Single step: inspect one frame while stopped"),
    Key(
        "pause_action", ("F6",), "Freeze the view on the frame on screen (REVIEW); the line runs on"
    ),
    Key("live_action", ("Esc",), "Back to live: leave the frame under review"),
    Key("ack_action", ("F9",), "Acknowledge the NG / ERROR verdict held on the Run screen"),
    Key("save_recipe_action", ("Ctrl+S",), "Save the recipe (engineer)"),
    Key("run_screen_action", ("F2",), "Show the Run screen"),
    Key("help_keys_action", ("F1",), "This page"),
    Key("quit_action", ("Ctrl+Q",), "Quit (asks first while the line runs)"),
)

BY_NAME = {k.name: k for k in KEYS}

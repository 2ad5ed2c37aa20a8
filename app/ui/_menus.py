"""The station window's menu bar: File (recipes, recent recipes), Station, Workspace,
Engineer, Help — every entry with its key from :mod:`app.ui._keys` and a tooltip.

A mixin of :class:`app.ui.main_window.MainWindow`, kept apart so the window module holds the
layout and the wiring; the menus only call what the window's panels already offer.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, SignalInstance
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu, QMenuBar, QWidget

from app.station.recent_recipes import RecentRecipes
from app.station.view_state import ViewState
from app.ui._keys import BY_NAME
from app.ui.help_dialog import KeyboardHelp

if TYPE_CHECKING:
    from app.ui.controls import ControlsPanel
    from app.ui.lock import EngineerLock
    from app.ui.run_screen import RunScreen
    from app.ui.workspaces import Workspaces


class WindowMenus:
    """``_build_menus`` and the recent-recipes menu for the main window."""

    # Made by _action() with setattr, one per menu entry; declared for the type checker.
    open_recipe_action: QAction
    save_recipe_action: QAction
    revert_recipe_action: QAction
    quit_action: QAction
    start_action: QAction
    stop_action: QAction
    step_action: QAction
    pause_action: QAction
    live_action: QAction
    ack_action: QAction
    help_keys_action: QAction

    recent: RecentRecipes
    recent_menu: QMenu
    run_screen_action: QAction
    unlock_action: QAction
    lock_action: QAction
    _engineer_actions: tuple[QAction, ...]
    controls: ControlsPanel
    rules_panel: QWidget
    view: ViewState
    run_screen: RunScreen
    workspaces: Workspaces
    lock: EngineerLock
    recipe_open_requested: SignalInstance

    if TYPE_CHECKING:  # provided by the QMainWindow / the window

        def menuBar(self) -> QMenuBar: ...  # noqa: N802 (Qt name)
        def close(self) -> bool: ...
        def start(self) -> None: ...
        def resume_live(self) -> None: ...
        def ask_unlock(self) -> bool: ...

    def _action(self, menu: QMenu, name: str, text: str) -> QAction:
        action = QAction(text, menu)
        key = BY_NAME.get(name)
        if key is not None:
            action.setShortcuts([QKeySequence(k) for k in key.keys])
            action.setToolTip(key.what)
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        menu.addAction(action)
        setattr(self, name, action)
        return action

    def _fill_recent_menu(self) -> None:
        self.recent_menu.clear()
        paths = self.recent.paths()
        for path in paths:
            action = self.recent_menu.addAction(path.name)
            action.setToolTip(str(path))
            action.triggered.connect(lambda _=False, p=path: self.recipe_open_requested.emit(p))
        self.recent_menu.setEnabled(bool(paths))

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self._action(file_menu, "open_recipe_action", "Open recipe…").triggered.connect(
            self.controls.recipe_button.click
        )
        # Recent recipes: read when the menu opens, so a recipe opened or saved a moment ago
        # is there (a Qt-free list in the data folder, app/station/recent_recipes.py).
        self.recent_menu = file_menu.addMenu("Open recent")
        self.recent_menu.setToolTip("Recipes opened or saved here lately, newest first")
        self.recent_menu.aboutToShow.connect(self._fill_recent_menu)
        self._fill_recent_menu()
        self._action(file_menu, "save_recipe_action", "Save recipe").triggered.connect(
            self.rules_panel.save  # type: ignore[attr-defined]  # a RulesPanel, typed QWidget
        )
        self._action(file_menu, "revert_recipe_action", "Revert recipe").triggered.connect(
            self.rules_panel.revert  # type: ignore[attr-defined]  # a RulesPanel, typed QWidget
        )
        file_menu.addSeparator()
        self._action(file_menu, "quit_action", "Quit").triggered.connect(self.close)

        station = bar.addMenu("&Station")
        self._action(station, "start_action", "Start").triggered.connect(self.start)
        self._action(station, "stop_action", "Stop").triggered.connect(self.controls.stop)
        self._action(station, "step_action", "Single step").triggered.connect(self.controls.step)
        station.addSeparator()
        self._action(station, "pause_action", "Freeze view (review this frame)").triggered.connect(
            self.view.pause
        )
        self._action(station, "live_action", "Back to live").triggered.connect(self.resume_live)
        self._action(station, "ack_action", "Acknowledge NG").triggered.connect(
            self.run_screen.acknowledge
        )

        view = bar.addMenu("&Workspace")
        for key in self.workspaces.keys():
            view.addAction(self.workspaces.get(key).action)
        self.run_screen_action = self.workspaces.get("run").action
        self.run_screen_action.setShortcut(QKeySequence(BY_NAME["run_screen_action"].keys[0]))

        engineer = bar.addMenu("&Engineer")
        self.unlock_action = engineer.addAction("Unlock…")
        self.unlock_action.triggered.connect(self.ask_unlock)
        self.lock_action = engineer.addAction("Lock")
        self.lock_action.triggered.connect(self.lock.lock)

        help_menu = bar.addMenu("&Help")
        self._action(help_menu, "help_keys_action", "Keyboard").triggered.connect(
            lambda: KeyboardHelp(self.menuBar().window()).exec()
        )
        self._engineer_actions = (
            self.open_recipe_action,
            self.save_recipe_action,
            self.revert_recipe_action,
        )

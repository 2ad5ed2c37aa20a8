"""The station window: assembles the panels, owns the "frame on screen" and the engineer lock.

No panel talks to another directly; the window wires them. It holds one piece of state of its
own: which result is on screen (the newest, while live; a chosen one, while paused).
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QByteArray, QCoreApplication, QSettings, Qt, Signal
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QFrame,
    QLabel,
    QMainWindow,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import qthrottled

from app.station.inspection import FrameResult, Rules
from app.station.session import InspectionSession
from app.station.settings import Settings
from app.station.stats import SessionStats
from app.ui.bridge import SessionBridge
from app.ui.controls import ControlsPanel
from app.ui.filmstrip import Filmstrip
from app.ui.history_panel import HistoryPanel
from app.ui.label_panel import LabelPanel
from app.ui.live_panel import LivePanel
from app.ui.lock import EngineerLock, PinDialog
from app.ui.rules_panel import RulesApplier, RulesPanel
from app.ui.stats_panel import StatsPanel
from app.ui.train_panel import TrainPanel
from app.ui.validation_panel import ValidationPanel
from app.ui.verdict import VerdictPanel
from app.ui.zone_editor import ZoneEditor

log = logging.getLogger(__name__)

DISPLAY_INTERVAL_MS = 33  # ~30 Hz: faster than that nobody sees it, and it costs the GUI thread


class MainWindow(QMainWindow):
    frame_selected = Signal(object)  # FrameResult now on screen
    locked_changed = Signal(bool)
    recipe_open_requested = Signal(Path)

    def __init__(
        self,
        session: InspectionSession,
        bridge: SessionBridge,
        settings: Settings,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.session = session
        self.bridge = bridge
        self.settings = settings
        self._current: FrameResult | None = None
        self._live = True
        self.setWindowTitle("Inspection station")

        self.lock = EngineerLock(settings.engineer_pin, self)
        self.live_panel = LivePanel(self)
        self.verdict_panel = VerdictPanel(self)
        self.filmstrip = Filmstrip(parent=self)
        self.controls = ControlsPanel(session, bridge, self)
        self.rules = RulesApplier(session, self)
        self.rules_panel = RulesPanel(session, bridge, self.rules, self)
        self.zone_editor = ZoneEditor(session, bridge, self.live_panel, self.rules, self)
        self.validation_panel = ValidationPanel(session, bridge, self)
        self.label_panel = LabelPanel(session, bridge, self)
        self.train_panel = TrainPanel(session, bridge, self)
        self.history_panel = HistoryPanel(session, bridge, self)
        self.stats_panel = StatsPanel(session, bridge, self)
        self.tabs = QTabWidget(self)
        # (panel, its page in the tabs, tab title, engineer only) in tab order
        self._tabs: list[tuple[QWidget, QScrollArea, str, bool]] = [
            (panel, self._page(panel), title, engineer_only)
            for panel, title, engineer_only in (
                (self.rules_panel, "Rules", True),
                (self.zone_editor, "Zones", True),
                (self.validation_panel, "Validation", True),
                (self.label_panel, "Label", True),
                (self.train_panel, "Train", True),
                (self.history_panel, "History", False),
                (self.stats_panel, "Stats", False),
            )
        ]
        self._build_layout()
        self._build_menus()
        self.lock_label = QLabel(self)
        self.statusBar().addPermanentWidget(self.lock_label)

        self._draw_live = qthrottled(self._show_live, timeout=DISPLAY_INTERVAL_MS, parent=self)
        bridge.result.connect(self._on_result)
        bridge.rejudged.connect(self._on_rejudged)
        bridge.stats.connect(self._on_stats)
        bridge.alarm.connect(self.verdict_panel.show_alarm)
        bridge.error.connect(self.notify_error)
        bridge.state.connect(self._on_state)
        self.live_panel.resume_requested.connect(self.resume_live)
        self.filmstrip.frame_clicked.connect(self.show_frame)
        self.controls.stepped.connect(self._on_stepped)
        self.controls.error.connect(self.notify_error)
        self.controls.recipe_open_requested.connect(self.recipe_open_requested)
        self.rules.changed.connect(self._on_rules_changed)
        self.rules.error.connect(self.notify_error)
        self.rules_panel.error.connect(self.notify_error)
        self.validation_panel.error.connect(self.notify_error)
        self.lock.locked_changed.connect(self._apply_lock)
        self.lock.locked_changed.connect(self.locked_changed)
        self._apply_lock(self.lock.locked)
        self.live_panel.show_rules(session.rules)
        self.validation_panel.set_rules(session.rules)
        self.verdict_panel.show_stats(session.stats())
        latest = session.latest()
        if latest is not None:
            self._set_current(latest)
        self._restore_geometry()

    # --- layout --------------------------------------------------------------------------------------
    def _page(self, panel: QWidget) -> QScrollArea:
        """A tab page that scrolls: a wide panel must not squeeze the operator's live image."""
        page = QScrollArea(self)
        page.setWidgetResizable(True)
        page.setFrameShape(QFrame.Shape.NoFrame)
        page.setWidget(panel)
        return page

    def has_tab(self, panel: QWidget) -> bool:
        """True when ``panel`` is in the tabs now (engineer panels leave them when locked)."""
        return any(p is panel and self.tabs.indexOf(page) >= 0 for p, page, _, _ in self._tabs)

    def show_tab(self, panel: QWidget) -> None:
        for p, page, _, _ in self._tabs:
            if p is panel and self.tabs.indexOf(page) >= 0:
                self.tabs.setCurrentWidget(page)

    def _build_layout(self) -> None:
        left = QSplitter(Qt.Orientation.Vertical, self)
        left.addWidget(self.live_panel)
        left.addWidget(self.filmstrip)
        left.setStretchFactor(0, 1)
        left.setCollapsible(0, False)
        right = QWidget(self)
        column = QVBoxLayout(right)
        column.setContentsMargins(4, 0, 0, 0)
        column.addWidget(self.verdict_panel)
        column.addWidget(self.controls)
        column.addWidget(self.tabs, 1)
        split = QSplitter(Qt.Orientation.Horizontal, self)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(0, 1)
        split.setSizes([1050, 550])
        self.setCentralWidget(split)
        self.resize(1600, 1000)

    def _build_menus(self) -> None:
        bar = self.menuBar()
        file_menu = bar.addMenu("&File")
        self.open_recipe_action = file_menu.addAction("Open recipe…")
        self.open_recipe_action.triggered.connect(self.controls.recipe_button.click)
        self.save_recipe_action = file_menu.addAction("Save recipe")
        self.save_recipe_action.setShortcut(QKeySequence.StandardKey.Save)
        self.save_recipe_action.triggered.connect(self.rules_panel.save)
        self.revert_recipe_action = file_menu.addAction("Revert recipe")
        self.revert_recipe_action.triggered.connect(self.rules_panel.revert)
        file_menu.addSeparator()
        quit_action = file_menu.addAction("Quit")
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)

        station = bar.addMenu("&Station")
        self.start_action = station.addAction("Start")
        self.start_action.triggered.connect(self.controls.start)
        self.stop_action = station.addAction("Stop")
        self.stop_action.triggered.connect(self.controls.stop)
        self.step_action = station.addAction("Single step")
        self.step_action.triggered.connect(self.controls.step)
        station.addSeparator()
        live = station.addAction("Back to live")
        live.triggered.connect(self.resume_live)

        engineer = bar.addMenu("&Engineer")
        self.unlock_action: QAction = engineer.addAction("Unlock…")
        self.unlock_action.triggered.connect(self.ask_unlock)
        self.lock_action: QAction = engineer.addAction("Lock")
        self.lock_action.triggered.connect(self.lock.lock)
        self._engineer_actions = (
            self.open_recipe_action,
            self.save_recipe_action,
            self.revert_recipe_action,
        )

    # --- the frame on screen -----------------------------------------------------------------------
    def current_result(self) -> FrameResult | None:
        return self._current

    @property
    def live(self) -> bool:
        return self._live

    def show_frame(self, result: FrameResult) -> None:
        """Pause the view (the pipeline keeps running) and show ``result``, judged by the rules
        now in force, so what is on screen always matches the sliders."""
        self._live = False
        self._draw_live.cancel()
        rules = self.rules.rules
        if result.inspection.rules != rules:
            result = self.session.rejudge(result, rules)
        self._set_current(result)

    def resume_live(self) -> None:
        self._live = True
        latest = self.session.latest()
        if latest is not None:
            self._set_current(latest)
        elif self._current is not None:
            self.live_panel.show_result(self._current, live=True)

    def _set_current(self, result: FrameResult) -> None:
        self._current = result
        self.live_panel.show_result(result, live=self._live)
        self.verdict_panel.show_inspection(result.inspection)
        self.frame_selected.emit(result)

    def _on_result(self, result: FrameResult) -> None:
        # every result reaches the filmstrip (it keeps NG ones); drawing is throttled
        self.filmstrip.add_result(result)
        if self._live:
            self._draw_live(result)

    def _show_live(self, result: FrameResult) -> None:
        if self._live:
            if result.inspection.rules != self.rules.rules:
                # judged before the session got the rules now wanted (hand-over in flight)
                result = self.session.rejudge(result, self.rules.rules)
            self._set_current(result)

    def _on_stepped(self, result: FrameResult) -> None:
        self._live = True
        self._show_live(result)

    def _on_rejudged(self, result: FrameResult) -> None:
        # the session's re-judge of its newest result; only take it if nothing newer is wanted
        cur = self._current
        if (
            cur is not None
            and _same_frame(cur, result)
            and result.inspection.rules == self.rules.rules
        ):
            self._set_current(result)

    def _on_rules_changed(self, rules: Rules) -> None:
        cur = self._current
        if cur is not None and cur.inspection.rules != rules:
            # at once, for the frame on screen only: one judge of its kept map, no inference
            self._set_current(self.session.rejudge(cur, rules))
        self.live_panel.show_rules(rules)
        self.validation_panel.set_rules(rules)

    def _on_stats(self, stats: SessionStats) -> None:
        self.verdict_panel.show_stats(stats)

    def _on_state(self, running: bool) -> None:
        self.start_action.setEnabled(not running)
        self.stop_action.setEnabled(running)
        self.step_action.setEnabled(not running)
        self.statusBar().showMessage("Running" if running else "Stopped", 3000)

    def notify_error(self, message: str) -> None:
        """The one place errors from workers and the session are shown (and logged)."""
        log.warning("%s", message)
        self.statusBar().showMessage(f"⚠ {message}", 15_000)

    # --- engineer lock -------------------------------------------------------------------------------
    @property
    def locked(self) -> bool:
        return self.lock.locked

    def ask_unlock(self) -> bool:
        if not self.lock.locked:
            return True
        PinDialog(self.lock, self).exec()
        return not self.lock.locked

    def _apply_lock(self, locked: bool) -> None:
        current = self.tabs.currentWidget()
        while self.tabs.count():
            self.tabs.removeTab(0)
        for _panel, page, title, engineer_only in self._tabs:
            if locked and engineer_only:
                page.hide()  # removed from the tabs; hidden so nothing of it stays on screen
            else:
                self.tabs.addTab(page, title)
        if current is not None and self.tabs.indexOf(current) >= 0:
            self.tabs.setCurrentWidget(current)
        for action in self._engineer_actions:
            action.setEnabled(not locked)
        self.controls.set_editable(not locked)
        self.unlock_action.setEnabled(locked)
        self.lock_action.setEnabled(not locked)
        self.lock_label.setText("operator mode (locked)" if locked else "engineer mode")

    # --- window --------------------------------------------------------------------------------------
    # Geometry goes to QSettings only when the application has named itself (run_gui does):
    # tests and embedding code then leave the user's settings alone.
    def _restore_geometry(self) -> None:
        if QCoreApplication.organizationName():
            geometry = QSettings().value("main_window/geometry")
            if isinstance(geometry, QByteArray):
                self.restoreGeometry(geometry)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt override)
        if QCoreApplication.organizationName():
            QSettings().setValue("main_window/geometry", self.saveGeometry())
        self.validation_panel.shutdown()
        super().closeEvent(event)


def _same_frame(a: FrameResult, b: FrameResult) -> bool:
    return a.frame.frame_id == b.frame.frame_id and a.frame.source == b.frame.source

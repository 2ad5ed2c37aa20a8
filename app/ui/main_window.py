"""The station window: a Run screen for the operator and Setup workspaces beside the image.

The window assembles; it owns no state of its own beyond layout. Which frame is on screen and
whether it is live or under review lives in :class:`~app.station.view_state.ViewState` (Qt-free;
the label panel follows it too), the banner's verdict in the Run screen's ``LineBanner``, the rules
in the rules panel's ``RulesModel``. Every panel is placed in a workspace picked on the left rail.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QByteArray, QCoreApplication, QSettings, Qt, Signal
from PySide6.QtGui import QCloseEvent, QKeySequence, QResizeEvent
from PySide6.QtWidgets import (
    QLabel,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)
from superqt.utils import qthrottled

from app.station.inspection import FrameResult, Rules
from app.station.recent_recipes import RecentRecipes
from app.station.session import InspectionSession
from app.station.settings import Settings
from app.station.stats import SessionStats
from app.station.view_state import ViewState
from app.ui._menus import WindowMenus
from app.ui._status import StatusStrip, view_text
from app.ui.audit_panel import AuditPanel
from app.ui.bridge import SessionBridge
from app.ui.class_legend import ClassCard
from app.ui.controls import ControlsPanel
from app.ui.events_panel import EventsPanel
from app.ui.filmstrip import Filmstrip
from app.ui.integration_panel import IntegrationPanel, PlcIndicator, StatusSource
from app.ui.live_panel import LivePanel
from app.ui.lock import EngineerLock, PinDialog
from app.ui.panels import build_setup_panels, shutdown_setup_panels
from app.ui.run_screen import RunScreen
from app.ui.workspaces import Workspaces

log = logging.getLogger(__name__)

DISPLAY_INTERVAL_MS = 33  # ~30 Hz: faster than that nobody sees it, and it costs the GUI thread

# (key, rail title, engineer only, what it is for) in rail order
SETUP = (
    ("rules", "Rules", True, "thresholds and defect rules, re-judging the frame on screen"),
    ("zones", "Zones", True, "include / exclude / critical zones drawn on the image"),
    ("validation", "Validation", True, "threshold table and PR curve on a validation folder"),
    ("label", "Label", True, "paint a missed defect or mark a false alarm into the dataset"),
    ("train", "Train && Deploy", True, "retrain, compare, deploy or roll back the model"),
    ("source", "Source", True, "image folder, camera or video, camera settings, recipe file"),
    ("history", "History", False, "recent inspections; reopen an archived frame for review"),
    ("stats", "Stats", False, "yield over time, defect Pareto, CSV export"),
    ("events", "Events", False, "errors, alarms, frames not judged, model swaps, recipe saves"),
    (
        "integration",
        "Integration",
        False,
        "the plant outputs (OPC UA, Modbus, MQTT) and their state",
    ),
)


class MainWindow(WindowMenus, QMainWindow):
    frame_selected = Signal(object)  # FrameResult now on screen
    locked_changed = Signal(bool)
    recipe_open_requested = Signal(Path)

    def __init__(
        self,
        session: InspectionSession,
        bridge: SessionBridge,
        settings: Settings,
        parent: QWidget | None = None,
        *,
        outputs: StatusSource | None = None,
    ) -> None:
        """``outputs``: the output hub's ``statuses`` (the Integration page and the PLC lamp);
        None when the station runs no plant outputs."""
        super().__init__(parent)
        self.session = session
        self.bridge = bridge
        self.settings = settings
        self.recent = RecentRecipes(settings.data_dir)
        if session.recipe_path is not None:
            self.recent.add(session.recipe_path)
        self.ask_before_close = True  # False for a window replaced by code (new recipe, tests)
        self.view = ViewState()
        self._line = bridge.line_state_now()
        self._shown: FrameResult | None = None

        self.lock = EngineerLock(settings, self, on_event=self._lock_event)
        self.live_panel = LivePanel(self)
        self.filmstrip = Filmstrip(parent=self)
        self.controls = ControlsPanel(session, bridge, self)
        self.run_screen = RunScreen(
            self.controls.run_buttons, hold_s=session.recipe.ng_hold_s, parent=self
        )
        self.verdict_panel = self.run_screen.verdict_panel
        self.panels = build_setup_panels(session, bridge, self.view, self.lock, self)
        self.rules_panel = self.panels["rules"]
        self.rules_model = self.rules_panel.model  # type: ignore[attr-defined]  # panels are typed QWidget: a RulesPanel
        self.zone_editor = self.panels["zones"]
        self.validation_panel = self.panels["validation"]
        self.label_panel = self.panels["label"]
        self.train_panel = self.panels["train"]
        self.history_panel = self.panels["history"]
        self.stats_panel = self.panels["stats"]
        self.events_panel = EventsPanel(session.events.records(), self)
        statuses: StatusSource = outputs or list
        self.integration_panel = IntegrationPanel(statuses, self)
        self.plc_lamp = PlcIndicator(statuses, self)
        self.run_screen.add_status(self.plc_lamp)
        audit = getattr(session, "audit", None)
        self.audit_panel = AuditPanel(audit, self) if audit is not None else None
        self.workspaces = Workspaces(self)
        self.strip = StatusStrip(self)
        self.status_view = QLabel("", self)
        self.statusBar().addPermanentWidget(self.status_view)
        self._build_workspaces()
        self._build_layout()
        self._build_menus()
        self._wire()
        self._enable_run_actions()
        self._apply_lock(self.lock.locked)
        self.live_panel.show_rules(self.rules_model.rules)
        self._show_card(session.model_card)
        self.run_screen.set_line(self._line, session.fault)
        self.run_screen.show_stats(session.stats())
        self.strip.show_session(session, self._line)
        latest = session.latest()
        if latest is not None:
            self.view.show_live(latest)
        self._show_view()
        self._restore_geometry()

    # --- layout --------------------------------------------------------------------------------
    def _build_workspaces(self) -> None:
        ws = self.workspaces
        ws.add("run", "Run", self.run_screen, engineer=False, tip="the operator's screen")
        pages = {
            **self.panels,
            "history": self._history_page(),
            "source": self.controls,
            "events": self.events_panel,
            "integration": self.integration_panel,
        }
        for key, title, engineer, tip in SETUP:
            ws.add(key, title, pages[key], engineer=engineer, tip=tip)
        ws.changed.connect(self._on_workspace)

    def _history_page(self) -> QWidget:
        """Inspections and, when the session keeps one, the audit trail (who changed what)."""
        if self.audit_panel is None:
            return self.history_panel
        tabs = QTabWidget(self)
        tabs.addTab(self.history_panel, "Inspections")
        tabs.addTab(self.audit_panel, "Audit trail")
        tabs.setTabToolTip(1, "Hash-chained record of every change: rules, models, PIN, start/stop")
        return tabs

    def _build_layout(self) -> None:
        image_column = QWidget(self)
        column = QVBoxLayout(image_column)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.live_panel, 1)
        column.addWidget(self.filmstrip)
        self.split = QSplitter(Qt.Orientation.Horizontal, self)
        self.split.addWidget(image_column)
        self.split.addWidget(self.workspaces)
        self.split.setCollapsible(0, False)
        self.split.setCollapsible(1, False)
        self.split.setStretchFactor(0, 1)
        central = QWidget(self)
        layout = QVBoxLayout(central)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.strip)
        layout.addWidget(self.split, 1)
        self.setCentralWidget(central)
        self.addToolBar(Qt.ToolBarArea.LeftToolBarArea, self.workspaces.rail)
        self.resize(1600, 1000)

    def _wire(self) -> None:
        bridge = self.bridge
        self._draw_live = qthrottled(self._show_live, timeout=DISPLAY_INTERVAL_MS, parent=self)
        bridge.result.connect(self._on_result)
        bridge.rejudged.connect(self._on_rejudged)
        bridge.stats.connect(self._on_stats)
        bridge.alarm.connect(self.run_screen.show_alarm)
        bridge.error.connect(self.notify_error)
        bridge.line_state.connect(self._on_line_state)
        bridge.fault.connect(lambda reason: self.notify_error(f"FAULT: {reason}"))
        bridge.model.connect(lambda _card: self.strip.show_session(self.session, self._line))
        bridge.model.connect(self._show_card)
        bridge.event.connect(self.events_panel.add)
        self.events_panel.newest_alarm.connect(
            lambda r: self.run_screen.show_event(str(r.kind), str(r.message))
        )
        self.view.subscribe(lambda _view: self._show_view())
        self.live_panel.resume_requested.connect(self.resume_live)
        self.filmstrip.frame_clicked.connect(self.show_frame)
        self.controls.stepped.connect(self._on_stepped)
        self.controls.error.connect(self.notify_error)
        self.controls.recipe_open_requested.connect(self.recipe_open_requested)
        self.controls.source_opened.connect(
            lambda _spec: self.strip.show_session(self.session, self._line)
        )
        for panel in (*self.panels.values(), self.integration_panel, self.audit_panel):
            if panel is not None:
                panel.error.connect(self.notify_error)  # type: ignore[attr-defined]  # every panel has one; typed QWidget
        self.rules_panel.rules_changed.connect(self._on_rules_changed)  # type: ignore[attr-defined]  # a RulesPanel
        zones = self.zone_editor
        self.live_panel.clicked.connect(zones.image_clicked)  # type: ignore[attr-defined]  # a ZoneEditor, typed QWidget
        self.live_panel.double_clicked.connect(zones.image_double_clicked)  # type: ignore[attr-defined]  # a ZoneEditor
        zones.draft_changed.connect(self.live_panel.set_draft)  # type: ignore[attr-defined]  # a ZoneEditor
        zones.zones_changed.connect(self.live_panel.set_zones)  # type: ignore[attr-defined]  # a ZoneEditor
        self.history_panel.frame_requested.connect(self.show_frame)  # type: ignore[attr-defined]  # a HistoryPanel
        self.lock.locked_changed.connect(self._apply_lock)
        self.lock.locked_changed.connect(self.locked_changed)

    # --- workspaces ------------------------------------------------------------------------------
    def _show_card(self, card: ClassCard | None) -> None:
        """Defect classes of the running model reach the panels that show or use them."""
        self.live_panel.set_card(card)
        for panel in (self.label_panel, self.stats_panel, self.history_panel):
            set_card = getattr(panel, "set_card", None)
            if callable(set_card):
                set_card(card)

    def show_workspace(self, key: str) -> bool:
        return self.workspaces.show_workspace(key)

    def has_tab(self, panel: QWidget) -> bool:
        """True when ``panel``'s workspace is on the rail now (engineering ones leave it locked)."""
        key = self.workspaces.key_of(panel)
        return key is not None and self.workspaces.available(key)

    def show_tab(self, panel: QWidget) -> None:
        key = self.workspaces.key_of(panel)
        if key is not None:
            self.workspaces.show_workspace(key)

    def _on_workspace(self, key: str) -> None:
        run = key == "run"
        self.filmstrip.setVisible(run)
        # Space starts / stops only on the Run screen: elsewhere it belongs to the focused control
        keys = ["F5", "Space"] if run else ["F5"]
        for action in (self.start_action, self.stop_action):
            action.setShortcuts([QKeySequence(k) for k in keys])
        self._size_split(run)

    def _size_split(self, run: bool) -> None:
        width = max(self.split.width(), 800)
        if run:  # the operator's image as large as the window allows, the readable column beside
            side = min(max(int(width * 0.28), 380), 560)
        else:  # a tool gets the larger share; the image stays beside it
            side = width - min(max(int(width * 0.3), 340), 900)
        self.split.setSizes([width - side, side])

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 (Qt override)
        super().resizeEvent(event)
        self._size_split(self.workspaces.current == "run")

    # --- the frame on screen -----------------------------------------------------------------------
    def current_result(self) -> FrameResult | None:
        return self.view.current

    @property
    def live(self) -> bool:
        return self.view.live

    def show_frame(self, result: FrameResult) -> None:
        """Review ``result`` (the line keeps running), judged by the rules now wanted, so what is
        on screen always matches the sliders."""
        self._draw_live.cancel()
        self.view.review(self.rules_model.rejudge(result), "archived")

    def resume_live(self) -> None:
        """Back to live: the newest result; with nothing running the header says STOPPED."""
        latest = self.session.latest()
        self.view.show_live(self.rules_model.rejudge(latest) if latest is not None else None)

    def start(self) -> None:
        """Start the line; the view returns to live."""
        self.resume_live()
        self.controls.start()

    def _show_view(self) -> None:
        view = self.view
        result = view.current
        if result is not None and result is not self._shown:
            self._shown = result
            self.live_panel.show_result(result)
            self.frame_selected.emit(result)
        kind, text = view_text(view, self._line)
        self.live_panel.set_view(kind, text)
        self.strip.show_view(kind, text)
        self.status_view.setText(text)
        name = self.session.recipe.name
        word = text.split(" — ")[0]
        line = self._line.upper()
        self.setWindowTitle(
            f"Inspection station — {name} — {line}" + (f" · {word}" if word != line else "")
        )

    def _on_result(self, result: FrameResult) -> None:
        # every result reaches the filmstrip (it keeps NG ones) and the banner (so an NG is held
        # even when the throttled drawing skips its frame); the picture is drawn throttled
        self.filmstrip.add_result(result)
        self.run_screen.line.offer(result.inspection)
        self._draw_live(result)

    def _show_live(self, result: FrameResult) -> None:
        self.run_screen.refresh()
        if self.view.live:
            # judged before the session got the rules now wanted (hand-over in flight)
            self.view.offer_live(self.rules_model.rejudge(result))

    def _on_stepped(self, result: FrameResult) -> None:
        self.view.review(self.rules_model.rejudge(result), "stepped")

    def _on_rejudged(self, result: FrameResult) -> None:
        # the session's re-judge of its newest result; only take it if nothing newer is wanted
        cur = self.view.current
        if (
            cur is not None
            and _same_frame(cur, result)
            and result.inspection.rules == self.rules_model.rules
        ):
            self.view.replace_current(result)

    def _on_rules_changed(self, rules: Rules) -> None:
        cur = self.view.current
        if cur is not None and cur.inspection.rules != rules:
            # at once, for the frame on screen only: one judge of its kept map, no inference
            self.view.replace_current(self.rules_model.rejudge(cur))
        self.live_panel.show_rules(rules)
        set_rules = getattr(self.validation_panel, "set_rules", None)
        if callable(set_rules):
            set_rules(rules)

    def _on_stats(self, stats: SessionStats) -> None:
        self.run_screen.show_stats(stats)

    def _on_line_state(self, state: str) -> None:
        self._line = state
        running = state == "running"
        self._enable_run_actions()
        self.run_screen.set_line(state, self.session.fault if state == "fault" else None)
        if running and not self.view.live:
            self.view.show_live()  # Start returns to live
        self.strip.show_session(self.session, self._line)
        self._show_view()

    def _enable_run_actions(self) -> None:
        # one of Start / Stop enabled at a time: both carry F5 and Space
        running = self._line == "running"
        self.start_action.setEnabled(not running)
        self.stop_action.setEnabled(running)
        self.step_action.setEnabled(not running)

    def notify_error(self, message: str) -> None:
        """The one place errors from workers and the session are shown (and logged)."""
        log.warning("%s", message)
        self.statusBar().showMessage(f"⚠ {message}", 15_000)

    # --- engineer lock -------------------------------------------------------------------------------
    @property
    def locked(self) -> bool:
        return self.lock.locked

    def _lock_event(self, kind: str, message: str) -> None:
        self.session.log_event(kind, message)  # type: ignore[arg-type]  # "alarm" | "info"
        # Failed logins and PIN changes belong in the audit trail too (who tried, from here).
        if "login failed" in message:
            self.session.audit_record("login.failed", role="operator", detail={"message": message})
        elif "PIN set" in message:
            self.session.audit_record(
                "settings.change", target="engineer_pin", detail={"message": message}
            )

    def ask_unlock(self) -> bool:
        if not self.lock.locked:
            return True
        PinDialog(self.lock, self).exec()
        return not self.lock.locked

    def _apply_lock(self, locked: bool) -> None:
        # Who is at the station, for the audit trail: the operator, or an engineer once unlocked.
        was = self.session.actor
        self.session.actor = ("operator", None) if locked else ("engineer", None)
        if was != self.session.actor:
            self.session.audit_record(
                "logout" if locked else "login", role=was[0] if locked else "engineer"
            )
        self.workspaces.set_locked(locked)
        for action in self._engineer_actions:
            action.setEnabled(not locked)
        self.controls.set_editable(not locked)
        self.unlock_action.setEnabled(locked)
        self.lock_action.setEnabled(not locked)
        self.strip.show_lock(locked)

    # --- window --------------------------------------------------------------------------------------
    # Geometry goes to QSettings only when the application has named itself (run_gui does):
    # tests and embedding code then leave the user's settings alone.
    def _restore_geometry(self) -> None:
        if QCoreApplication.organizationName():
            geometry = QSettings().value("main_window/geometry")
            if isinstance(geometry, QByteArray):
                self.restoreGeometry(geometry)

    def confirm_quit(self) -> bool:
        """Asked before closing while the line runs (a closed window stops the inspection)."""
        answer = QMessageBox.question(
            self,
            "Quit the station?",
            "The line is running: quitting stops the inspection. Stop and quit?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802 (Qt override)
        if self.ask_before_close and self.session.running and not self.confirm_quit():
            event.ignore()
            return
        if QCoreApplication.organizationName():
            QSettings().setValue("main_window/geometry", self.saveGeometry())
        shutdown_setup_panels(self.panels)
        super().closeEvent(event)


def _same_frame(a: FrameResult, b: FrameResult) -> bool:
    return a.frame.frame_id == b.frame.frame_id and a.frame.source == b.frame.source

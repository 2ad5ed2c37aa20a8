"""Build the setup workspaces' panels, each over its own Qt-free model; the window places them.

Contract with the window (app/ui/main_window.py):

``build_setup_panels(session, bridge, view_state, lock) -> dict[str, QWidget]`` with the keys
``"rules", "zones", "validation", "label", "train", "history", "stats"``.

- Every panel has ``error = Signal(str)``: connect it to the window's one notifier.
- ``panels["rules"].model`` is the ``RulesModel`` (app/station/rules_model.py), the single owner
  of the live rules. The window re-judges the frame on screen with ``model.rejudge(result)`` (or
  ``model.rules``) and follows ``panels["rules"].rules_changed`` (``Signal(object)``: the Rules
  wanted now, on the GUI thread) instead of holding rules of its own. ``panels["rules"].save`` /
  ``.revert`` are the File menu's Save / Revert recipe.
- ``panels["zones"]`` draws on the image without knowing the image widget. The window wires:
  ``live_panel.clicked -> zones.image_clicked``,
  ``live_panel.double_clicked -> zones.image_double_clicked``,
  ``zones.draft_changed -> live_panel.set_draft`` and ``zones.zones_changed -> live_panel.set_zones``.
- ``panels["history"].frame_requested = Signal(object)``: a FrameResult the window shows as REVIEW.
- ``panels["label"]`` follows ``view_state`` (the frame on screen) by itself.
- ``shutdown_setup_panels(panels)`` before the session closes: stops jobs, waits for hand-overs.
"""

from __future__ import annotations

from typing import Any

from PySide6.QtWidgets import QWidget

from app.station.history_query import HistoryQuery
from app.station.label_session import LabelSession
from app.station.rules_model import RulesModel
from app.station.session import InspectionSession
from app.station.training_workflow import TrainingWorkflow
from app.station.validation_job import ValidationJob
from app.station.view_state import ViewState
from app.ui._process_job import QtJobRunner
from app.ui.bridge import SessionBridge
from app.ui.history_panel import HistoryPanel
from app.ui.label_panel import LabelPanel
from app.ui.lock import EngineerLock
from app.ui.rules_panel import RulesPanel, RulesSignals
from app.ui.stats_panel import StatsPanel
from app.ui.train_panel import TrainPanel
from app.ui.validation_panel import ValidationPanel
from app.ui.zone_editor import ZoneEditor

PANEL_KEYS = ("rules", "zones", "validation", "label", "train", "history", "stats")


def build_setup_panels(
    session: InspectionSession,
    bridge: SessionBridge,
    view_state: ViewState,
    lock: EngineerLock,
    parent: QWidget | None = None,
) -> dict[str, QWidget]:
    """One panel per setup workspace, each given only its model (+ bridge signals it needs)."""
    data_dir = session.settings.data_dir

    def dataset_dir() -> Any:
        return session.recipe.dataset_path(data_dir)

    rules = RulesModel(session)
    runner = QtJobRunner(parent)
    workflow = TrainingWorkflow(
        session,
        runner,
        data_dir,
        operating_point=lambda: rules.rules.threshold,
        check_pin=lock.access.check,  # the PIN helper's checker: the same PIN as unlocking
        audit=_audit_of(session),
    )
    labels = LabelSession(dataset_dir, lambda: rules.rules, view_state)
    history = HistoryQuery(lambda: session.store, session.history)
    validation = ValidationJob(lambda: session.model_path)

    train = TrainPanel(workflow, runner, bridge, dataset_dir(), parent)
    label = LabelPanel(labels, parent)
    panels: dict[str, QWidget] = {
        "rules": RulesPanel(rules, bridge, parent),
        "zones": ZoneEditor(rules, bridge, parent),
        "validation": ValidationPanel(validation, rules, parent),
        "label": label,
        "train": train,
        "history": HistoryPanel(history, bridge, parent),
        "stats": StatsPanel(lambda: session.store, parent),
    }
    # model-to-model wiring, on the GUI thread: saved labels refresh the training data summary;
    # a moved threshold re-reads the comparison at the new operating point
    label.saved.connect(lambda _paths: workflow.dataset_changed())
    signals = RulesSignals(rules, train)
    signals.changed.connect(lambda _rules: workflow.recompare())
    label.destroyed.connect(lambda *_: labels.close())
    return panels


def _audit_of(session: InspectionSession) -> Any:
    """Deploys and rollbacks go to ``session.audit.record`` when the station keeps an audit
    trail (looked up at each record: the trail may be opened after the panels are built)."""

    def record(role: str, action: str, **fields: Any) -> None:
        audit = getattr(session, "audit", None)
        if audit is not None:
            audit.record(role, action, **fields)

    return record


def shutdown_setup_panels(panels: dict[str, QWidget], timeout_s: float = 5.0) -> None:
    """Stop the panels' jobs and wait for the rules hand-over (call before closing the session)."""
    validation = panels.get("validation")
    if isinstance(validation, ValidationPanel):
        validation.shutdown(timeout_s)
    train = panels.get("train")
    if isinstance(train, TrainPanel):
        train.shutdown()
    rules = panels.get("rules")
    if isinstance(rules, RulesPanel):
        rules.model.close(timeout_s)

"""Audit page: rows newest first, action filter, "Verify chain" on an intact and a tampered
trail, CSV export, and tooltips on every control."""

from __future__ import annotations

import csv
import sqlite3
from pathlib import Path

import pytest

from app.station import audit as au
from app.station.audit import AuditCheck, AuditLog
from app.ui.audit_panel import ALL_ACTIONS, AuditPanel
from tests.ui.test_integration_panel import assert_tooltips

pytestmark = pytest.mark.gui


@pytest.fixture
def log(tmp_path: Path):
    a = AuditLog(tmp_path / "results.sqlite3")
    a.record("engineer", au.LOGIN, user="anna")
    a.record("engineer", au.RULES_CHANGE, target="threshold", old=0.5, new=0.7)
    a.record("technician", au.MODEL_DEPLOY, old="m1", new="m2", detail={"dice": [0.8, 0.9]})
    a.record("operator", au.STATION_START)
    yield a
    a.close()


def _col(panel: AuditPanel, col: int) -> list[str]:
    return [panel.table.item(r, col).text() for r in range(panel.table.rowCount())]


def test_rows_filter_and_tooltips(qtbot, log: AuditLog) -> None:
    panel = AuditPanel(log)
    qtbot.addWidget(panel)
    assert _col(panel, 0) == ["4", "3", "2", "1"]
    assert _col(panel, 4)[0] == au.STATION_START
    panel.action.setCurrentText(au.RULES_CHANGE)
    assert _col(panel, 0) == ["2"]
    assert [panel.table.item(0, c).text() for c in (5, 6, 7)] == ["threshold", "0.5", "0.7"]
    panel.action.setCurrentText(ALL_ACTIONS)
    log.record("plc", "custom.thing")  # an action outside the recommended list
    panel.refresh()
    assert panel.table.rowCount() == 5 and panel.action.findText("custom.thing") >= 0
    assert_tooltips(panel)


def test_verify_intact_then_tampered(qtbot, log: AuditLog) -> None:
    panel = AuditPanel(log)
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.verified, timeout=5000) as sig:
        panel.verify_btn.click()
    assert isinstance(sig.args[0], AuditCheck) and sig.args[0].ok
    assert "intact: 4 rows" in panel.status.text()

    conn = sqlite3.connect(log.db_path)
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("UPDATE audit SET new = '0.2' WHERE id = 2")
    conn.commit()
    conn.close()
    with qtbot.waitSignal(panel.verified, timeout=5000) as sig:
        panel.verify_btn.click()
    assert not sig.args[0].ok and sig.args[0].first_bad_id == 2
    assert "BROKEN at row 2" in panel.status.text()
    assert panel.verify_btn.isEnabled()


def test_export_csv(qtbot, log: AuditLog, tmp_path: Path) -> None:
    panel = AuditPanel(log)
    qtbot.addWidget(panel)
    panel.action.setCurrentText(au.LOGIN)  # the export writes every row, not only the shown
    out = tmp_path / "audit.csv"
    with qtbot.waitSignal(panel.exported, timeout=5000) as sig:
        panel.export_csv(out)
    assert sig.args == [str(out), 4]
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["action"] for r in rows] == [au.LOGIN, au.RULES_CHANGE, au.MODEL_DEPLOY,
                                           au.STATION_START]  # fmt: skip
    assert "4 audit rows written" in panel.status.text()


def test_unreadable_log_is_reported(qtbot, log: AuditLog) -> None:
    panel = AuditPanel(log)
    qtbot.addWidget(panel)
    log.close()
    with qtbot.waitSignal(panel.error, timeout=1000):
        panel.refresh()
    assert "Cannot read the audit trail" in panel.status.text()

"""Audit trail: hash chain, append-only triggers, tamper detection by `audit verify`, CSV, and no
entry lost while the database is locked."""

from __future__ import annotations

import csv
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main
from app.station import audit as au
from app.station.audit import AuditLog, verify_database
from app.station.store import ResultsStore


def _filled(db: Path, n: int = 6) -> AuditLog:
    log = AuditLog(db)
    log.record("engineer", au.LOGIN, user="anna")
    log.record("engineer", au.RULES_CHANGE, target="threshold", old=0.5, new=0.62)
    log.record("engineer", au.ZONES_CHANGE, old=[], new=[{"kind": "exclude", "rect": [0, 0, 9, 9]}])
    log.record("technician", au.MODEL_DEPLOY, old="m1", new="m2", detail={"dice": [0.81, 0.86]})
    log.record("system", au.STATION_FAULT, detail={"reason": "camera gone"})
    for i in range(n - 5):
        log.record("operator", au.STATION_START, detail={"i": i})
    return log


def _tamper(db: Path, sql: str, *params: object) -> None:
    conn = sqlite3.connect(db)
    conn.execute("DROP TRIGGER IF EXISTS audit_no_update")
    conn.execute("DROP TRIGGER IF EXISTS audit_no_delete")
    conn.execute(sql, params)
    conn.commit()
    conn.close()


def test_record_and_verify_in_the_results_database(tmp_path: Path) -> None:
    db = tmp_path / "results.sqlite3"
    with ResultsStore(db, tmp_path / "archive"):  # the audit table lives beside the results
        pass
    with _filled(db) as log:
        check = log.verify()
        assert check.ok and check.rows == 6 and check.first_bad_id is None
        newest = log.rows()
        assert [r.id for r in newest] == [6, 5, 4, 3, 2, 1]
        change = log.rows(action=au.RULES_CHANGE)
        assert len(change) == 1 and change[0].old == 0.5 and change[0].new == 0.62
        assert change[0].role == "engineer" and change[0].user is None
        assert newest[-1].prev_hash == au.GENESIS
        assert newest[0].prev_hash == newest[1].hash
        assert au.MODEL_DEPLOY in log.actions()
        assert log.rows(since=newest[0].time + 1) == []
    assert verify_database(db).ok
    tables = sqlite3.connect(db).execute("SELECT name FROM sqlite_master").fetchall()
    assert ("inspections",) in tables and ("audit",) in tables


def test_triggers_refuse_update_and_delete(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite3"
    _filled(db).close()
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE audit SET new = '0.9' WHERE id = 2")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM audit WHERE id = 2")
    conn.close()


def test_edited_row_fails_verify_with_its_id(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db = tmp_path / "r.sqlite3"
    _filled(db).close()
    assert main(["audit", "verify", "--db", str(db)]) == 0
    _tamper(db, "UPDATE audit SET new = ? WHERE id = 2", "0.9")
    capsys.readouterr()
    assert main(["audit", "verify", "--db", str(db)]) == 1
    out = capsys.readouterr().out
    assert "row 2" in out and "edited" in out
    check = verify_database(db)
    assert (check.ok, check.first_bad_id) == (False, 2)


def test_edit_with_recomputed_hash_breaks_the_next_link(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite3"
    _filled(db).close()
    conn = sqlite3.connect(db)
    row = conn.execute("SELECT * FROM audit WHERE id = 3").fetchone()
    conn.close()
    fields = (*row[:7], '"forged"', row[8])
    _tamper(db, "UPDATE audit SET new = ?, hash = ? WHERE id = 3", '"forged"',
            au.row_hash(fields, row[9]))  # fmt: skip
    assert verify_database(db).first_bad_id == 4


def test_deleted_row_fails_verify_subprocess(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite3"
    _filled(db).close()
    _tamper(db, "DELETE FROM audit WHERE id = 3")
    proc = subprocess.run(
        [sys.executable, "-m", "app", "audit", "verify", "--db", str(db)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "row 4" in proc.stdout


def test_deleted_last_row_and_reordered_rows_fail(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite3"
    _filled(db).close()
    _tamper(db, "DELETE FROM audit WHERE id = 6")
    check = verify_database(db)
    assert not check.ok and check.first_bad_id == 6 and "missing at the end" in check.reason

    db2 = tmp_path / "r2.sqlite3"
    _filled(db2).close()
    # Swap the contents of rows 2 and 3 (ids stay in place): both hashes were made with the
    # other id and link, so row 2 fails first.
    _tamper(db2, "UPDATE audit SET id = -2 WHERE id = 2")
    _tamper(db2, "UPDATE audit SET id = 2 WHERE id = 3")
    _tamper(db2, "UPDATE audit SET id = 3 WHERE id = -2")
    assert verify_database(db2).first_bad_id == 2


def test_export_csv_cli_and_method(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite3"
    log = _filled(db)
    n = log.export_csv(tmp_path / "a.csv")
    log.close()
    assert main(["audit", "export", "--db", str(db), "--out", str(tmp_path / "b.csv")]) == 0
    for name in ("a.csv", "b.csv"):
        rows = list(csv.DictReader((tmp_path / name).open(encoding="utf-8")))
        assert n == len(rows) == 6
        assert rows[1]["action"] == au.RULES_CHANGE and rows[1]["old"] == "0.5"
        assert rows[1]["time_utc"].endswith("Z") and len(rows[1]["hash"]) == 64
    assert main(["audit", "export", "--db", str(tmp_path / "none.db"), "--out", "x.csv"]) == 2
    assert main(["audit", "verify", "--db", str(tmp_path / "none.db")]) == 2


def test_locked_database_queues_then_writes_in_order(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "r.sqlite3"
    log = AuditLog(db, busy_timeout_ms=50)
    log.record("system", au.STATION_START)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
    assert log.record("engineer", au.RULES_CHANGE, old=1, new=2) is False
    assert log.record("engineer", au.RULES_CHANGE, old=2, new=3) is False
    assert log.pending == 2
    assert "wait in memory" in caplog.text
    blocker.execute("COMMIT")
    assert log.record("system", au.STATION_STOP) is True
    assert log.pending == 0
    rows = log.rows()[::-1]
    assert [(r.action, r.new) for r in rows] == [
        (au.STATION_START, None), (au.RULES_CHANGE, 2), (au.RULES_CHANGE, 3),
        (au.STATION_STOP, None),
    ]  # fmt: skip
    assert log.verify().ok
    log.close()
    blocker.close()


def test_entries_locked_at_close_survive_to_the_next_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = tmp_path / "r.sqlite3"
    log = AuditLog(db, busy_timeout_ms=50)
    log.record("system", au.STATION_START)
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    log.record("system", au.STATION_FAULT, detail={"reason": "disk"})
    log.close()
    assert "kept in" in caplog.text
    blocker.execute("COMMIT")
    blocker.close()
    with AuditLog(db) as again:
        rows = again.rows()
        assert [r.action for r in rows] == [au.STATION_FAULT, au.STATION_START]
        assert rows[0].detail == {"reason": "disk"}
        assert again.verify().ok
    assert not (tmp_path / "r.sqlite3.audit-pending.jsonl").exists()


def test_pending_entries_are_written_once_across_two_locked_restarts(tmp_path: Path) -> None:
    db = tmp_path / "r.sqlite3"
    AuditLog(db).close()
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    first = AuditLog(db, busy_timeout_ms=20)
    first.record("system", au.STATION_START)
    first.close()
    first.record("system", au.STATION_STOP)  # a late entry after close goes to the file too
    second = AuditLog(db, busy_timeout_ms=20)  # still locked: replays nothing yet
    second.record("engineer", au.LOGIN)
    assert second.pending == 3
    second.close()
    blocker.execute("COMMIT")
    blocker.close()
    with AuditLog(db) as third:
        actions = [r.action for r in third.rows()][::-1]
        assert actions == [au.STATION_START, au.STATION_STOP, au.LOGIN]
        assert third.verify().ok
    assert not (tmp_path / "r.sqlite3.audit-pending.jsonl").exists()
    with AuditLog(db) as fourth:
        assert len(fourth.rows()) == 3  # nothing replayed twice

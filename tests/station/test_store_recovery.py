"""Results store at start-up and after trouble: a malformed database is moved aside, a newer
one refused, a crashed run's journal replayed once, a second process keeps its own journal, a
row the database refuses does not block the rest. (Write-time faults: test_store_faults.py.)"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from app.station import _store_open as open_mod
from app.station.store import ResultsStore, StoreError
from tests.station.store_faults import (
    REPO,
    Locker,
    Usage,
    alarms,
    insert_full,
    locker_factory,
    open_store,
)
from tests.station.test_store import count_rows, make_result

__all__ = ["alarms", "locker_factory"]  # fixtures used here


@pytest.mark.parametrize("damage", ["pages", "whole file"])
def test_malformed_database_moved_aside(tmp_path: Path, alarms: list[str], damage: str) -> None:
    with open_store(tmp_path, archive_ng=False) as s:
        for i in range(150):
            s.add(make_result(i, blobs=2))
        assert s.stored == 150
    db = tmp_path / "results.db"
    rng = np.random.default_rng(0)
    with db.open("r+b") as fh:
        if damage == "pages":  # header intact, b-tree pages overwritten
            fh.seek(4096 * 2)
            fh.write(rng.integers(0, 256, 4096 * 6, np.uint8).tobytes())
        else:
            fh.write(rng.integers(0, 256, 8192, np.uint8).tobytes())
    with open_store(tmp_path, alarms) as s:
        assert any("malformed" in a and "moved aside" in a for a in alarms)
        aside = list(tmp_path.glob("results.db.malformed-*"))
        assert len(aside) == 1 and aside[0].stat().st_size > 0
        assert s.recent() == []  # a fresh database
        assert [s.add(make_result(i)) for i in range(3)] == [1, 2, 3]
    assert count_rows(db) == 3


def test_malformed_database_kept_when_repair_is_off(tmp_path: Path) -> None:
    (tmp_path / "results.db").write_bytes(b"not a database at all" * 500)
    with pytest.raises(StoreError, match="malformed"):
        open_store(tmp_path, repair=False)  # e.g. export-csv: never move the user's file
    assert (tmp_path / "results.db").read_bytes().startswith(b"not a database")
    assert list(tmp_path.glob("*.malformed-*")) == []


def test_floors_come_from_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from app.station.settings import load_settings

    (tmp_path / "settings.toml").write_text("min_free_mb = 10\narchive_min_free_mb = 20.5\n")
    settings = load_settings(tmp_path / "settings.toml")
    assert (settings.min_free_mb, settings.archive_min_free_mb) == (10.0, 20.5)
    monkeypatch.setattr(open_mod.shutil, "disk_usage", lambda _p: Usage(10**12, 0, 15 << 20))
    alarms: list[str] = []
    with open_store(
        tmp_path, alarms, min_free_mb=settings.min_free_mb,
        archive_min_free_mb=settings.archive_min_free_mb,
    ) as s:  # fmt: skip
        assert s.archive_paused and any("archive stopped" in a for a in alarms)
        assert s.get(s.add(make_result(1, blobs=1))).image_path is None
    assert count_rows(tmp_path / "results.db") == 1


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "results.db")
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="newer than this station"):
        open_store(tmp_path)


def test_crashed_run_journal_replayed_at_next_start(
    tmp_path: Path, locker_factory: type[Locker]
) -> None:
    open_store(tmp_path).close()
    lock = locker_factory(tmp_path / "results.db")
    child = textwrap.dedent(
        f"""
        import os, sys
        from pathlib import Path
        from tests.station.test_store import make_result
        from app.station.store import ResultsStore
        s = ResultsStore(Path({str(tmp_path)!r}) / "results.db", Path({str(tmp_path)!r}) / "archive",
                         busy_timeout_ms=20, open_timeout_ms=50)
        for i in range(6):
            assert s.add(make_result(i, blobs=i % 2)) is None
        os._exit(0)  # a crash: no close, no flush
        """
    )
    subprocess.run([sys.executable, "-c", child], cwd=REPO, check=True, timeout=120)
    lock.release()
    journal = tmp_path / "results.db.journal.jsonl"
    assert len(journal.read_bytes().splitlines()) == 6
    with journal.open("ab") as fh:  # and the crash tore a seventh line in half
        fh.write(b'{"uid":"abc","row":{"frame_id":6')
    alarms: list[str] = []
    with open_store(tmp_path, alarms) as s:
        assert (s.stored, s.journaled, s.lost) == (6, 0, 1)
        assert any("torn by a crash" in a for a in alarms)
        assert [r.frame_id for r in s.recent()] == [5, 4, 3, 2, 1, 0]
        assert all(r.image_path.is_file() for r in s.recent(verdict="NG"))
    assert count_rows(tmp_path / "results.db") == 6
    assert not journal.exists()


def test_replay_is_idempotent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash after the rows were committed but before the journal was emptied must not
    write them twice at the next start."""
    s = open_store(tmp_path)
    real = ResultsStore._insert_rows
    monkeypatch.setattr(ResultsStore, "_insert_rows", insert_full)
    for i in range(4):
        s.add(make_result(i))
    monkeypatch.setattr(ResultsStore, "_insert_rows", real)
    saved = (tmp_path / "results.db.journal.jsonl").read_bytes()
    s.close()  # replays and empties the journal
    (tmp_path / "results.db.journal.jsonl").write_bytes(saved)  # as if never emptied
    with open_store(tmp_path) as again:
        assert (again.stored, again.journaled) == (0, 0)
    assert count_rows(tmp_path / "results.db") == 4


def test_a_row_the_database_refuses_does_not_block_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alarms: list[str]
) -> None:
    s = open_store(tmp_path, alarms)
    real = ResultsStore._insert_rows
    monkeypatch.setattr(ResultsStore, "_insert_rows", insert_full)
    for i in range(5):
        s.add(make_result(i))
    s.close()  # still failing: the five rows stay journaled
    journal = tmp_path / "results.db.journal.jsonl"
    lines = journal.read_bytes().splitlines()
    bad = json.loads(lines[2])
    bad["row"]["verdict"] = "MAYBE"  # e.g. written by a build with another verdict set
    lines[2] = json.dumps(bad).encode()
    journal.write_bytes(b"\n".join(lines) + b"\n")
    monkeypatch.setattr(ResultsStore, "_insert_rows", real)
    with open_store(tmp_path, alarms) as again:
        assert (again.stored, again.journaled, again.lost) == (4, 0, 1)
        assert [r.frame_id for r in again.recent()] == [4, 3, 1, 0]
    assert any("refused by the database" in a for a in alarms)
    rejected = (tmp_path / "results.db.journal.rejected.jsonl").read_text().splitlines()
    assert [json.loads(r)["row"]["frame_id"] for r in rejected] == [2]
    assert count_rows(tmp_path / "results.db") == 5 - again.lost


def test_second_process_uses_its_own_journal(tmp_path: Path, locker_factory: type[Locker]) -> None:
    a = open_store(tmp_path)
    b = open_store(tmp_path)  # the default journal is a's: b writes DB.journal-PID-0.jsonl
    a.add(make_result(0))
    lock = locker_factory(tmp_path / "results.db")
    b.add(make_result(1))
    b.close()  # still locked: b's row stays in its own journal
    assert (tmp_path / f"results.db.journal-{os.getpid()}-0.jsonl").is_file()
    lock.release()
    with open_store(tmp_path) as c:  # picks up b's leftover journal
        assert c.stored == 1
    a.close()
    assert count_rows(tmp_path / "results.db") == 2


# -- what the rows hold -------------------------------------------------------------------------

"""Fault injection on the results store: no verdict is lost, and every loss is counted.

Each test ends by checking that the rows in the database equal the results added (or that the
difference is exactly what ``lost`` says): a full disk (an ENOSPC-raising writer, and a real
SQLITE_FULL), another process holding ``BEGIN EXCLUSIVE`` at start and mid-run, a journal that
cannot be written either, free-space floors and non-UTF-8 file names. (ERROR rows and the
migrations: test_store.py; a malformed database, a crashed run's journal, a second process:
test_store_recovery.py.)
"""

from __future__ import annotations

import errno
import json
import math
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from app.station import _store_open as open_mod
from app.station import journal as journal_mod
from app.station.frame import Frame
from app.station.inspection import FrameResult
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
from tests.station.test_store import count_rows, error_result, make_result

__all__ = ["alarms", "locker_factory"]  # fixtures used here


def test_locked_at_start_line_starts_and_rows_land(
    tmp_path: Path, alarms: list[str], locker_factory: type[Locker]
) -> None:
    open_store(tmp_path).close()  # an existing, current database
    lock = locker_factory(tmp_path / "results.db")
    with open_store(tmp_path, alarms) as s:  # no StoreError: the line starts
        ids = [s.add(make_result(i, blobs=i % 2)) for i in range(5)]
        assert ids == [None] * 5
        assert (s.stored, s.journaled, s.lost) == (0, 5, 0)
        assert any("unavailable" in a for a in alarms)
        lock.release()
        assert s.flush() == 0
        assert (s.stored, s.journaled) == (5, 0)
        assert any("available again" in a for a in alarms)
        assert [r.frame_id for r in s.recent()] == [4, 3, 2, 1, 0]  # acquisition order
    assert count_rows(tmp_path / "results.db") == 5


def test_new_database_locked_before_its_schema_exists(
    tmp_path: Path, locker_factory: type[Locker]
) -> None:
    # The other process created the file (rollback journal, no tables) and holds it: even the
    # integrity check cannot read. The schema is created by the retry once it is released.
    lock = locker_factory(tmp_path / "results.db")
    with open_store(tmp_path) as s:
        assert [s.add(make_result(i)) for i in range(3)] == [None] * 3
        lock.release()
        assert s.flush() == 0 and s.stored == 3
    assert count_rows(tmp_path / "results.db") == 3


def test_locked_mid_run_periodic_retry_replays(
    tmp_path: Path, locker_factory: type[Locker]
) -> None:
    with open_store(tmp_path, retry_interval_s=0.1) as s:
        assert s.add(make_result(0)) == 1
        lock = locker_factory(s.db_path)
        assert [s.add(make_result(i, blobs=1)) for i in (1, 2, 3)] == [None] * 3
        assert s.journaled == 3
        lock.release()
        deadline = time.monotonic() + 10
        while s.journaled and time.monotonic() < deadline:  # no add, no flush: the retry thread
            time.sleep(0.05)
        assert (s.journaled, s.stored, s.lost) == (0, 4, 0)
        assert all(r.image_path.is_file() for r in s.recent(verdict="NG"))
    assert count_rows(tmp_path / "results.db") == 4


# -- the disk is full ---------------------------------------------------------------------------


def test_enospc_writer_journals_then_replays(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alarms: list[str]
) -> None:
    s = open_store(tmp_path, alarms)
    real = ResultsStore._insert_rows
    added = 0
    for i in range(3):
        s.add(make_result(i))
        added += 1
    monkeypatch.setattr(ResultsStore, "_insert_rows", insert_full)
    for i in range(3, 10):
        assert s.add(make_result(i, blobs=1)) is None
        added += 1
    assert (s.stored, s.journaled, s.lost) == (3, 7, 0)
    lines = (tmp_path / "results.db.journal.jsonl").read_bytes().splitlines()
    assert len(lines) == 7 and json.loads(lines[0])["row"]["frame_id"] == 3
    monkeypatch.setattr(ResultsStore, "_insert_rows", real)
    s.add(make_result(10))  # the next add replays first, then writes its own row
    added += 1
    assert (s.stored, s.journaled, s.lost) == (added, 0, 0)
    assert [r.frame_id for r in s.recent(limit=None)] == list(range(10, -1, -1))
    s.close()
    assert count_rows(tmp_path / "results.db") == added
    assert not (tmp_path / "results.db.journal.jsonl").exists()


def test_long_backlog_does_not_hold_up_add(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = open_store(tmp_path, archive_ng=False, retry_interval_s=60)
    real = ResultsStore._insert_rows
    monkeypatch.setattr(ResultsStore, "_insert_rows", insert_full)
    for i in range(1200):
        s.add(make_result(i))
    assert s.journaled == 1200 and s.stored == 0
    monkeypatch.setattr(ResultsStore, "_insert_rows", real)
    s._last_failure = -math.inf  # as if the last failure were long ago: retries are due
    before = s.stored
    assert s.add(make_result(1200)) is None  # two batches written; this row waits its turn
    assert 0 < s.stored - before <= 512 and s.journaled == 1201 - s.stored
    deadline = time.monotonic() + 20
    while s.journaled and time.monotonic() < deadline:  # the retry thread writes the rest
        time.sleep(0.05)
    assert (s.stored, s.journaled, s.lost) == (1201, 0, 0)
    ids = [r.frame_id for r in s.recent(limit=None)]
    assert ids == list(range(1200, -1, -1))  # in acquisition order
    s.close()
    assert count_rows(tmp_path / "results.db") == 1201


def test_real_sqlite_full_journals_then_replays(tmp_path: Path) -> None:
    with open_store(tmp_path, archive_ng=False) as s:
        s.add(make_result(0))
        pages = s._db.writer().execute("PRAGMA page_count").fetchone()[0]
        s._db.writer().execute(f"PRAGMA max_page_count = {pages}")  # the file cannot grow
        for i in range(1, 120):
            s.add(make_result(i, blobs=3))
        assert s.journaled > 0 and s.stored + s.journaled == 120 and s.lost == 0
        s._db.writer().execute("PRAGMA max_page_count = 1073741823")
        assert s.flush() == 0
        assert s.stored == 120
    assert count_rows(tmp_path / "results.db") == 120


def test_lost_only_when_the_journal_fails_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alarms: list[str]
) -> None:
    s = open_store(tmp_path, alarms)
    real_insert, real_write = ResultsStore._insert_rows, os.write
    calls = {"n": 0}

    def half_then_enospc(fd: int, data: bytes) -> int:
        calls["n"] += 1
        if calls["n"] == 1:  # half a line reaches the file, then the disk is full
            return real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ResultsStore, "_insert_rows", insert_full)
    s.add(make_result(0))  # journaled
    monkeypatch.setattr(journal_mod.os, "write", half_then_enospc)
    assert s.add(make_result(1)) is None
    assert (s.lost, s.journaled) == (1, 1)
    assert any("LOST" in a for a in alarms)
    monkeypatch.setattr(journal_mod.os, "write", real_write)
    s.add(make_result(2))  # journaled after the half line was cut away
    monkeypatch.setattr(ResultsStore, "_insert_rows", real_insert)
    assert s.flush() == 0
    assert (s.stored, s.lost) == (2, 1)
    s.close()
    assert count_rows(tmp_path / "results.db") == 3 - s.lost
    with open_store(tmp_path) as again:  # frame 1 is the one lost; nothing was left behind
        assert [r.frame_id for r in again.recent()] == [2, 0] and again.stored == 0


@pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")
def test_real_write_limit_fills_db_then_journal(tmp_path: Path) -> None:
    """A real OS write failure (RLIMIT_FSIZE: every file stops growing at 150 kB, as on a full
    disk) in a child process: the database fails first, the journal takes rows until it fails
    too, and only those rows are lost; once the limit is lifted the journal is written."""
    child = textwrap.dedent(
        f"""
        import json, resource, signal, sys
        from pathlib import Path
        from tests.station.test_store import make_result
        from app.station.store import ResultsStore
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
        d = Path({str(tmp_path)!r})
        s = ResultsStore(d / "r.db", d / "archive", min_free_mb=0, archive_ng=False)
        resource.setrlimit(resource.RLIMIT_FSIZE, (150_000, resource.RLIM_INFINITY))
        for i in range(1500):
            s.add(make_result(i, blobs=1 + i % 3))
        during = dict(stored=s.stored, journaled=s.journaled, lost=s.lost, alarms=list(s.alarms))
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY,) * 2)
        s.flush()
        print(json.dumps(dict(during=during, stored=s.stored, journaled=s.journaled, lost=s.lost)))
        s.close()
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", child], cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.splitlines()[-1])
    during = out["during"]
    assert during["journaled"] > 0 and during["lost"] > 0
    assert during["stored"] + during["journaled"] + during["lost"] == 1500
    assert any("LOST" in a for a in during["alarms"])
    assert (out["journaled"], out["lost"]) == (0, during["lost"])
    assert out["stored"] == 1500 - during["lost"] == count_rows(tmp_path / "r.db")


def test_archive_stops_below_its_floor_rows_continue(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alarms: list[str]
) -> None:
    free = {"mb": 5000}
    monkeypatch.setattr(
        open_mod.shutil, "disk_usage", lambda _p: Usage(10**12, 0, free["mb"] << 20)
    )
    with open_store(tmp_path, alarms, disk_check_s=0, archive_min_free_mb=1000) as s:
        assert s.get(s.add(make_result(0, blobs=1))).image_path.is_file()
        free["mb"] = 900
        ids = [s.add(make_result(i, blobs=1)) for i in (1, 2)]
        assert all(s.get(i).image_path is None and s.get(i).verdict == "NG" for i in ids)
        assert s.archive_paused and s.archive_skipped == 2
        assert sum("archive stopped" in a for a in alarms) == 1  # once, not per frame
        free["mb"] = 1500
        assert s.get(s.add(make_result(3, blobs=1))).image_path.is_file()
        assert not s.archive_paused and sum("archive resumed" in a for a in alarms) == 1
        assert s.stored == 4
    assert count_rows(tmp_path / "results.db") == 4
    assert len(list((tmp_path / "archive").rglob("*_image.png"))) == 2


def test_refuses_to_start_below_min_free(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(open_mod.shutil, "disk_usage", lambda _p: Usage(10**12, 0, 50 << 20))
    with pytest.raises(StoreError, match=r"only 50 MB free .*min_free_mb"):
        open_store(tmp_path, min_free_mb=200)
    assert not (tmp_path / "results.db").exists()


# -- broken files -------------------------------------------------------------------------------


@pytest.mark.parametrize("via_journal", [False, True])
def test_non_utf8_names_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, via_journal: bool
) -> None:
    folder = tmp_path / os.fsdecode(b"bad\xff")
    path = str(folder / os.fsdecode(b"img\xfe.png"))
    source = f"folder:{folder}"
    s = ResultsStore(folder / "r.db", folder / "archive", busy_timeout_ms=20, retry_interval_s=0)
    real = ResultsStore._insert_rows
    if via_journal:
        monkeypatch.setattr(ResultsStore, "_insert_rows", insert_full)
    ng = make_result(1, blobs=1)
    ng = FrameResult(
        Frame(ng.frame.image, 1, ng.frame.timestamp, source, {"path": path}), ng.prob,
        ng.inspection.__class__(**{**ng.inspection.__dict__, "source": source}),
    )  # fmt: skip
    s.add(ng)
    s.add(error_result(2, source=source, path=path))
    monkeypatch.setattr(ResultsStore, "_insert_rows", real)
    assert s.flush() == 0 and s.stored == 2
    rows = s.recent()
    assert [r.source for r in rows] == [source, source]
    assert [r.path for r in rows] == [path, path]
    assert rows[0].error == f"cannot read {path}: not an image"
    assert rows[0].reasons == (rows[0].error,)
    assert rows[1].image_path.is_file()  # the archive lives in the non-UTF-8 folder too
    raw = sqlite3.connect(folder / "r.db").execute("SELECT path FROM inspections").fetchall()
    assert {r[0] for r in raw} == {os.fsencode(path)}  # the file system's own bytes
    out = tmp_path / "out.csv"
    s.export_csv(out)
    text = out.read_text(encoding="utf-8")  # valid UTF-8, the bytes shown escaped
    assert "bad\\xff" in text and "img\\xfe.png" in text
    s.close()
    assert count_rows(folder / "r.db") == 2

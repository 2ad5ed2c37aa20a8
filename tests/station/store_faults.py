"""Shared pieces of the results-store fault tests: a full-disk error, a store opened with short
timeouts, and a second process holding ``BEGIN EXCLUSIVE`` on the database."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from collections import namedtuple
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.station.store import ResultsStore

REPO = Path(__file__).resolve().parents[2]
Usage = namedtuple("Usage", "total used free")


def full_error(message: str = "database or disk is full") -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorcode = 13  # SQLITE_FULL, as SQLite sets it
    return exc


def insert_full(self: ResultsStore, rows: object) -> list[int]:
    """Stands in for ResultsStore._insert_rows on a full disk."""
    raise full_error()


@pytest.fixture
def alarms() -> list[str]:
    return []


def open_store(tmp_path: Path, alarms: list[str] | None = None, **kw: object) -> ResultsStore:
    kw.setdefault("busy_timeout_ms", 20)
    kw.setdefault("open_timeout_ms", 100)
    kw.setdefault("retry_interval_s", 0)
    return ResultsStore(
        tmp_path / "results.db",
        tmp_path / "archive",
        on_alarm=None if alarms is None else alarms.append,
        **kw,  # type: ignore[arg-type]
    )


# -- another process holds the database ------------------------------------------------------


class Locker:
    """A second process holding ``BEGIN EXCLUSIVE`` on the database until :meth:`release`."""

    def __init__(self, db: Path) -> None:
        script = textwrap.dedent(
            """
            import sqlite3, sys
            conn = sqlite3.connect(sys.argv[1], isolation_level=None)
            conn.execute("BEGIN EXCLUSIVE")
            print("locked", flush=True)
            sys.stdin.readline()
            conn.execute("COMMIT")
            conn.close()
            """
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, str(db)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "locked"

    def release(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.write("\n")
            self.proc.stdin.flush()
            assert self.proc.wait(timeout=10) == 0


@pytest.fixture
def locker_factory() -> Iterator[type[Locker]]:
    made: list[Locker] = []

    class _Tracked(Locker):
        def __init__(self, db: Path) -> None:
            super().__init__(db)
            made.append(self)

    yield _Tracked
    for lk in made:
        if lk.proc.poll() is None:
            lk.proc.kill()
            lk.proc.wait()

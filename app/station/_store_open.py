"""Opening the results database safely, and watching free disk space.

Kept apart from :mod:`app.station.store` so the start-up decisions read in one place:

- the store's connections (:class:`Connections`);
- which SQLite errors mean "try again later" (locked, busy, full, I/O) and which mean "this file
  is broken" (malformed, not a database);
- the integrity check at open (``PRAGMA quick_check``), moving a malformed file aside with its
  ``-wal`` / ``-shm``, creating or migrating the schema;
- free space, checked at most every few seconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.station import _store_schema as sch

log = logging.getLogger(__name__)

# SQLite primary result codes (https://sqlite.org/rescode.html)
_BUSY, _LOCKED, _IOERR, _CORRUPT, _FULL, _NOTADB = 5, 6, 10, 11, 13, 26
_MALFORMED_TEXT = ("malformed", "not a database", "file is encrypted")


class SchemaTooNew(Exception):
    """The file was written by a newer station (refuse: we could damage it)."""


class Malformed(Exception):
    """The database file fails its integrity check."""


class Connections:
    """The store's SQLite connections: one writer (shared by threads, used under the store's
    write lock) and one reader per thread (``threading.local``: in WAL mode readers never wait
    for the writer). :meth:`close_all` closes every one; a thread's next :meth:`reader` call
    then opens a new connection (after a malformed file was replaced) or fails (after close).
    ``check_same_thread=False`` only so that :meth:`close_all` can close them all."""

    def __init__(self, db_path: Path, busy_timeout_ms: int) -> None:
        self.db_path = db_path
        self.busy_timeout_ms = busy_timeout_ms
        self.closed = False
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._gen = 0  # bumped by close_all: thread-local connections reopen
        self._writer: sqlite3.Connection | None = None

    def connect(self, timeout_ms: int) -> sqlite3.Connection:
        # isolation_level=None: autocommit, transactions are explicit BEGIN ... COMMIT.
        conn = sqlite3.connect(
            self.db_path, timeout=timeout_ms / 1000, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {int(timeout_ms)}")
        # WAL + NORMAL survives an application crash; a power cut may lose the last commits.
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _register(self, conn: sqlite3.Connection) -> sqlite3.Connection:
        with self._lock:
            self._all.append(conn)
        return conn

    def reader(self) -> sqlite3.Connection:
        """This thread's reading connection (``sqlite3.ProgrammingError`` once closed)."""
        conn = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "gen", -1) != self._gen:
            if self.closed:
                raise sqlite3.ProgrammingError("results store is closed")
            conn = self._register(self.connect(self.busy_timeout_ms))
            self._local.conn, self._local.gen = conn, self._gen
        return conn

    def writer(self) -> sqlite3.Connection:
        if self._writer is None:
            if self.closed:
                raise sqlite3.ProgrammingError("results store is closed")
            self._writer = self._register(self.connect(self.busy_timeout_ms))
        return self._writer

    def close_all(self, *, final: bool = False) -> None:
        with self._lock:
            self.closed = self.closed or final
            self._gen += 1
            for conn in self._all:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._all.clear()
            self._writer = None


def error_code(exc: BaseException) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else int(code) & 0xFF


def is_malformed(exc: BaseException) -> bool:
    code = error_code(exc)
    if code is not None:
        return code in (_CORRUPT, _NOTADB)
    return any(t in str(exc).lower() for t in _MALFORMED_TEXT)


def is_row_error(exc: BaseException) -> bool:
    """The database refused this row itself (a constraint, a value it cannot bind): retrying
    will never help, and the rows behind it must not wait for it."""
    if isinstance(exc, sqlite3.IntegrityError | OverflowError | TypeError | ValueError):
        return True
    return isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError) and (
        "binding" in str(exc).lower()
    )


def is_full(exc: BaseException) -> bool:
    code = error_code(exc)
    return code == _FULL if code is not None else "disk is full" in str(exc).lower()


def is_transient(exc: BaseException) -> bool:
    """Locked, busy, full or an I/O error: the database may work again later."""
    code = error_code(exc)
    if code is not None:
        return code in (_BUSY, _LOCKED, _IOERR, _FULL)
    text = str(exc).lower()
    return any(t in text for t in ("locked", "busy", "disk is full", "disk i/o error"))


def prepare(conn: sqlite3.Connection, db_path: Path) -> None:
    """Check, then create or migrate the schema on ``conn`` (autocommit connection).

    Raises
    ------
    Malformed
        ``quick_check`` failed or SQLite reports a malformed file.
    SchemaTooNew
        ``user_version`` is newer than :data:`~app.station._store_schema.DB_SCHEMA_VERSION`.
    sqlite3.Error
        Anything else (a lock: the caller retries later).
    """
    try:
        rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.DatabaseError as exc:
        if is_malformed(exc):
            raise Malformed(str(exc)) from None
        raise
    if [r[0] for r in rows] != ["ok"]:
        text = " ".join(" ".join(str(r[0]) for r in rows[:3]).split())
        raise Malformed(text[:200] + ("…" if len(text) > 200 else ""))
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > sch.DB_SCHEMA_VERSION:
        raise SchemaTooNew(
            f"{db_path}: database schema {version} is newer than this station "
            f"({sch.DB_SCHEMA_VERSION}); use a newer station or another database file"
        )
    # Only write when something changes: an up-to-date database opens without the write lock,
    # so a station starts while another process holds it (its rows wait in the journal).
    if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        conn.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file
    if version == sch.DB_SCHEMA_VERSION:
        return
    has_table = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'inspections'"
    ).fetchone()
    script = sch.migration_script(version, bool(has_table))
    try:
        conn.executescript(
            f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {sch.DB_SCHEMA_VERSION};\nCOMMIT;"
        )
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    if has_table:
        log.info("results store: %s migrated from schema %d", db_path, version)


@dataclass(frozen=True)
class OpenOutcome:
    """``error`` None: ready for rows. Else why not; ``fatal`` is set when the station must
    not start on this file (a newer schema, an unusable path, a malformed file kept)."""

    error: BaseException | None = None
    fatal: str | None = None


def open_database(
    conns: Connections, timeout_ms: int, *, repair: bool, alarm: Callable[[str], None]
) -> OpenOutcome:
    """Check and prepare ``conns.db_path`` (:func:`prepare`); a malformed file is moved aside
    (when ``repair``) and a fresh one prepared, with an alarm."""
    db_path = conns.db_path
    moved = False
    while True:
        try:
            conn = conns.connect(timeout_ms)
            try:
                prepare(conn, db_path)
            finally:
                conn.close()
            return OpenOutcome()
        except SchemaTooNew as exc:
            return OpenOutcome(exc, str(exc))
        except (Malformed, sqlite3.DatabaseError) as exc:
            if not (isinstance(exc, Malformed) or is_malformed(exc)):
                fatal = f"{db_path}: cannot open results database ({exc})"
                return OpenOutcome(exc, None if is_transient(exc) else fatal)
            message = f"results database {db_path} is malformed ({exc})"
            if not repair or moved:  # kept: the caller refuses to start / keeps journaling
                return OpenOutcome(exc, message)
            conns.close_all()
            try:
                target = move_aside(db_path)
            except OSError as move_exc:
                return OpenOutcome(exc, f"{message} and cannot be moved aside ({move_exc})")
            moved = True
            alarm(f"{message}; moved aside to {target.name}, a fresh database started")


def move_aside(db_path: Path) -> Path:
    """Rename a malformed database (with its -wal / -shm) to
    ``NAME.malformed-YYYYmmdd-HHMMSS`` and return the new name of the main file."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = db_path.with_name(f"{db_path.name}.malformed-{stamp}")
    n = 1
    while target.exists():
        target = db_path.with_name(f"{db_path.name}.malformed-{stamp}-{n}")
        n += 1
    # The -wal first: a fresh database must never pick up the old file's log.
    for suffix in ("-wal", "-shm", ""):
        src = Path(f"{db_path}{suffix}")
        if src.exists():
            os.replace(src, f"{target}{suffix}")
    return target


def existing_dir(path: Path) -> Path:
    """``path`` or its nearest existing ancestor (what ``disk_usage`` can be asked about)."""
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    return p


def free_mb(path: Path) -> float | None:
    """Free megabytes (MiB) on the file system holding ``path``, or None when unknown."""
    try:
        return shutil.disk_usage(existing_dir(path)).free / (1 << 20)
    except OSError as exc:
        log.warning("results store: free space of %s unknown: %s", path, exc)
        return None


class DiskGuard:
    """Free space under a folder, asked at most every ``interval_s`` seconds (a ``statvfs`` per
    frame would be cheap, but not free on a network share)."""

    def __init__(self, path: Path, interval_s: float = 5.0) -> None:
        self.path = path
        self.interval_s = float(interval_s)
        self._next = 0.0
        self._free: float | None = None

    def free_mb(self) -> float | None:
        now = time.monotonic()
        if now >= self._next:
            self._next = now + self.interval_s
            self._free = free_mb(self.path)
        return self._free

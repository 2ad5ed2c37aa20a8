"""Audit trail: who changed what and when, in a hash-chained, append-only table.

The table ``audit`` lives in the results database file (its own connection, WAL). Each row holds
the hash of the row before it (``prev_hash``) and its own ``hash`` = SHA-256 over the canonical
JSON of the row's fields followed by ``prev_hash``. So:

- an edited row no longer matches its hash;
- a deleted or reordered row breaks the link (``prev_hash``) of the row after it, and ids jump;
- a deleted *last* row leaves a valid chain, so after every write the newest ``id`` and ``hash``
  are also written to a small file beside the database (``DB.audit-head``); :meth:`verify` checks
  the chain reaches it. Whoever can rewrite both the database and that file can forge history:
  this detects tampering and accidents, it is not a signature.

Triggers refuse UPDATE and DELETE on the table as a first line (a trigger can be dropped; the
chain is the real check).

Failure policy: :meth:`AuditLog.record` never raises for a locked or unwritable database. The row
waits in memory and is retried, in order, by the next ``record`` / :meth:`~AuditLog.flush`;
:meth:`~AuditLog.close` makes a last try and writes what still failed to ``DB.audit-pending.jsonl``
(logged as an error), which the next ``AuditLog`` on that database appends before anything new.

Recommended actions (constants below) and roles: see ``ACTIONS`` and ``ROLES``.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.station._atomic import atomic_write_text
from app.station._audit_chain import (
    _SELECT_ALL,
    COLUMNS,
    GENESIS,
    AuditCheck,
    AuditError,
    _check_rows,
    _head_path,
    _pending_path,
    _read_head,
    row_hash,
    verify_database,
)

__all__ = [
    "ACTIONS",
    "ROLES",
    "AuditCheck",
    "AuditError",
    "AuditLog",
    "AuditRow",
    "verify_database",
]

log = logging.getLogger(__name__)

# -- recommended action names (the lead's session calls record() with these) ---------------------
RULES_CHANGE = "rules.change"  # target: rule key or "rules"; old -> new values
ZONES_CHANGE = "zones.change"  # old -> new zone list
RECIPE_SAVE = "recipe.save"  # target: recipe path; new: version
RECIPE_SELECT = "recipe.select"  # target: recipe name; old -> new
MODEL_DEPLOY = "model.deploy"  # old -> new model id; detail: the comparison that was shown
MODEL_ROLLBACK = "model.rollback"  # old -> new model id; detail: the comparison / reason
LOGIN = "login"  # an engineer / technician unlocked editing
LOGIN_FAILED = "login.failed"  # a wrong PIN or password (detail: where from)
LOGOUT = "logout"
STATION_START = "station.start"
STATION_STOP = "station.stop"
STATION_FAULT = "station.fault"  # detail: {"reason": ...}
SETTINGS_CHANGE = "settings.change"
REMOTE_COMMAND = "remote.command"  # a PLC / OPC UA / Modbus client's method call

ACTIONS: tuple[str, ...] = (
    RULES_CHANGE,
    ZONES_CHANGE,
    RECIPE_SAVE,
    RECIPE_SELECT,
    MODEL_DEPLOY,
    MODEL_ROLLBACK,
    LOGIN,
    LOGIN_FAILED,
    LOGOUT,
    STATION_START,
    STATION_STOP,
    STATION_FAULT,
    SETTINGS_CHANGE,
    REMOTE_COMMAND,
)
ROLES: tuple[str, ...] = ("operator", "engineer", "technician", "plc", "system")


SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    id        INTEGER PRIMARY KEY,
    time      REAL    NOT NULL,  -- Unix seconds (UTC)
    role      TEXT    NOT NULL,
    user      TEXT,
    action    TEXT    NOT NULL,
    target    TEXT,
    old       TEXT,              -- JSON
    new       TEXT,              -- JSON
    detail    TEXT,              -- JSON
    prev_hash TEXT    NOT NULL,
    hash      TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_action ON audit(action);
CREATE INDEX IF NOT EXISTS audit_time ON audit(time);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
"""


@dataclass(frozen=True)
class AuditRow:
    """One audit entry; ``old``, ``new`` and ``detail`` are decoded JSON values."""

    id: int
    time: float
    role: str
    user: str | None
    action: str
    target: str | None
    old: Any
    new: Any
    detail: Any
    prev_hash: str
    hash: str


def _json(value: Any) -> str | None:
    if value is None:
        return None
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return _utf8(text)


def _utf8(text: str | None) -> str | None:
    """SQLite TEXT must be valid UTF-8: a non-UTF-8 path (surrogate escapes) is shown as \\xNN."""
    if text is None:
        return None
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _to_row(r: tuple[Any, ...]) -> AuditRow:
    def load(text: str | None) -> Any:
        if text is None:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return text  # an edited, non-JSON cell is still shown (verify reports it)

    return AuditRow(
        int(r[0]), float(r[1]), r[2], r[3], r[4], r[5], load(r[6]), load(r[7]), load(r[8]),
        r[9], r[10],
    )  # fmt: skip


class AuditLog:
    """The station's audit trail in ``db_path`` (table ``audit``, created when missing).

    Parameters
    ----------
    db_path
        The results database file (created with its folder if missing).
    busy_timeout_ms
        How long a write waits for another writer's lock before the row is queued in memory.

    Raises
    ------
    AuditError
        The database cannot be opened or the table cannot be created.
    """

    def __init__(self, db_path: str | os.PathLike[str], *, busy_timeout_ms: int = 500) -> None:
        self.db_path = Path(db_path)
        self.busy_timeout_ms = int(busy_timeout_ms)
        self._lock = threading.RLock()
        self._pending: deque[tuple[Any, ...]] = deque()  # (time, role, user, action, ...) JSONed
        self._closed = False
        self._last_warn = 0.0
        self._replaying = False  # entries from the pending file are waiting in memory
        try:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(
                self.db_path,
                timeout=self.busy_timeout_ms / 1000,
                isolation_level=None,
                check_same_thread=False,  # used under self._lock from any thread
            )
            self._conn.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise AuditError(f"{self.db_path}: cannot open the audit trail ({exc})") from None
        self._load_pending_file()

    # -- writing -----------------------------------------------------------------------------

    def record(
        self,
        role: str,
        action: str,
        *,
        user: str | None = None,
        target: str | None = None,
        old: Any = None,
        new: Any = None,
        detail: Any = None,
    ) -> bool:
        """Append one entry; True when it is in the database, False when it waits in memory.

        ``old``, ``new`` and ``detail`` are stored as JSON (anything else as its ``str``).
        """
        entry = (
            time.time(), _utf8(role), _utf8(user), _utf8(action), _utf8(target),
            _json(old), _json(new), _json(detail),
        )  # fmt: skip
        with self._lock:
            if self._closed:  # a late entry during shutdown: keep it for the next start
                self._pending.append(entry)
                self._save_pending("a")
                return False
            self._pending.append(entry)
            return self._flush_locked()

    def flush(self) -> bool:
        """Retry the entries waiting in memory; True when none is left."""
        with self._lock:
            return self._flush_locked()

    @property
    def pending(self) -> int:
        """Entries waiting in memory for the database."""
        return len(self._pending)

    def _flush_locked(self) -> bool:
        while self._pending:
            try:
                self._insert(self._pending[0])
            except sqlite3.Error as exc:
                now = time.monotonic()
                if now - self._last_warn >= 5.0:
                    self._last_warn = now
                    log.warning(
                        "audit trail: cannot write to %s (%s); %d entries wait in memory",
                        self.db_path, exc, len(self._pending),
                    )  # fmt: skip
                return False
            self._pending.popleft()
        if self._replaying:  # everything the pending file held is in the database now
            self._replaying = False
            _pending_path(self.db_path).unlink(missing_ok=True)
            log.info("audit trail: entries kept from an earlier run written to %s", self.db_path)
        return True

    def _insert(self, entry: tuple[Any, ...]) -> None:
        conn = self._conn
        # IMMEDIATE: take the write lock before reading the last hash, so two writers (two
        # processes on one database) cannot both chain onto the same row.
        conn.execute("BEGIN IMMEDIATE")
        try:
            last = conn.execute("SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1").fetchone()
            rid, prev = (int(last[0]) + 1, str(last[1])) if last else (1, GENESIS)
            fields = (rid, *entry)
            digest = row_hash(fields, prev)
            conn.execute(
                f"INSERT INTO audit ({', '.join(COLUMNS)}, prev_hash, hash) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (*fields, prev, digest),
            )
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        try:
            atomic_write_text(_head_path(self.db_path), json.dumps({"id": rid, "hash": digest}))
        except OSError as exc:  # the row is stored; only the tail-truncation check is weaker
            log.warning("audit trail: cannot write %s (%s)", _head_path(self.db_path), exc)

    def _load_pending_file(self) -> None:
        path = _pending_path(self.db_path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return
        except OSError as exc:
            log.error("audit trail: cannot read %s (%s)", path, exc)
            return
        loaded: list[tuple[Any, ...]] = []
        for n, line in enumerate(lines, 1):
            try:
                entry = tuple(json.loads(line))
            except ValueError:
                entry = ()
            if len(entry) == 8:
                loaded.append(entry)
            elif line.strip():  # a torn last line after a crash: say so, keep the rest
                log.error("audit trail: %s line %d unreadable, skipped: %r", path, n, line)
        with self._lock:
            self._pending.extendleft(reversed(loaded))
            self._replaying = True  # the file goes when they are all written (_flush_locked)
            self._flush_locked()

    # -- reading -----------------------------------------------------------------------------

    def rows(
        self, since: float | None = None, action: str | None = None, limit: int | None = 1000
    ) -> list[AuditRow]:
        """Entries, newest first; ``since`` = Unix time, ``action`` = exact action name."""
        where: list[str] = []
        params: list[float | str] = []
        if since is not None:
            where.append("time >= ?")
            params.append(since)
        if action:
            where.append("action = ?")
            params.append(action)
        sql = f"SELECT {', '.join(COLUMNS)}, prev_hash, hash FROM audit"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._lock:
            try:
                return [_to_row(r) for r in self._conn.execute(sql, params).fetchall()]
            except sqlite3.Error as exc:
                raise AuditError(f"{self.db_path}: cannot read the audit trail ({exc})") from None

    def actions(self) -> list[str]:
        """Action names present in the table (for a filter), sorted."""
        with self._lock:
            try:
                got = self._conn.execute("SELECT DISTINCT action FROM audit").fetchall()
            except sqlite3.Error as exc:
                raise AuditError(f"{self.db_path}: cannot read the audit trail ({exc})") from None
        return sorted(str(r[0]) for r in got)

    def verify(self) -> AuditCheck:
        """Walk the whole chain: the first edited, deleted or reordered row, or ok."""
        with self._lock:
            self._flush_locked()
            try:
                rows = self._conn.execute(_SELECT_ALL).fetchall()
            except sqlite3.Error as exc:
                raise AuditError(f"{self.db_path}: cannot read the audit trail ({exc})") from None
        return _check_rows(rows, _read_head(self.db_path))

    def export_csv(self, path: str | os.PathLike[str]) -> int:
        """Write every entry (oldest first, with hashes) as CSV, atomically; returns the count."""
        with self._lock:
            self._flush_locked()
            try:
                rows = self._conn.execute(_SELECT_ALL).fetchall()
            except sqlite3.Error as exc:
                raise AuditError(f"{self.db_path}: cannot read the audit trail ({exc})") from None
        return write_csv(rows, path)

    # -- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        """Last try to write what waits; what still fails goes to the pending file (logged)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if not self._flush_locked():
                self._save_pending("w")  # memory holds all the file held and is not written
            with contextlib.suppress(sqlite3.Error):
                self._conn.close()

    def _save_pending(self, mode: str) -> None:
        """Write the waiting entries to the pending file (written at the next open)."""
        path = _pending_path(self.db_path)
        try:
            with path.open(mode, encoding="utf-8") as fh:
                for entry in self._pending:
                    fh.write(json.dumps(list(entry)) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            log.error(
                "audit trail: %d entries could not be written to %s; kept in %s and written "
                "when the station next opens it",
                len(self._pending), self.db_path, path,
            )  # fmt: skip
        except OSError as exc:  # last resort: the entries go to the log, at least
            log.error(
                "audit trail: %d entries LOST (database %s and %s unwritable: %s): %s",
                len(self._pending), self.db_path, path, exc, list(self._pending),
            )  # fmt: skip
        self._pending.clear()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_csv(rows: list[tuple[Any, ...]], path: str | os.PathLike[str]) -> int:
    """CSV of raw audit rows (``COLUMNS`` + prev_hash + hash), time also as ISO 8601 UTC."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["id", "time", "time_utc", *COLUMNS[2:], "prev_hash", "hash"])
    for r in rows:
        iso = (
            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(r[1]))
            + f".{int(r[1] * 1000) % 1000:03d}Z"
        )
        w.writerow([r[0], repr(float(r[1])), iso, *r[2:]])
    atomic_write_text(path, buf.getvalue())
    return len(rows)

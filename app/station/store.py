"""Results store: every judged frame in SQLite (WAL), NG frames archived as PNG image + mask.

No lost verdict: :meth:`ResultsStore.add` never raises for a locked, full, failing or malformed
database, a full disk or an unwritable archive. A row SQLite refuses goes to an append-only
journal beside the database (``DB.journal.jsonl``: JSON lines, fsync'd in small batches; see
:mod:`app.station.journal`), replayed in order by the next ``add``, by
:meth:`~ResultsStore.flush`, by a background retry while rows wait, and by the next
``ResultsStore`` on the same database (a crashed run's journal included); a replayed row carries
its journal id, so it is never written twice. Only a row the journal cannot take either (the disk
really full) is lost: counted in ``lost``, logged as an error, raised as an alarm. ``stored``
counts the rows this object wrote, ``journaled`` the rows waiting now; ``failures`` counts write
faults (an insert that went to the journal, a failed archive write), which are not losses.

Start-up: a database whose pages fail ``PRAGMA quick_check`` is moved aside
(``DB.malformed-YYYYmmdd-HHMMSS`` with its -wal / -shm), a fresh one is created and an alarm
raised; a database locked by another process does not stop the start (rows are journaled and the
open is retried); a schema newer than ours, an unusable path or less than ``min_free_mb`` free
space raise :class:`StoreError`. Disk pressure: below ``archive_min_free_mb`` free the NG image
archive stops (verdict rows continue), with an alarm when it stops and when it resumes.

Alarms go to ``on_alarm(message)`` (called on the writing thread, under the store's lock: keep it
short) and the last few stay in ``alarms``.

Threads: ``add`` runs on the pipeline's worker thread while the GUI thread queries; writes go
through one connection under one lock, each reading thread has its own
(:class:`~app.station._store_open.Connections`). The busy timeout is short (``busy_timeout_ms``):
the worker must not wait long on another process's lock, it journals instead. The archive's
layout and rules are in :mod:`app.station._store_archive`; the queries in
:mod:`app.station._store_queries`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from app.station import _store_open as op
from app.station import _store_schema as sch
from app.station._store_archive import NgArchive
from app.station._store_queries import StoreQueries
from app.station._store_replay import JournalReplay
from app.station._store_schema import PreparedRow, StoredInspection
from app.station.inspection import FrameResult
from app.station.journal import append_rejected, close_journals, open_journals

__all__ = ["ResultsStore", "StoreError", "StoredInspection", "SIZE_CLASSES"]

log = logging.getLogger(__name__)
SIZE_CLASSES = sch.SIZE_CLASSES
_LOG_EVERY_S = 5.0  # a locked DB on a 30 fps line must not write 30 warnings a second


class StoreError(RuntimeError):
    """The database cannot be opened or queried (the message names the file)."""


class ResultsStore(JournalReplay, StoreQueries):
    """SQLite results database, its journal and the NG image archive.

    Parameters
    ----------
    db_path
        Database file (created with its folder if missing).
    archive_dir
        Folder of archived NG images and masks (created on first use).
    retention_rows
        Keep only the newest N inspections; older rows and their archived files are deleted.
        None = keep everything.
    archive_ng
        Archive image + mask of NG results (and the image of ERROR results that have one).
    busy_timeout_ms
        How long a write waits for another process's lock before the row is journaled.
    open_timeout_ms
        How long the first open waits for a lock before starting with the journal.
    min_free_mb
        Refuse to start with less free space (MiB) on the database's file system.
    archive_min_free_mb
        Stop archiving images below this free space (MiB) on the archive's file system.
    on_alarm
        Called with each alarm message (database unavailable / back, malformed database moved
        aside, archive stopped / resumed, results lost).
    retry_interval_s
        Least time between two attempts to write journaled rows.
    disk_check_s
        Least time between two free-space checks.
    journal_sync_every, journal_sync_s
        fsync the journal after this many rows or this many seconds.
    repair
        Move a malformed database aside and start a fresh one (False: raise StoreError, for
        tools that only read, such as a CSV export).

    Raises
    ------
    StoreError
        The database cannot be opened or created (unusable path, newer schema, not enough free
        space).
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        archive_dir: str | os.PathLike[str],
        *,
        retention_rows: int | None = None,
        archive_ng: bool = True,
        busy_timeout_ms: int = 250,
        open_timeout_ms: int = 2000,
        min_free_mb: float = 200.0,
        archive_min_free_mb: float = 1000.0,
        on_alarm: Callable[[str], None] | None = None,
        retry_interval_s: float = 1.0,
        disk_check_s: float = 5.0,
        journal_sync_every: int = 32,
        journal_sync_s: float = 0.5,
        repair: bool = True,
    ) -> None:
        if retention_rows is not None and retention_rows < 1:
            raise ValueError(f"retention_rows must be >= 1 or None, not {retention_rows}")
        self.db_path = Path(db_path)
        self.archive_dir = Path(archive_dir)
        self.retention_rows = retention_rows
        self.archive_ng = archive_ng
        self.busy_timeout_ms = int(busy_timeout_ms)
        self.min_free_mb = float(min_free_mb)
        self.archive_min_free_mb = float(archive_min_free_mb)
        self.retry_interval_s = float(retry_interval_s)
        self.repair = repair
        self.stored = 0  # rows written by this object (journal replays included)
        self.lost = 0  # rows neither written nor journaled
        self.failures = 0  # write faults: inserts that went to the journal + archive failures
        self.alarms: deque[str] = deque(maxlen=20)
        self._on_alarm = on_alarm
        self._write_lock = threading.RLock()
        self._db = op.Connections(self.db_path, self.busy_timeout_ms)
        self._last_log = 0.0
        self._last_failure = -math.inf  # monotonic time of the last database failure
        self._ready = False  # schema checked and in place
        self._outage = False  # an alarm says the database is unavailable
        self._losing = False  # an alarm says rows are being lost
        self._closed = False
        self._retry_thread: threading.Thread | None = None
        self._retry_stop = threading.Event()
        try:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"{self.db_path}: cannot open results database ({exc})") from None
        free = op.free_mb(self.db_path.parent)
        if free is not None and free < self.min_free_mb:
            raise StoreError(
                f"{self.db_path}: only {free:.0f} MB free on {op.existing_dir(self.db_path.parent)},"
                f" below the floor of {self.min_free_mb:.0f} MB (setting min_free_mb): free some"
                " space or move data_dir before starting the line"
            )
        self._archive = NgArchive(
            self.archive_dir,
            min_free_mb=archive_min_free_mb,
            check_s=disk_check_s,
            alarm=self._alarm,
        )
        try:
            self._journals = open_journals(
                self.db_path, sync_every=journal_sync_every, sync_interval_s=journal_sync_s
            )
        except OSError as exc:
            raise StoreError(f"{self.db_path}: cannot open the results journal ({exc})") from None
        self._journal = self._journals[-1]  # ours; the others are leftovers of dead processes
        torn = sum(j.bad for j in self._journals)
        if torn:  # the crashed run could not report it: this run does (and counts it)
            self.lost += torn
            self._alarm(f"{torn} result(s) of an earlier run lost: journal line torn by a crash")
        try:
            self._open_db(max(self.busy_timeout_ms, int(open_timeout_ms)), initial=True)
            with self._write_lock:
                if self.journaled:
                    log.info("results store: %d journaled results to write", self.journaled)
                    self._replay_locked()
                    self._start_retry()
                if archive_ng:
                    self._archive.allowed()  # an alarm now if the disk is already low
        except BaseException:
            close_journals(self._journals)
            raise

    def _open_db(self, timeout_ms: int, *, initial: bool = False) -> bool:
        """Check and prepare the database; True when it is ready for rows. A transient failure
        (a lock) leaves it not ready for the retry; at start a fatal one raises StoreError."""
        outcome = op.open_database(self._db, timeout_ms, repair=self.repair, alarm=self._alarm)
        if outcome.fatal and initial:
            raise StoreError(outcome.fatal)
        self._ready = outcome.error is None
        if outcome.error is not None:
            self._db_failed(outcome.error)
        return self._ready

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self._db.reader()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.db_path}: query failed ({exc})") from None

    # -- alarms and failures ---------------------------------------------------------------

    def _alarm(self, message: str) -> None:
        log.warning("results store: %s", message)
        self.alarms.append(message)
        if self._on_alarm is not None:
            try:
                self._on_alarm(message)
            except Exception:  # a broken subscriber must not stop the store
                log.exception("results store: alarm callback failed")

    def _warn(self, message: str, *args: Any, level: int = logging.WARNING) -> None:
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_S:
            self._last_log = now
            log.log(level, message, *args)

    def _db_failed(self, exc: BaseException) -> None:
        self._last_failure = time.monotonic()
        if isinstance(exc, sqlite3.Error) and op.is_malformed(exc) and self._ready:
            self._ready = False  # reopened (moved aside) by the next retry
        if isinstance(exc, sqlite3.Error) and op.is_full(exc) and self._ready:
            # The WAL only grows between checkpoints (up to ~4 MB, never shrinking): on a full
            # disk, fold it into the database and truncate it, which frees room for rows.
            with contextlib.suppress(sqlite3.Error):
                self._db.writer().execute("PRAGMA wal_checkpoint(TRUNCATE)")
        if not self._outage:
            self._outage = True
            self._alarm(
                f"results database {self.db_path} unavailable ({exc}); results are kept in the "
                f"journal {self._journal.path.name} and written when it works again"
            )
        else:
            self._warn("results store: %s still unavailable (%s)", self.db_path, exc)

    def _db_back(self) -> None:
        if self._outage:
            self._outage = False
            self._alarm(
                f"results database {self.db_path} available again; journaled results written"
            )

    @property
    def journaled(self) -> int:
        """Results waiting in the journal for the database."""
        return sum(j.pending for j in self._journals)

    @property
    def archive_paused(self) -> bool:
        """The NG archive is stopped because free space is below ``archive_min_free_mb``."""
        return self._archive.paused

    @property
    def archive_failures(self) -> int:
        """Archive writes that failed (the row was stored without images)."""
        return self._archive.failures

    @property
    def archive_skipped(self) -> int:
        """NG / ERROR frames not archived because free space was below the floor."""
        return self._archive.skipped

    # -- writing -----------------------------------------------------------------------------

    def _insert_rows(self, rows: list[PreparedRow]) -> list[int | None]:
        return sch.insert_rows(self._db.writer(), rows)

    def _write_rows(self, rows: list[PreparedRow]) -> list[int | None]:
        """Insert ``rows``; one the database refuses by itself (a constraint, a value it cannot
        bind) is set aside in ``DB.journal.rejected.jsonl`` and counted in ``lost``, so it never
        blocks the rows behind it. Other errors propagate (the caller journals / retries)."""
        try:
            return self._insert_rows(rows)
        except Exception as exc:
            if not op.is_row_error(exc):
                raise
        ids: list[int | None] = []
        for row in rows:  # find the bad one(s); replayed rows carry uids, so no duplicates
            try:
                ids += self._insert_rows([row])
            except Exception as exc:
                if not op.is_row_error(exc):
                    raise
                ids.append(None)
                self.lost += 1
                rejected = append_rejected(self.db_path, row.to_record(row.uid or ""))
                self._alarm(
                    f"result of frame {row.values[0]} refused by the database ({exc}); "
                    f"kept in {rejected}, counted as lost"
                )
        return ids

    def _to_journal(self, row: PreparedRow, *, sync: bool = False) -> None:
        frame_id = row.values[0]
        try:
            self._journal.append(row.to_record(uuid.uuid4().hex))
            if sync:
                self._journal.sync()
        except OSError as exc:
            self.lost += 1
            message = (
                f"result of frame {frame_id} LOST: neither the database nor the journal "
                f"{self._journal.path} can be written ({exc}); lost so far: {self.lost}"
            )
            if not self._losing:
                self._losing = True
                log.error("results store: %s", message)
                self._alarm(message)
            else:  # one error line per few seconds, not one per frame
                self._warn("results store: %s", message, level=logging.ERROR)
            return
        self._losing = False
        self.failures += 1
        self._start_retry()

    def _retry_due(self) -> bool:
        """No database failure in the last ``retry_interval_s``."""
        return time.monotonic() - self._last_failure >= self.retry_interval_s

    def add(self, result: FrameResult, *, recipe_version: int = 0) -> int | None:
        """Store one judged (or ERROR) frame, archiving its image (+ mask) when NG or ERROR.

        Returns
        -------
        int or None
            The new row id, or None when the row went to the journal (database busy, locked,
            full or failing; it is written later) or was lost (see ``lost``).
        """
        with self._write_lock:
            paths: tuple[str | None, str | None] = (None, None)
            if self.archive_ng:
                failed = self._archive.failures
                paths = self._archive.write(result)
                self.failures += self._archive.failures - failed
            row = sch.prepare_row(result, recipe_version, *paths)
            if self._closed:
                log.error(
                    "results store: add() after close(); result of frame %s journaled for the "
                    "next start", result.inspection.frame_id,
                )  # fmt: skip
                self._to_journal(row, sync=True)
                with contextlib.suppress(OSError):
                    self._journal.close()
                return None
            if (self.journaled or not self._ready) and self._retry_due():
                # Older results first, so ids follow acquisition order; a long backlog is left
                # to the retry thread so that this frame is not held up.
                self._replay_locked(max_batches=2)
            if not self.journaled and self._ready:
                try:
                    row_id = self._write_rows([row])[0]
                except sqlite3.Error as exc:
                    self._db_failed(exc)
                else:
                    if row_id is None:  # refused by the database (set aside, counted lost)
                        return None
                    self.stored += 1
                    if self.retention_rows is not None:
                        self._apply_retention()
                    return row_id
            self._to_journal(row)
            return None

    def flush(self) -> int:
        """Write the journaled results now (and fsync the journal); returns how many still
        wait."""
        with self._write_lock:
            if not self._closed:
                if self.journaled:
                    self._replay_locked()
                with contextlib.suppress(OSError):
                    self._journal.sync()
            return self.journaled

    # -- retention ---------------------------------------------------------------------------

    def apply_retention(self) -> int:
        """Delete rows (and archived files) beyond ``retention_rows``; returns rows deleted."""
        if self.retention_rows is None:
            return 0
        with self._write_lock:
            return self._apply_retention()

    # -- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        """Write what is journaled (one last try), fsync and close; what still waits stays in
        the journal file for the next start."""
        self._retry_stop.set()
        thread = self._retry_thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)
        with self._write_lock:
            if self._closed:
                return
            if self.journaled:
                with contextlib.suppress(StoreError, sqlite3.Error):
                    self._replay_locked()
            waiting = self.journaled
            self._closed = True
            close_journals(self._journals)
            if waiting:
                log.warning(
                    "results store: %d results wait in the journal beside %s; they are written "
                    "when the station next opens it", waiting, self.db_path,
                )  # fmt: skip
            self._db.close_all(final=True)

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

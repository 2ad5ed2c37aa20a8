"""Getting journaled results into the database: replay in order, the retry thread, retention.

A mixin of :class:`app.station.store.ResultsStore`, kept apart so the store module holds the
add / flush / close path and this one what runs later, in the background or at the next start.
Every method here runs under the store's write lock (``_replay_locked`` and
``_apply_retention`` are called with it held; the retry thread takes it per turn).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import TYPE_CHECKING, Any

from app.station import _store_schema as sch
from app.station._store_schema import PreparedRow

if TYPE_CHECKING:
    from app.station import _store_open as op
    from app.station._store_archive import NgArchive
    from app.station.journal import Journal

log = logging.getLogger("app.station.store")

REPLAY_BATCH = 256  # rows per transaction when replaying the journal


class JournalReplay:
    """``_replay_locked``, ``_start_retry`` / ``_retry_loop`` and ``_apply_retention``."""

    _closed: bool
    _ready: bool
    _journal: Journal
    _journals: list[Journal]
    _write_lock: threading.RLock
    _retry_stop: threading.Event
    _retry_thread: threading.Thread | None
    _db: op.Connections
    _archive: NgArchive
    busy_timeout_ms: int
    retry_interval_s: float
    retention_rows: int | None
    stored: int
    lost: int

    if TYPE_CHECKING:  # provided by ResultsStore

        def _open_db(self, timeout_ms: int, *, initial: bool = False) -> bool: ...
        def _write_rows(self, rows: list[PreparedRow]) -> list[int | None]: ...
        def _db_failed(self, exc: BaseException) -> None: ...
        def _db_back(self) -> None: ...
        def _retry_due(self) -> bool: ...
        def _warn(self, message: str, *args: Any, level: int = logging.WARNING) -> None: ...
        @property
        def journaled(self) -> int: ...

    def _replay_locked(self, max_batches: int | None = None) -> bool:
        """Write journaled rows in order, at most ``max_batches`` transactions (None: all), so
        the lock is never held for a whole long backlog. True when nothing failed."""
        if not self._ready and not self._open_db(self.busy_timeout_ms):
            return False
        batches = 0
        for journal in self._journals:
            while journal.pending:
                if max_batches is not None and batches >= max_batches:
                    return True
                batches += 1
                try:
                    batch = journal.read(REPLAY_BATCH)
                except OSError as exc:
                    self._warn("results store: journal %s unreadable: %s", journal.path, exc)
                    return False
                if not batch:  # counted lines no longer in the file (changed under us)
                    self.lost += journal.pending
                    log.error(
                        "results store: journal %s lost %d lines (changed by someone else)",
                        journal.path, journal.pending,
                    )  # fmt: skip
                    journal.discard()
                    break
                rows: list[PreparedRow] = []
                for record, _end in batch:
                    try:
                        rows.append(PreparedRow.from_record(record or {}))
                    except (KeyError, TypeError, ValueError):
                        self.lost += 1
                        log.error(
                            "results store: undecodable journal line in %s skipped", journal.path
                        )
                try:
                    ids = self._write_rows(rows)
                except sqlite3.Error as exc:
                    self._db_failed(exc)
                    return False
                self.stored += sum(i is not None for i in ids)
                try:
                    journal.consume(batch[-1][1], len(batch))
                except OSError as exc:  # the rows are in; their uids stop a second insert
                    self._warn("results store: journal %s not truncated: %s", journal.path, exc)
                    return False
        self._db_back()
        if self.retention_rows is not None:
            self._apply_retention()
        return True

    def _start_retry(self) -> None:
        if self._closed or (self._retry_thread is not None and self._retry_thread.is_alive()):
            return
        self._retry_stop.clear()
        self._retry_thread = threading.Thread(
            target=self._retry_loop, name="results-store-retry", daemon=True
        )
        self._retry_thread.start()

    def _retry_loop(self) -> None:
        """While rows wait: fsync the journal when due and retry the database periodically,
        a few transactions per turn of the lock, so ``add`` on the line never waits long."""
        tick = max(0.05, min(self.retry_interval_s, self._journal.sync_interval_s))
        while not self._retry_stop.wait(tick):
            progressed = True
            while progressed and not self._retry_stop.is_set():
                with self._write_lock:
                    if self._closed:
                        return
                    try:
                        self._journal.sync_if_due()
                    except OSError as exc:
                        self._warn("results store: journal fsync failed: %s", exc)
                    progressed = bool(self.journaled) and self._retry_due()
                    if progressed:
                        progressed = self._replay_locked(max_batches=4)
                    if not self.journaled and not self._journal.unsynced:
                        self._retry_thread = None
                        return

    # -- retention ---------------------------------------------------------------------------

    def _apply_retention(self) -> int:
        assert self.retention_rows is not None
        try:
            n, files = sch.delete_oldest(self._db.writer(), self.retention_rows)
        except sqlite3.Error as exc:  # retried after the next add; never fails the add itself
            self._warn("results store: retention skipped (%s)", exc)
            return 0
        self._archive.delete(files)
        return n

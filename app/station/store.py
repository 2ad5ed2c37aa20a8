"""Results store: every judged frame in SQLite (WAL), NG frames archived as PNG image + mask.

Failure policy: :meth:`ResultsStore.add` never raises for a locked database, a full disk or an
unwritable archive. A result that cannot be inserted waits (as a small prepared row, not as
images) in a bounded in-memory queue that the next ``add`` / :meth:`~ResultsStore.flush` retries
in order; an archive write that fails is logged and counted in ``failures`` and the row is stored
with NULL paths. Only when the queue overflows (``pending_max`` rows behind) is the oldest row
dropped, and that is counted in ``lost`` and logged as an error.

Threads: ``add`` runs on the pipeline's worker thread while the GUI thread queries. Each thread
gets its own connection (``threading.local``); in WAL mode readers never wait for the writer, so a
history query cannot stall the line and a slow insert cannot freeze the GUI. Writes go through one
lock so our own writers never contend on SQLite's busy handler; the busy timeout is short
(``busy_timeout_ms``) because the worker must not wait long on another process holding the lock
(it queues instead). Connections are opened with ``check_same_thread=False`` only so that
:meth:`close` can close all of them; each is otherwise used by one thread.

Archive layout: ``ARCHIVE/YYYY-MM-DD/HHMMSS_mmm_f<frame>_<n>_image.png`` and ``..._mask.png``
(local date of the frame's timestamp). The row stores paths relative to the archive dir, so the
data folder can be moved; :class:`StoredInspection` gives them back absolute. The mask is
:func:`~app.station.inspector.binary_mask` of the kept probability map (0/255).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from app.station import _store_schema as sch
from app.station._atomic import atomic_write_bytes, atomic_write_text
from app.station._store_schema import StoredInspection
from app.station.inspection import FrameResult
from app.station.inspector import binary_mask

__all__ = ["ResultsStore", "StoreError", "StoredInspection", "SIZE_CLASSES"]

log = logging.getLogger(__name__)
SIZE_CLASSES = sch.SIZE_CLASSES
_LOG_EVERY_S = 5.0  # a locked DB on a 30 fps line must not write 30 warnings a second


class StoreError(RuntimeError):
    """The database cannot be opened or queried (the message names the file)."""


class ResultsStore:
    """SQLite results database plus the NG image archive.

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
        Archive image + mask of NG results.
    busy_timeout_ms
        How long a write waits for another process's lock before the row is queued.
    pending_max
        Most rows kept in memory while the database is unavailable.

    Raises
    ------
    StoreError
        The database file cannot be opened or created (unusable configuration).
    """

    def __init__(
        self,
        db_path: str | os.PathLike[str],
        archive_dir: str | os.PathLike[str],
        *,
        retention_rows: int | None = None,
        archive_ng: bool = True,
        busy_timeout_ms: int = 250,
        pending_max: int = 10_000,
    ) -> None:
        if retention_rows is not None and retention_rows < 1:
            raise ValueError(f"retention_rows must be >= 1 or None, not {retention_rows}")
        self.db_path = Path(db_path)
        self.archive_dir = Path(archive_dir)
        self.retention_rows = retention_rows
        self.archive_ng = archive_ng
        self.busy_timeout_ms = int(busy_timeout_ms)
        self.failures = 0  # failed inserts (queued) + failed archive writes
        self.lost = 0  # rows dropped because the pending queue overflowed
        self._pending: deque[sch.PreparedRow] = deque()
        self._pending_max = pending_max
        self._write_lock = threading.RLock()
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        self._seq = 0
        self._last_log = 0.0
        self._closed = False
        self._init_db()

    # -- connections -----------------------------------------------------------------------

    def _connect(self, timeout_ms: int) -> sqlite3.Connection:
        # isolation_level=None: autocommit, transactions are explicit BEGIN ... COMMIT.
        conn = sqlite3.connect(
            self.db_path, timeout=timeout_ms / 1000, isolation_level=None, check_same_thread=False
        )
        conn.execute(f"PRAGMA busy_timeout = {int(timeout_ms)}")
        # WAL + NORMAL survives an application crash; a power cut may lose the last commits.
        conn.execute("PRAGMA synchronous = NORMAL")
        return conn

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise StoreError(f"{self.db_path}: results store is closed")
            conn = self._connect(self.busy_timeout_ms)
            self._local.conn = conn
            with self._conns_lock:
                self._conns.append(conn)
        return conn

    def _init_db(self) -> None:
        try:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            # Creating the schema may wait for another process; allow it longer than an insert.
            conn = self._connect(max(self.busy_timeout_ms, 5000))
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > sch.DB_SCHEMA_VERSION:
                    raise StoreError(
                        f"{self.db_path}: database schema {version} is newer than this station "
                        f"({sch.DB_SCHEMA_VERSION})"
                    )
                conn.execute("PRAGMA journal_mode = WAL")  # persistent: stored in the file
                conn.executescript(sch.SCHEMA)
                conn.execute(f"PRAGMA user_version = {sch.DB_SCHEMA_VERSION}")
            finally:
                conn.close()
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(f"{self.db_path}: cannot open results database ({exc})") from None

    @contextlib.contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        try:
            yield self._conn()
        except sqlite3.Error as exc:
            raise StoreError(f"{self.db_path}: query failed ({exc})") from None

    # -- failures ----------------------------------------------------------------------------

    def _warn(self, message: str, *args: Any) -> None:
        now = time.monotonic()
        if now - self._last_log >= _LOG_EVERY_S:
            self._last_log = now
            log.warning(message + " (failures so far: %d)", *args, self.failures)

    def _queue(self, row: sch.PreparedRow) -> None:
        if len(self._pending) >= self._pending_max:
            self._pending.popleft()
            self.lost += 1
            log.error(
                "results store: pending queue full, oldest result dropped (lost %d)", self.lost
            )
        self._pending.append(row)

    @property
    def pending(self) -> int:
        """Results waiting in memory for the database to accept them."""
        return len(self._pending)

    # -- writing -----------------------------------------------------------------------------

    def _archive(self, result: FrameResult) -> tuple[str | None, str | None]:
        ins = result.inspection
        ts = ins.timestamp if ins.timestamp > 0 else time.time()
        local = time.localtime(ts)
        self._seq += 1
        stem = f"{time.strftime('%H%M%S', local)}_{int(ts * 1000) % 1000:03d}_f{ins.frame_id}_{self._seq}"
        rel_image = f"{time.strftime('%Y-%m-%d', local)}/{stem}_image.png"
        rel_mask = rel_image.removesuffix("_image.png") + "_mask.png"
        written: list[Path] = []
        try:
            ok_i, png_image = cv2.imencode(".png", np.ascontiguousarray(result.frame.image))
            ok_m, png_mask = cv2.imencode(".png", binary_mask(result.prob, ins.rules))
            if not (ok_i and ok_m):
                raise OSError("PNG encoding failed")
            for rel, png in ((rel_image, png_image), (rel_mask, png_mask)):
                written.append(atomic_write_bytes(self.archive_dir / rel, png.tobytes()))
        except (OSError, cv2.error) as exc:
            self.failures += 1
            for p in written:  # no orphan image without its mask
                with contextlib.suppress(OSError):
                    p.unlink()
            self._warn("results store: NG archive write to %s failed: %s", self.archive_dir, exc)
            return None, None
        return rel_image, rel_mask

    def _insert(self, row: sch.PreparedRow) -> int:
        conn = self._conn()
        conn.execute("BEGIN IMMEDIATE")
        try:
            row_id = int(conn.execute(sch.INSERT_INSPECTION, row.values).lastrowid or 0)
            conn.executemany(sch.INSERT_DEFECT, [(row_id, *d) for d in row.defects])
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        return row_id

    def _flush_locked(self) -> None:
        while self._pending:
            try:
                self._insert(self._pending[0])
            except sqlite3.Error as exc:
                self._warn("results store: %s still unavailable (%s)", self.db_path, exc)
                return
            self._pending.popleft()

    def add(self, result: FrameResult, *, recipe_version: int = 0) -> int | None:
        """Store one judged frame (archiving image + mask when NG).

        Returns
        -------
        int or None
            The new row id, or None when the row was queued because the database is busy,
            locked or full (it is retried by the next ``add`` or ``flush``).
        """
        with self._write_lock:
            if self._closed:
                self.failures += 1
                log.error(
                    "results store: add() after close(); result of frame %s not stored",
                    result.inspection.frame_id,
                )
                return None
            paths: tuple[str | None, str | None] = (None, None)
            if self.archive_ng and result.inspection.verdict == "NG":
                paths = self._archive(result)
            row = sch.prepare_row(result, recipe_version, *paths)
            try:
                self._flush_locked()  # older results first, so ids follow acquisition order
                if self._pending:
                    raise sqlite3.OperationalError("earlier results still pending")
                row_id = self._insert(row)
            except (sqlite3.Error, StoreError) as exc:
                self.failures += 1
                self._queue(row)
                self._warn("results store: %s unavailable, result queued (%s)", self.db_path, exc)
                return None
            if self.retention_rows is not None:
                self._apply_retention()
            return row_id

    def flush(self) -> int:
        """Retry the queued results now; returns how many are still pending."""
        with self._write_lock:
            if not self._closed:
                self._flush_locked()
            return len(self._pending)

    # -- retention ---------------------------------------------------------------------------

    def _apply_retention(self) -> int:
        assert self.retention_rows is not None
        conn = self._conn()
        try:
            # Ids are never reused (AUTOINCREMENT) and rows are only ever deleted oldest first,
            # so "newest N rows" is "id > max(id) - N": two index lookups per add, where an
            # ORDER BY ... OFFSET N would walk N index entries each time.
            lo, hi = conn.execute("SELECT MIN(id), MAX(id) FROM inspections").fetchone()
            if hi is None or lo > hi - self.retention_rows:
                return 0
            cut = (hi - self.retention_rows,)
            conn.execute("BEGIN IMMEDIATE")
            try:
                files = conn.execute(
                    "SELECT image_path, mask_path FROM inspections WHERE id <= ? "
                    "AND (image_path IS NOT NULL OR mask_path IS NOT NULL)",
                    cut,
                ).fetchall()
                conn.execute("DELETE FROM defects WHERE inspection_id <= ?", cut)
                n = conn.execute("DELETE FROM inspections WHERE id <= ?", cut).rowcount
                conn.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:  # retried after the next add; never fails the add itself
            self._warn("results store: retention skipped (%s)", exc)
            return 0
        for rel in (p for pair in files for p in pair if p):
            path = self.archive_dir / rel
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
            with contextlib.suppress(OSError):  # drop the day folder once it is empty
                path.parent.rmdir()
        return n

    def apply_retention(self) -> int:
        """Delete rows (and archived files) beyond ``retention_rows``; returns rows deleted."""
        if self.retention_rows is None:
            return 0
        with self._write_lock:
            return self._apply_retention()

    # -- queries -----------------------------------------------------------------------------

    def _defects_for(self, conn: sqlite3.Connection, ids: list[int]) -> dict[int, list[Any]]:
        out: dict[int, list[Any]] = {i: [] for i in ids}
        cols = ", ".join(sch.DEFECT_COLUMNS)
        for start in range(0, len(ids), 500):  # stay below SQLite's host-parameter limit
            chunk = ids[start : start + 500]
            marks = ", ".join("?" * len(chunk))
            for row in conn.execute(
                f"SELECT inspection_id, {cols} FROM defects WHERE inspection_id IN ({marks}) "
                "ORDER BY id",
                chunk,
            ):
                out[row[0]].append(sch.defect_from_row(row[1:]))
        return out

    def _select(self, sql_tail: str, params: list[Any]) -> list[StoredInspection]:
        with self._reading() as conn:
            rows = conn.execute(sch.SELECT_INSPECTIONS + sql_tail, params).fetchall()
            defects = self._defects_for(conn, [r[0] for r in rows])
        return [sch.stored_from_row(r, tuple(defects[r[0]]), self.archive_dir) for r in rows]

    def recent(
        self,
        limit: int | None = 200,
        verdict: str | None = None,
        since: float | None = None,
        model_id: str | None = None,
        *,
        until: float | None = None,
    ) -> list[StoredInspection]:
        """Newest inspections first, filtered by verdict ("PASS"/"NG"), time (``since`` <=
        timestamp < ``until``) and model id; ``limit=None`` returns all."""
        where, params = sch.where_clause(
            verdict=verdict, since=since, until=until, model_id=model_id
        )
        tail = f"{where} ORDER BY timestamp DESC, id DESC"
        if limit is not None:
            tail += " LIMIT ?"
            params.append(int(limit))
        return self._select(tail, params)

    def get(self, row_id: int) -> StoredInspection | None:
        """One inspection by id, or None."""
        rows = self._select(" WHERE id = ?", [int(row_id)])
        return rows[0] if rows else None

    def load_archived(
        self, row: StoredInspection | int
    ) -> tuple[NDArray[Any], NDArray[np.uint8]] | None:
        """The archived (image, mask) of a row, or None when not archived or unreadable."""
        stored = self.get(row) if isinstance(row, int) else row
        if stored is None or stored.image_path is None or stored.mask_path is None:
            return None
        try:
            image = cv2.imdecode(np.fromfile(stored.image_path, np.uint8), cv2.IMREAD_UNCHANGED)
            mask = cv2.imdecode(np.fromfile(stored.mask_path, np.uint8), cv2.IMREAD_GRAYSCALE)
        except (OSError, cv2.error) as exc:
            log.warning("results store: archived frame of row %d unreadable: %s", stored.id, exc)
            return None
        if image is None or mask is None:
            return None
        return image, mask

    def yield_series(
        self, bucket_s: float = 3600.0, *, since: float | None = None, until: float | None = None
    ) -> list[tuple[float, int, int]]:
        """``(bucket start time, judged, passed)`` per time bucket of ``bucket_s`` seconds,
        oldest first; empty buckets are left out."""
        if bucket_s <= 0:
            raise ValueError(f"bucket_s must be > 0, not {bucket_s}")
        where, params = sch.where_clause(since=since, until=until)
        sql = (
            "SELECT CAST(timestamp / ? AS INTEGER) AS b, COUNT(*), "
            f"SUM(verdict = 'PASS') FROM inspections{where} GROUP BY b ORDER BY b"
        )
        with self._reading() as conn:
            rows = conn.execute(sql, [float(bucket_s), *params]).fetchall()
        return [(b * float(bucket_s), int(n), int(p or 0)) for b, n, p in rows]

    def defect_pareto(
        self, by: Literal["zone", "size"] = "zone", *, since: float | None = None
    ) -> list[tuple[str, int]]:
        """Defect counts per zone (``"(no zone)"`` outside critical zones) or per size class
        (:data:`SIZE_CLASSES`: <50, 50-200, 200-1000, >=1000 px), largest count first."""
        if by == "zone":
            key = f"COALESCE(d.zone, '{sch.NO_ZONE}')"
        elif by == "size":
            key = sch.size_class_sql().replace("area_px", "d.area_px")
        else:
            raise ValueError(f"defect_pareto by must be 'zone' or 'size', not {by!r}")
        where, params = sch.where_clause(since=since)
        sql = (
            f"SELECT {key} AS k, COUNT(*) AS n FROM defects d "
            f"JOIN inspections i ON i.id = d.inspection_id{where.replace('timestamp', 'i.timestamp')} "
            "GROUP BY k ORDER BY n DESC, k"
        )
        with self._reading() as conn:
            return [(str(k), int(n)) for k, n in conn.execute(sql, params)]

    def export_csv(self, path: str | os.PathLike[str], **filters: Any) -> int:
        """Write inspections (newest first) as CSV, atomically; returns the rows written.

        ``filters`` are those of :meth:`recent` (``verdict``, ``since``, ``until``,
        ``model_id``, ``limit``; default: all rows).
        """
        filters.setdefault("limit", None)
        rows = self.recent(**filters)
        atomic_write_text(path, sch.csv_text(rows))
        return len(rows)

    # -- lifetime ----------------------------------------------------------------------------

    def close(self) -> None:
        """Flush what is pending (one last try; what still fails is logged) and close."""
        with self._write_lock:
            if self._closed:
                return
            with contextlib.suppress(StoreError):
                self._flush_locked()
            if self._pending:
                log.error(
                    "results store: %d results could not be written to %s before closing",
                    len(self._pending), self.db_path,
                )  # fmt: skip
            self._closed = True
            with self._conns_lock:
                for conn in self._conns:
                    with contextlib.suppress(sqlite3.Error):
                        conn.close()
                self._conns.clear()

    def __enter__(self) -> ResultsStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Read side of the results store: history, one row, archived frames, yield, Pareto, CSV.

A mixin of :class:`app.station.store.ResultsStore`, kept apart so the store module holds the
write path (journal, retries, start-up checks) and this one the queries the GUI runs. Every query
goes through ``_reading()`` (the calling thread's own connection; SQLite errors become
``StoreError``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from app.station import _store_schema as sch
from app.station._atomic import atomic_write_text
from app.station._store_schema import StoredInspection

log = logging.getLogger(__name__)


class StoreQueries:
    """Queries over ``inspections`` / ``defects``; needs ``archive_dir`` and ``_reading``."""

    archive_dir: Path

    if TYPE_CHECKING:  # provided by ResultsStore (the calling thread's connection)

        def _reading(self) -> contextlib.AbstractContextManager[sqlite3.Connection]: ...

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
        defect_class: str | None = None,
    ) -> list[StoredInspection]:
        """Newest inspections first, filtered by verdict ("PASS"/"NG"/"ERROR"), time (``since`` <=
        timestamp < ``until``), model id and defect class (rows with a defect of that class);
        ``limit=None`` returns all."""
        where, params = sch.where_clause(
            verdict=verdict, since=since, until=until, model_id=model_id, defect_class=defect_class
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
        """The archived (image, mask) of a row, or None when not archived or unreadable. An
        ERROR frame is archived without a mask: its mask comes back empty (all 0)."""
        stored = self.get(row) if isinstance(row, int) else row
        if stored is None or stored.image_path is None:
            return None
        try:
            image = cv2.imdecode(np.fromfile(stored.image_path, np.uint8), cv2.IMREAD_UNCHANGED)
            if stored.mask_path is None:
                mask = None if image is None else np.zeros(image.shape[:2], np.uint8)
            else:
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
        """``(bucket start time, inspected, passed)`` per time bucket of ``bucket_s`` seconds,
        oldest first; empty buckets are left out. ``inspected`` counts every row, ERROR rows
        included (a frame not judged is not a pass); :meth:`verdict_counts` splits them."""
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

    def verdict_counts(
        self, *, since: float | None = None, until: float | None = None
    ) -> dict[str, int]:
        """Rows per verdict (``PASS``, ``NG``, ``ERROR``; 0 when none) in the time range."""
        where, params = sch.where_clause(since=since, until=until)
        sql = f"SELECT verdict, COUNT(*) FROM inspections{where} GROUP BY verdict"
        out = dict.fromkeys(sch.VERDICTS, 0)
        with self._reading() as conn:
            out.update({str(v): int(n) for v, n in conn.execute(sql, params)})
        return out

    def count(self) -> int:
        """Rows in the database (all processes' rows, not only this object's)."""
        with self._reading() as conn:
            return int(conn.execute("SELECT COUNT(*) FROM inspections").fetchone()[0])

    def defect_pareto(
        self, by: Literal["zone", "size", "class"] = "zone", *, since: float | None = None
    ) -> list[tuple[str, int]]:
        """Defect counts per zone (``"(no zone)"`` outside critical zones), per size class
        (:data:`SIZE_CLASSES`: <50, 50-200, 200-1000, >=1000 px) or per defect class
        (``"(no class)"`` for defects of a one-class model), largest count first."""
        if by == "zone":
            key = f"COALESCE(d.zone, '{sch.NO_ZONE}')"
        elif by == "class":
            key = f"COALESCE(d.class_name, '{sch.NO_CLASS}')"
        elif by == "size":
            key = sch.size_class_sql().replace("area_px", "d.area_px")
        else:
            raise ValueError(f"defect_pareto by must be 'zone', 'size' or 'class', not {by!r}")
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

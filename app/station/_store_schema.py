"""The results database's tables, the rows it stores and the rows it returns.

Kept apart from :mod:`app.station.store` (which does connections, threads, the archive and
failure handling) so the SQL and the (de)serialisation can be read in one place.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.station._recipe_schema import rules_to_dict
from app.station.inspection import Defect, FrameResult

log = logging.getLogger(__name__)

DB_SCHEMA_VERSION = 3  # PRAGMA user_version; bump with a migration when a column changes

# Text columns hold TEXT, or a BLOB of the raw bytes when the value is not valid UTF-8 (a folder
# named b"bad\xff" arrives as a str with surrogate escapes, which SQLite's TEXT cannot hold);
# see :func:`to_db_text`. JSON columns are ASCII (json escapes surrogates reversibly).
_INSPECTIONS_BODY = """(
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    frame_id       INTEGER NOT NULL,
    source         TEXT    NOT NULL,
    timestamp      REAL    NOT NULL,
    verdict        TEXT    NOT NULL CHECK (verdict IN ('PASS', 'NG', 'ERROR')),
    reasons        TEXT    NOT NULL,  -- JSON list of strings
    n_defects      INTEGER NOT NULL,
    total_area_px  INTEGER NOT NULL,
    model_id       TEXT    NOT NULL,
    recipe_version INTEGER NOT NULL,
    threshold      REAL    NOT NULL,
    min_area_px    INTEGER NOT NULL,
    rules          TEXT    NOT NULL,  -- JSON, as in the recipe's [rules] table
    timings        TEXT    NOT NULL,  -- JSON {stage: ms}
    image_path     TEXT,              -- relative to the archive dir; NULL = not archived
    mask_path      TEXT,              -- NULL for NG frames not archived and for ERROR frames
    error          TEXT,              -- why the frame was not judged (verdict ERROR), else NULL
    path           TEXT,              -- the frame's file when it came from one, else NULL
    uid            TEXT               -- journal id of a row written from the journal, else NULL
)"""

_INDEXES = """
CREATE INDEX IF NOT EXISTS inspections_timestamp ON inspections(timestamp);
CREATE INDEX IF NOT EXISTS inspections_verdict ON inspections(verdict);
CREATE INDEX IF NOT EXISTS inspections_model ON inspections(model_id);
CREATE UNIQUE INDEX IF NOT EXISTS inspections_uid ON inspections(uid) WHERE uid IS NOT NULL;
CREATE INDEX IF NOT EXISTS defects_inspection ON defects(inspection_id);
"""

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS inspections {_INSPECTIONS_BODY};
CREATE TABLE IF NOT EXISTS defects (
    id            INTEGER PRIMARY KEY,
    inspection_id INTEGER NOT NULL REFERENCES inspections(id) ON DELETE CASCADE,
    area_px       INTEGER NOT NULL,
    area_mm2      REAL,
    bbox          TEXT    NOT NULL,   -- JSON [x, y, w, h]
    centroid      TEXT    NOT NULL,   -- JSON [x, y]
    max_prob      REAL    NOT NULL,
    mean_prob     REAL    NOT NULL,
    zone          TEXT,
    class_name    TEXT,               -- defect class (multi-class model), else NULL
    class_confidence REAL             -- its mean class probability over the blob, else NULL
);
{_INDEXES}
"""

_V1_COLUMNS = (
    "id, frame_id, source, timestamp, verdict, reasons, n_defects, total_area_px, model_id, "
    "recipe_version, threshold, min_area_px, rules, timings, image_path, mask_path"
)

# v1 -> v2: the verdict CHECK gains 'ERROR' (SQLite cannot alter a CHECK, so the table is rebuilt
# as https://sqlite.org/lang_altertable.html#otheralter describes) and error / path / uid are
# added. Ids and the AUTOINCREMENT counter are kept, so archive names and ids stay unique.
MIGRATE_V1_TO_V2 = f"""
CREATE TABLE inspections_v2 {_INSPECTIONS_BODY};
INSERT INTO inspections_v2 ({_V1_COLUMNS}) SELECT {_V1_COLUMNS} FROM inspections;
UPDATE sqlite_sequence SET seq = MAX(seq, COALESCE(
    (SELECT seq FROM sqlite_sequence WHERE name = 'inspections'), 0)) WHERE name = 'inspections_v2';
INSERT INTO sqlite_sequence (name, seq) SELECT 'inspections_v2', seq FROM sqlite_sequence
    WHERE name = 'inspections'
    AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'inspections_v2');
DROP TABLE inspections;
ALTER TABLE inspections_v2 RENAME TO inspections;
{_INDEXES}
"""

# v2 -> v3: defects gain their class (NULL for rows judged by a one-class model, as before).
MIGRATE_V2_TO_V3 = """
ALTER TABLE defects ADD COLUMN class_name TEXT;
ALTER TABLE defects ADD COLUMN class_confidence REAL;
"""


def migration_script(version: int, has_table: bool) -> str:
    """The SQL that brings a database at schema ``version`` to :data:`DB_SCHEMA_VERSION`
    (the whole schema for a new file)."""
    if not has_table or version < 1:
        return SCHEMA
    steps = {1: MIGRATE_V1_TO_V2, 2: MIGRATE_V2_TO_V3}
    return "\n".join(steps[v] for v in range(max(1, version), DB_SCHEMA_VERSION))


INSPECTION_COLUMNS = (
    "frame_id",
    "source",
    "timestamp",
    "verdict",
    "reasons",
    "n_defects",
    "total_area_px",
    "model_id",
    "recipe_version",
    "threshold",
    "min_area_px",
    "rules",
    "timings",
    "image_path",
    "mask_path",
    "error",
    "path",
)
DEFECT_COLUMNS = (
    "area_px", "area_mm2", "bbox", "centroid", "max_prob", "mean_prob", "zone", "class_name",
    "class_confidence",
)  # fmt: skip
VERDICTS = ("PASS", "NG", "ERROR")

INSERT_INSPECTION = (
    f"INSERT INTO inspections ({', '.join(INSPECTION_COLUMNS)}, uid) "
    f"VALUES ({', '.join('?' * len(INSPECTION_COLUMNS))}, ?)"
)
INSERT_DEFECT = (
    f"INSERT INTO defects (inspection_id, {', '.join(DEFECT_COLUMNS)}) "
    f"VALUES (?, {', '.join('?' * len(DEFECT_COLUMNS))})"
)
SELECT_INSPECTIONS = f"SELECT id, {', '.join(INSPECTION_COLUMNS)} FROM inspections"

# Defect size classes for the Pareto chart: (label, lower bound inclusive, upper bound exclusive).
SIZE_CLASSES: tuple[tuple[str, int, int | None], ...] = (
    ("<50 px", 0, 50),
    ("50-200 px", 50, 200),
    ("200-1000 px", 200, 1000),
    (">=1000 px", 1000, None),
)
NO_ZONE = "(no zone)"
NO_CLASS = "(no class)"


def size_class_sql() -> str:
    """SQL CASE expression mapping ``area_px`` to its :data:`SIZE_CLASSES` label."""
    parts = [
        f"WHEN area_px < {hi} THEN '{label}'" for label, _lo, hi in SIZE_CLASSES if hi is not None
    ]
    return f"CASE {' '.join(parts)} ELSE '{SIZE_CLASSES[-1][0]}' END"


@dataclass(frozen=True)
class PreparedRow:
    """One result ready to insert; this (not the FrameResult with its images) is what goes to the
    journal while the database is unavailable. ``values`` follow :data:`INSPECTION_COLUMNS` and
    hold Python str (converted by :func:`db_values` at insert time); ``uid`` is set once the row
    has been journaled, so replaying it twice (crash between commit and journal truncation)
    inserts it once."""

    values: tuple[Any, ...]
    defects: tuple[tuple[Any, ...], ...]
    uid: str | None = None

    def to_record(self, uid: str) -> dict[str, Any]:
        """The journal line's JSON object (columns by name, so old journals stay readable)."""
        return {
            "uid": uid,
            "row": dict(zip(INSPECTION_COLUMNS, self.values, strict=True)),
            "defects": [dict(zip(DEFECT_COLUMNS, d, strict=True)) for d in self.defects],
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> PreparedRow:
        """Inverse of :meth:`to_record`; a column missing from an older journal is NULL."""
        row = record["row"]
        defects = tuple(tuple(d.get(c) for c in DEFECT_COLUMNS) for d in record["defects"])
        return cls(tuple(row.get(c) for c in INSPECTION_COLUMNS), defects, str(record["uid"]))


def _file_path(result: FrameResult) -> str | None:
    p = result.frame.metadata.get("path")
    if p is None or p == "":
        return None
    return os.fspath(p) if isinstance(p, (str, os.PathLike)) else str(p)


def prepare_row(
    result: FrameResult, recipe_version: int, image_path: str | None, mask_path: str | None
) -> PreparedRow:
    ins = result.inspection
    error = ins.error if ins.verdict == "ERROR" else None
    if ins.verdict == "ERROR" and not error:
        error = "; ".join(ins.reasons) or "not judged"  # an ERROR row always says why
    values = (
        int(ins.frame_id),
        ins.source,
        float(ins.timestamp),
        ins.verdict,
        json.dumps(list(ins.reasons)),
        len(ins.defects),
        int(sum(d.area_px for d in ins.defects)),
        ins.model_id,
        int(recipe_version),
        float(ins.rules.threshold),
        int(ins.rules.min_area_px),
        json.dumps(rules_to_dict(ins.rules)),
        json.dumps({k: float(v) for k, v in ins.timings_ms.items()}),
        image_path,
        mask_path,
        error,
        _file_path(result),
    )
    defects = tuple(
        (
            int(d.area_px),
            None if d.area_mm2 is None else float(d.area_mm2),
            json.dumps([int(v) for v in d.bbox]),
            json.dumps([float(v) for v in d.centroid]),
            float(d.max_prob),
            float(d.mean_prob),
            d.zone,
            d.class_name,
            None if d.class_confidence is None else float(d.class_confidence),
        )
        for d in ins.defects
    )
    return PreparedRow(values, defects)


def insert_rows(conn: sqlite3.Connection, rows: list[PreparedRow]) -> list[int | None]:
    """Insert ``rows`` (with their defects) in one transaction on an autocommit connection.
    A journaled row already in the table (its uid found: a replay after a crash between commit
    and journal truncation) is skipped and gives None; the others give their new id."""
    conn.execute("BEGIN IMMEDIATE")
    ids: list[int | None] = []
    try:
        for row in rows:
            if (
                row.uid is not None
                and conn.execute("SELECT 1 FROM inspections WHERE uid = ?", (row.uid,)).fetchone()
            ):
                ids.append(None)
                continue
            cur = conn.execute(INSERT_INSPECTION, (*db_values(row.values), row.uid))
            row_id = int(cur.lastrowid or 0)
            conn.executemany(INSERT_DEFECT, [(row_id, *db_values(d)) for d in row.defects])
            ids.append(row_id)
        conn.execute("COMMIT")
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    return ids


def delete_oldest(conn: sqlite3.Connection, keep: int) -> tuple[int, list[str]]:
    """Delete all but the newest ``keep`` inspections; returns (rows deleted, archive paths of
    the deleted rows, relative)."""
    # Ids are never reused (AUTOINCREMENT) and rows are only ever deleted oldest first, so
    # "newest N rows" is "id > max(id) - N": two index lookups per add, where an
    # ORDER BY ... OFFSET N would walk N index entries each time.
    lo, hi = conn.execute("SELECT MIN(id), MAX(id) FROM inspections").fetchone()
    if hi is None or lo > hi - keep:
        return 0, []
    cut = (hi - keep,)
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
    return n, [from_db_text(p) for pair in files for p in pair if p]


def to_db_text(text: str) -> str | bytes:
    """``text`` as SQLite can hold it losslessly: itself when it is valid UTF-8, else (a file
    name with undecodable bytes, decoded by Python with surrogate escapes) the raw bytes as a
    BLOB. :func:`from_db_text` gives back the identical str."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode("utf-8", "surrogateescape")
        if raw.decode("utf-8", "surrogateescape") == text:
            return raw
    except UnicodeError:
        pass
    # Lone surrogates no file system produces: keep a readable, escaped form (not reversible).
    log.warning("results store: text %r is not representable; stored escaped", text)
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def from_db_text(value: Any) -> Any:
    """Inverse of :func:`to_db_text` (other values pass through)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return value


def db_values(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(to_db_text(v) if isinstance(v, str) else v for v in values)


@dataclass(frozen=True)
class StoredInspection:
    """One row of the ``inspections`` table with its defects.

    ``rules`` is the JSON of the rules that judged it (recipe ``[rules]`` layout);
    ``image_path`` / ``mask_path`` are absolute (None when the frame was not archived; an ERROR
    frame is archived as image only). ``error`` is the reason of an ERROR verdict; ``path`` the
    frame's file when it came from one. Text is exactly what was stored, non-UTF-8 file names
    included (str with surrogate escapes).
    """

    id: int
    frame_id: int
    source: str
    timestamp: float
    verdict: str
    reasons: tuple[str, ...]
    n_defects: int
    total_area_px: int
    model_id: str
    recipe_version: int
    threshold: float
    min_area_px: int
    rules: dict[str, Any] = field(default_factory=dict)
    timings_ms: dict[str, float] = field(default_factory=dict)
    image_path: Path | None = None
    mask_path: Path | None = None
    defects: tuple[Defect, ...] = ()
    error: str | None = None
    path: str | None = None


def defect_from_row(row: tuple[Any, ...]) -> Defect:
    area_px, area_mm2, bbox, centroid, max_prob, mean_prob, zone, class_name, class_conf = row
    return Defect(
        area_px=int(area_px),
        bbox=tuple(json.loads(bbox)),
        centroid=tuple(json.loads(centroid)),
        max_prob=float(max_prob),
        mean_prob=float(mean_prob),
        area_mm2=area_mm2,
        zone=from_db_text(zone),
        class_name=from_db_text(class_name),
        class_confidence=None if class_conf is None else float(class_conf),
    )


def stored_from_row(
    row: tuple[Any, ...], defects: tuple[Defect, ...], archive_dir: Path
) -> StoredInspection:
    (rid, frame_id, source, ts, verdict, reasons, n, total, model_id, rv, thr, min_area,
     rules, timings, image_path, mask_path, error, path) = row  # fmt: skip
    return StoredInspection(
        id=int(rid),
        frame_id=int(frame_id),
        source=from_db_text(source),
        timestamp=float(ts),
        verdict=verdict,
        reasons=tuple(json.loads(reasons)),
        n_defects=int(n),
        total_area_px=int(total),
        model_id=from_db_text(model_id),
        recipe_version=int(rv),
        threshold=float(thr),
        min_area_px=int(min_area),
        rules=json.loads(rules),
        timings_ms=json.loads(timings),
        image_path=None if image_path is None else archive_dir / from_db_text(image_path),
        mask_path=None if mask_path is None else archive_dir / from_db_text(mask_path),
        defects=defects,
        error=from_db_text(error),
        path=from_db_text(path),
    )


def where_clause(
    *,
    verdict: str | None = None,
    since: float | None = None,
    until: float | None = None,
    model_id: str | None = None,
    defect_class: str | None = None,
) -> tuple[str, list[Any]]:
    """``WHERE ...`` (or "") and its parameters for the common filters; ``defect_class`` keeps
    inspections with at least one defect of that class."""
    terms: list[str] = []
    params: list[Any] = []
    if verdict is not None:
        if verdict not in VERDICTS:
            raise ValueError(f"verdict filter must be 'PASS', 'NG' or 'ERROR', not {verdict!r}")
        terms.append("verdict = ?")
        params.append(verdict)
    if since is not None:
        terms.append("timestamp >= ?")
        params.append(float(since))
    if until is not None:
        terms.append("timestamp < ?")
        params.append(float(until))
    if model_id is not None:
        terms.append("model_id = ?")
        params.append(to_db_text(model_id))
    if defect_class is not None:
        terms.append("id IN (SELECT inspection_id FROM defects WHERE class_name = ?)")
        params.append(to_db_text(defect_class))
    return (" WHERE " + " AND ".join(terms) if terms else ""), params


CSV_COLUMNS = (
    "id", "time", "timestamp", "frame_id", "source", "verdict", "reasons", "n_defects",
    "total_area_px", "model_id", "recipe_version", "threshold", "min_area_px",
    "image_path", "mask_path", "error", "path",
)  # fmt: skip


def csv_safe(value: object) -> str:
    """A cell the UTF-8 CSV can hold: undecodable file-name bytes shown as ``\\xff``."""
    text = "" if value is None else str(value)
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogateescape" if _escapable(text) else "backslashreplace")
        return raw.decode("utf-8", "backslashreplace")


def _escapable(text: str) -> bool:
    try:
        text.encode("utf-8", "surrogateescape")
        return True
    except UnicodeError:
        return False


def csv_text(rows: list[StoredInspection]) -> str:
    """CSV of inspections: local ISO time, reasons joined with ``"; "``, absolute paths."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([csv_safe(v) for v in (
            r.id, time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(r.timestamp)),
            f"{r.timestamp:.3f}", r.frame_id, r.source, r.verdict, "; ".join(r.reasons),
            r.n_defects, r.total_area_px, r.model_id, r.recipe_version, r.threshold,
            r.min_area_px, r.image_path or "", r.mask_path or "", r.error, r.path,
        )])  # fmt: skip
    return buf.getvalue()

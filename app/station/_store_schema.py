"""The results database's tables, the rows it stores and the rows it returns.

Kept apart from :mod:`app.station.store` (which does connections, threads, the archive and
failure handling) so the SQL and the (de)serialisation can be read in one place.
"""

from __future__ import annotations

import csv
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.station._recipe_schema import rules_to_dict
from app.station.inspection import Defect, FrameResult

DB_SCHEMA_VERSION = 1  # PRAGMA user_version; bump with a migration when a column changes

SCHEMA = """
CREATE TABLE IF NOT EXISTS inspections (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    frame_id       INTEGER NOT NULL,
    source         TEXT    NOT NULL,
    timestamp      REAL    NOT NULL,
    verdict        TEXT    NOT NULL CHECK (verdict IN ('PASS', 'NG')),
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
    mask_path      TEXT
);
CREATE TABLE IF NOT EXISTS defects (
    id            INTEGER PRIMARY KEY,
    inspection_id INTEGER NOT NULL REFERENCES inspections(id) ON DELETE CASCADE,
    area_px       INTEGER NOT NULL,
    area_mm2      REAL,
    bbox          TEXT    NOT NULL,   -- JSON [x, y, w, h]
    centroid      TEXT    NOT NULL,   -- JSON [x, y]
    max_prob      REAL    NOT NULL,
    mean_prob     REAL    NOT NULL,
    zone          TEXT
);
CREATE INDEX IF NOT EXISTS inspections_timestamp ON inspections(timestamp);
CREATE INDEX IF NOT EXISTS inspections_verdict ON inspections(verdict);
CREATE INDEX IF NOT EXISTS inspections_model ON inspections(model_id);
CREATE INDEX IF NOT EXISTS defects_inspection ON defects(inspection_id);
"""

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
)
DEFECT_COLUMNS = ("area_px", "area_mm2", "bbox", "centroid", "max_prob", "mean_prob", "zone")

INSERT_INSPECTION = (
    f"INSERT INTO inspections ({', '.join(INSPECTION_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(INSPECTION_COLUMNS))})"
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


def size_class_sql() -> str:
    """SQL CASE expression mapping ``area_px`` to its :data:`SIZE_CLASSES` label."""
    parts = [
        f"WHEN area_px < {hi} THEN '{label}'" for label, _lo, hi in SIZE_CLASSES if hi is not None
    ]
    return f"CASE {' '.join(parts)} ELSE '{SIZE_CLASSES[-1][0]}' END"


@dataclass(frozen=True)
class PreparedRow:
    """One result ready to insert; this (not the FrameResult with its images) is what waits in
    the pending queue while the database is locked, so the queue stays small in memory."""

    values: tuple[Any, ...]
    defects: tuple[tuple[Any, ...], ...]


def prepare_row(
    result: FrameResult, recipe_version: int, image_path: str | None, mask_path: str | None
) -> PreparedRow:
    ins = result.inspection
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
        )
        for d in ins.defects
    )
    return PreparedRow(values, defects)


@dataclass(frozen=True)
class StoredInspection:
    """One row of the ``inspections`` table with its defects.

    ``rules`` is the JSON of the rules that judged it (recipe ``[rules]`` layout);
    ``image_path`` / ``mask_path`` are absolute (None when the frame was not archived).
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


def defect_from_row(row: tuple[Any, ...]) -> Defect:
    area_px, area_mm2, bbox, centroid, max_prob, mean_prob, zone = row
    return Defect(
        area_px=int(area_px),
        bbox=tuple(json.loads(bbox)),  # type: ignore[arg-type]
        centroid=tuple(json.loads(centroid)),  # type: ignore[arg-type]
        max_prob=float(max_prob),
        mean_prob=float(mean_prob),
        area_mm2=area_mm2,
        zone=zone,
    )


def stored_from_row(
    row: tuple[Any, ...], defects: tuple[Defect, ...], archive_dir: Path
) -> StoredInspection:
    (rid, frame_id, source, ts, verdict, reasons, n, total, model_id, rv, thr, min_area,
     rules, timings, image_path, mask_path) = row  # fmt: skip
    return StoredInspection(
        id=int(rid),
        frame_id=int(frame_id),
        source=source,
        timestamp=float(ts),
        verdict=verdict,
        reasons=tuple(json.loads(reasons)),
        n_defects=int(n),
        total_area_px=int(total),
        model_id=model_id,
        recipe_version=int(rv),
        threshold=float(thr),
        min_area_px=int(min_area),
        rules=json.loads(rules),
        timings_ms=json.loads(timings),
        image_path=None if image_path is None else archive_dir / image_path,
        mask_path=None if mask_path is None else archive_dir / mask_path,
        defects=defects,
    )


def where_clause(
    *,
    verdict: str | None = None,
    since: float | None = None,
    until: float | None = None,
    model_id: str | None = None,
) -> tuple[str, list[Any]]:
    """``WHERE ...`` (or "") and its parameters for the common filters."""
    terms: list[str] = []
    params: list[Any] = []
    if verdict is not None:
        if verdict not in ("PASS", "NG"):
            raise ValueError(f"verdict filter must be 'PASS' or 'NG', not {verdict!r}")
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
        params.append(model_id)
    return (" WHERE " + " AND ".join(terms) if terms else ""), params


CSV_COLUMNS = (
    "id", "time", "timestamp", "frame_id", "source", "verdict", "reasons", "n_defects",
    "total_area_px", "model_id", "recipe_version", "threshold", "min_area_px",
    "image_path", "mask_path",
)  # fmt: skip


def csv_text(rows: list[StoredInspection]) -> str:
    """CSV of inspections: local ISO time, reasons joined with ``"; "``, absolute paths."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow([
            r.id, time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(r.timestamp)),
            f"{r.timestamp:.3f}", r.frame_id, r.source, r.verdict, "; ".join(r.reasons),
            r.n_defects, r.total_area_px, r.model_id, r.recipe_version, r.threshold,
            r.min_area_px, r.image_path or "", r.mask_path or "",
        ])  # fmt: skip
    return buf.getvalue()

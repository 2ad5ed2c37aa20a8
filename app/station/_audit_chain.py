"""The audit trail's hash chain: how a row is hashed and how the chain is checked.

Kept apart from :mod:`app.station.audit` (which writes the rows and reads them for the GUI) so
the part that decides "intact or tampered" reads in one place and can be checked by anyone with
a read-only connection (``inspection-station audit verify``).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GENESIS = "0" * 64
COLUMNS = ("id", "time", "role", "user", "action", "target", "old", "new", "detail")


class AuditError(RuntimeError):
    """The audit table cannot be opened or read (the message names the file)."""


@dataclass(frozen=True)
class AuditCheck:
    """Result of :meth:`AuditLog.verify`: ``first_bad_id`` is None when ``ok``."""

    ok: bool
    rows: int
    first_bad_id: int | None = None
    reason: str = ""


def row_hash(fields: tuple[Any, ...], prev_hash: str) -> str:
    """SHA-256 of the canonical row (``COLUMNS`` order, JSON columns as stored) + ``prev_hash``."""
    canonical = json.dumps(list(fields), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((canonical + prev_hash).encode("utf-8", "surrogatepass")).hexdigest()


def _head_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".audit-head")


def _pending_path(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".audit-pending.jsonl")


def _read_head(db_path: Path) -> tuple[int, str] | None:
    try:
        data = json.loads(_head_path(db_path).read_text(encoding="utf-8"))
        return int(data["id"]), str(data["hash"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AuditError(f"{_head_path(db_path)}: unreadable audit head ({exc})") from None


def _check_rows(rows: list[tuple[Any, ...]], head: tuple[int, str] | None) -> AuditCheck:
    """Walk the chain (rows in id order, each COLUMNS + prev_hash + hash)."""
    expected_prev, last_id = GENESIS, 0
    for row in rows:
        fields, prev, stored = tuple(row[:9]), row[9], row[10]
        rid = int(row[0])
        if rid != last_id + 1:
            return AuditCheck(False, len(rows), rid, f"row(s) {last_id + 1}..{rid - 1} missing")
        if prev != expected_prev:
            return AuditCheck(
                False, len(rows), rid, "link to the previous row broken (row deleted or moved)"
            )
        if row_hash(fields, prev) != stored:
            return AuditCheck(False, len(rows), rid, "row content does not match its hash (edited)")
        expected_prev, last_id = stored, rid
    if head is not None:
        head_id, head_hash = head
        if last_id < head_id:
            return AuditCheck(
                False, len(rows), last_id + 1, f"rows {last_id + 1}..{head_id} missing at the end"
            )
        if last_id >= head_id and not any(
            int(r[0]) == head_id and r[10] == head_hash for r in rows
        ):
            return AuditCheck(
                False, len(rows), head_id, "row does not match the recorded head (edited)"
            )
    return AuditCheck(True, len(rows))


_SELECT_ALL = f"SELECT {', '.join(COLUMNS)}, prev_hash, hash FROM audit ORDER BY id"


def verify_database(db_path: str | os.PathLike[str]) -> AuditCheck:
    """Check the audit chain of ``db_path`` without writing to it (read-only connection)."""
    path = Path(db_path)
    if not path.is_file():
        raise AuditError(f"{path}: database not found")
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            has = conn.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit'"
            ).fetchone()
            if not has:
                raise AuditError(f"{path}: no audit table in this database")
            rows = conn.execute(_SELECT_ALL).fetchall()
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise AuditError(f"{path}: cannot read the audit table ({exc})") from None
    return _check_rows(rows, _read_head(path))

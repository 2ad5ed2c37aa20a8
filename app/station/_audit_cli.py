"""``inspection-station audit verify|export``: check and export the audit trail of a database.

``verify`` exits 0 when the chain is intact, 1 with the first bad row when it is not, 2 when the
database or its audit table is missing. ``export`` writes every entry as CSV (exit 0, or 2).
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
from pathlib import Path

from app.station.audit import _SELECT_ALL, AuditError, verify_database, write_csv

__all__ = ["add_parser", "run"]

log = logging.getLogger("inspection-station")

EXIT_TAMPERED = 1
EXIT_CONFIG = 2


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``audit`` with its ``verify`` and ``export`` actions."""
    audit = sub.add_parser("audit", help="verify or export the hash-chained audit trail")
    actions = audit.add_subparsers(dest="audit_action", metavar="ACTION", required=True)
    verify = actions.add_parser("verify", help="exit 0 when intact, 1 with the first bad row")
    verify.add_argument("--db", type=Path, required=True, metavar="FILE", help="results database")
    export = actions.add_parser("export", help="write the audit trail as CSV")
    export.add_argument("--db", type=Path, required=True, metavar="FILE", help="results database")
    export.add_argument("--out", type=Path, required=True, metavar="CSV", help="CSV file to write")


def run(args: argparse.Namespace) -> int:
    """Run the chosen action; returns the exit code."""
    db = Path(args.db).expanduser()
    try:
        if args.audit_action == "verify":
            check = verify_database(db)
            if check.ok:
                print(f"audit trail intact: {check.rows} rows ({db})")
                return 0
            print(f"audit trail BROKEN at row {check.first_bad_id}: {check.reason} ({db})")
            return EXIT_TAMPERED
        if not db.is_file():
            raise AuditError(f"{db}: database not found")
        # Read-only: exporting must not create the table or touch the file.
        conn = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
        try:
            rows = conn.execute(_SELECT_ALL).fetchall()
        finally:
            conn.close()
        n = write_csv(rows, args.out)
    except (AuditError, sqlite3.Error, OSError) as exc:
        log.error("audit %s failed: %s", args.audit_action, exc)
        return EXIT_CONFIG
    log.info("%d audit entries written to %s", n, args.out)
    return 0

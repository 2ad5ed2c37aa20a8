"""``inspection-station set-pin``: store a new engineer PIN (as its scrypt hash) in settings.toml.

The new PIN is read from standard input when that is not a terminal (one line, for scripts and
provisioning: ``echo 4711 | inspection-station set-pin``), else asked twice without echo.
Exit codes: 0 set, 2 refused (PINs differ, too short, unreadable settings file, cannot write).
"""

from __future__ import annotations

import argparse
import getpass
import logging
import sys
from pathlib import Path
from typing import Any, TextIO

log = logging.getLogger("inspection-station")

EXIT_REFUSED = 2


def add_set_pin_parser(sub: Any) -> None:
    """Register ``set-pin`` on the CLI's subparsers."""
    p = sub.add_parser(
        "set-pin", help="set the engineer PIN (stored as a salted hash in settings.toml)"
    )
    p.add_argument(
        "--settings",
        type=Path,
        metavar="FILE",
        help="settings file (default: $INSPECTION_STATION_HOME/settings.toml or "
        "~/.config/inspection-station/settings.toml)",
    )


def _read_new_pin(stdin: TextIO) -> str:
    if not stdin.isatty():
        line = stdin.readline()
        if not line:
            raise ValueError("no PIN on standard input")
        return line.rstrip("\r\n")
    first = getpass.getpass("New engineer PIN: ")
    again = getpass.getpass("Repeat the new PIN: ")
    if first != again:
        raise ValueError("the two PINs differ; nothing changed")
    return first


def cmd_set_pin(args: argparse.Namespace, *, stdin: TextIO | None = None) -> int:
    """Ask for / read the new PIN, hash it and write it into the settings file."""
    from app.station.access import hash_pin, pin_problem
    from app.station.settings import SettingsError, default_settings_path, update_settings_file

    path = args.settings if getattr(args, "settings", None) else default_settings_path()
    try:
        pin = _read_new_pin(sys.stdin if stdin is None else stdin)
    except (ValueError, EOFError) as exc:
        log.error("engineer PIN not set: %s", exc)
        return EXIT_REFUSED
    problem = pin_problem(pin)
    if problem:
        log.error("engineer PIN not set: %s", problem)
        return EXIT_REFUSED
    try:
        update_settings_file(path, {"engineer_pin_hash": hash_pin(pin)}, remove=("engineer_pin",))
    except (SettingsError, OSError) as exc:
        log.error("engineer PIN not set: %s", exc)
        return EXIT_REFUSED
    log.info("engineer PIN set (scrypt hash) in %s", path)
    return 0

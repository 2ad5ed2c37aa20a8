"""``inspection-station``: the GUI by default, or ``run --headless``, ``devices``, ``export-csv``.

Exit codes (docs/cli.md): 0 after a normal run, 2 for an unusable configuration (bad recipe,
missing or refused model, bad source spec, missing database) with the reason on stderr, 3 when
results were lost, 4 when the station stopped in FAULT, 128 + N after signal N (a clean stop).
The GUI is imported only by the commands that open it, so the headless commands work on a
machine without a display or without Qt.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from app.station.settings import Settings

log = logging.getLogger("inspection-station")

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inspection-station",
        description="Industrial defect inspection: frames -> U-Net -> rules -> PASS/NG.",
        epilog="Without a command: the GUI when a display exists, else a headless demo run.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = sub.add_parser("run", help="judge frames without a window (JSON lines on stdout)")
    run.add_argument(
        "--headless", action="store_true", help="no window (required; `gui` opens the window)"
    )
    run.add_argument("--recipe", type=Path, help="recipe TOML (default: the bundled demo)")
    run.add_argument(
        "--source", metavar="SPEC", help="folder:PATH, genicam:DEVICE[@CTI] or video:PATH|INDEX"
    )
    run.add_argument(
        "--model", type=Path, help="model file (.onnx, .engine) instead of the recipe's"
    )
    run.add_argument(
        "--limit", type=int, metavar="N", help="stop after N results (PASS + NG + ERROR)"
    )
    run.add_argument("--db", type=Path, metavar="FILE", help="results database to write")

    devices = sub.add_parser("devices", help="list GenICam devices (Viky simulator fallback)")
    devices.add_argument("--cti", type=Path, action="append", default=[], metavar="FILE")

    export = sub.add_parser("export-csv", help="write the results database as CSV")
    export.add_argument("--db", type=Path, required=True, metavar="FILE")
    export.add_argument("--out", type=Path, required=True, metavar="FILE")

    gui = sub.add_parser("gui", help="open the station window")
    gui.add_argument("--recipe", type=Path, help="recipe TOML (default: the bundled demo)")
    gui.add_argument(
        "--screenshot", type=Path, metavar="PNG", help="run, save the window as PNG and exit"
    )
    gui.add_argument(
        "--frames", type=int, default=20, metavar="N", help="results to wait for (--screenshot)"
    )
    from app.station._audit_cli import add_parser as add_audit_parser

    add_audit_parser(sub)
    from app.station._pin_cli import add_set_pin_parser

    add_set_pin_parser(sub)
    from app.station._recipe_cli import add_parser as add_new_recipe_parser

    add_new_recipe_parser(sub)
    return parser


def has_display(environ: Mapping[str, str] | None = None) -> bool:
    """True when a GUI can open: an X11/Wayland display, or an explicit Qt platform plugin."""
    env = os.environ if environ is None else environ
    return any(env.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))


def _configure_logging() -> None:
    level = os.environ.get("INSPECTION_STATION_LOG", "INFO").upper()
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def _settings() -> Settings:
    # Imported here: `inspection-station --help` should not pay for the core's imports.
    from app.station.settings import load_settings

    return load_settings()


def cmd_run(args: argparse.Namespace) -> int:
    if not args.headless:
        log.error("`run` needs --headless; use `inspection-station gui` to open the window")
        return EXIT_CONFIG
    from app.station.headless import run_headless

    return run_headless(
        args.recipe,
        settings=_settings(),
        source=args.source,
        model=args.model,
        limit=args.limit,
        db=args.db,
    )


def cmd_devices(args: argparse.Namespace) -> int:
    from app.station.sources import SourceError, list_devices

    try:
        devices = list_devices([str(c) for c in args.cti])
    except SourceError as exc:
        log.error("cannot list devices: %s", exc)
        return EXIT_CONFIG
    header = ("#", "id", "serial", "model", "vendor", "tl", "cti")
    rows = [
        (str(d.index), d.id, d.serial, d.model, d.vendor, d.tl_type, Path(d.cti).name)
        for d in devices
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    if not devices:
        log.warning("no GenICam device found")
    return 0


def cmd_export_csv(args: argparse.Namespace) -> int:
    from app.station.store import ResultsStore, StoreError

    db = Path(args.db).expanduser()
    if not db.is_file():  # opening would create an empty database: say it is missing instead
        log.error("results database not found: %s", db)
        return EXIT_CONFIG
    try:
        # Read-only intent: never move a damaged file aside, never refuse for low disk space.
        with ResultsStore(
            db, db.parent / "archive", repair=False, min_free_mb=0, archive_ng=False
        ) as store:
            n = store.export_csv(args.out)
    except (StoreError, OSError) as exc:
        log.error("export failed: %s", exc)
        return EXIT_CONFIG
    log.info("%d inspections written to %s", n, args.out)
    return 0


def cmd_gui(args: argparse.Namespace) -> int:
    if not has_display():  # Qt would abort the process without a word of explanation
        log.error(
            "no display: DISPLAY / WAYLAND_DISPLAY are unset (QT_QPA_PLATFORM=offscreen renders "
            "without one); try `inspection-station run --headless`"
        )
        return EXIT_CONFIG
    try:
        from app.ui.app import run_gui
    except ImportError as exc:  # Qt missing or its system libraries absent
        log.error("cannot open the GUI (%s); try `inspection-station run --headless`", exc)
        return EXIT_CONFIG
    screenshot = getattr(args, "screenshot", None)
    frames = getattr(args, "frames", 0) if screenshot else 0
    return int(run_gui(args.recipe, _settings(), screenshot=screenshot, frames=frames))


def _cmd_audit(args: argparse.Namespace) -> int:
    from app.station._audit_cli import run

    return run(args)


def _cmd_set_pin(args: argparse.Namespace) -> int:
    from app.station._pin_cli import cmd_set_pin

    return cmd_set_pin(args)


def _cmd_new_recipe(args: argparse.Namespace) -> int:
    from app.station._recipe_cli import cmd_new_recipe

    return cmd_new_recipe(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging()
    from app.station.settings import SettingsError

    try:
        if args.command is None:
            if has_display():
                return cmd_gui(argparse.Namespace(recipe=None, screenshot=None, frames=0))
            log.info("no display (DISPLAY / WAYLAND_DISPLAY unset): running the headless demo")
            args = parser.parse_args(["run", "--headless"])
        handlers = {
            "run": cmd_run,
            "devices": cmd_devices,
            "export-csv": cmd_export_csv,
            "gui": cmd_gui,
            "audit": _cmd_audit,
            "set-pin": _cmd_set_pin,
            "new-recipe": _cmd_new_recipe,
        }
        return handlers[args.command](args)
    except SettingsError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG

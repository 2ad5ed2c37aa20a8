"""``python -m app.ui.screenshots``: the Run screen and every workspace as PNGs (``make screenshots``).

Runs the bundled demo in a throw-away data folder (its own settings with a known engineer PIN, so
the engineering workspaces can be opened), waits for real judged frames — a PASS and an NG on the
Run screen — then shows each workspace and grabs the window. Nothing is staged: the pictures show
what the station does on the demo line.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SCREEN_PIN = "2580"  # only for the throw-away settings of this run


def _spin(app: object, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()  # type: ignore[attr-defined]  # a QApplication, passed as object
        time.sleep(0.01)


def _wait(app: object, what: str, pred: Callable[[], bool], timeout_s: float = 60.0) -> None:
    end = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > end:
            raise SystemExit(f"screenshots: gave up waiting for {what}")
        _spin(app, 0.05)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.ui.screenshots")
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parser.add_argument("--size", action="append", default=[], help="WxH (repeatable)")
    parser.add_argument("--suffix", default="", help="added to the file names (e.g. 4k)")
    parser.add_argument("--only", choices=("run", "all"), default="all")
    args = parser.parse_args(argv)
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.size or ["1280x720"]]

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    from app.station.recipe import demo_recipe_path
    from app.station.settings import Settings
    from app.ui.app import Station, build_session

    home = Path(tempfile.mkdtemp(prefix="station-shots-"))
    settings = dataclasses.replace(Settings.defaults(home), engineer_pin=SCREEN_PIN)
    station = Station(build_session(demo_recipe_path(), settings), settings)
    window = station.window
    window.show()
    station.autostart()
    run = window.run_screen

    def showing(kind: str) -> bool:
        banner = window.verdict_panel.banner
        return banner is not None and banner.kind == kind

    args.out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    def grab(name: str, w: int, h: int, settle_s: float = 0.4) -> None:
        _spin(app, settle_s)  # a few throttled draws reach the pixels
        suffix = f"-{args.suffix}" if args.suffix else ""
        path = args.out / f"{name}-{w}x{h}{suffix}.png"
        if not window.grab().save(str(path)):
            raise SystemExit(f"screenshots: could not write {path}")
        written.append(path)

    try:
        _wait(app, "NG frames", lambda: len(window.filmstrip.results()) >= 3, 90)
        for w, h in sizes:
            window.lock.lock()
            window.show_workspace("run")
            window.resize(w, h)
            window.resume_live()
            _wait(app, "an NG banner", lambda: showing("NG"))
            grab("run-ng", w, h)
            for _ in range(20):  # a PASS picture: retry when an NG arrives while it is drawn
                run.acknowledge()
                _wait(app, "a PASS banner", lambda: showing("PASS"))
                _spin(app, 0.1)
                if showing("PASS"):
                    grab("run-pass", w, h, settle_s=0.0)
                    break
            if args.only == "run":
                continue
            ng = window.filmstrip.results()[0]
            window.show_frame(ng)  # an NG frame under review (from the filmstrip)
            grab("run-review", w, h)
            window.resume_live()
            assert window.lock.unlock(SCREEN_PIN)
            for key in window.workspaces.keys():
                if key == "run":
                    continue
                window.show_workspace(key)
                if key == "label":  # a technician labels a frame under review
                    window.show_frame(ng)
                grab(f"ws-{key}", w, h)
                window.resume_live()
    finally:
        window.ask_before_close = False
        window.close()
        station.close()
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

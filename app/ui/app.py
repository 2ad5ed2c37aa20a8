"""GUI entry point: QApplication, session, bridge and main window; optional screenshot run."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication, QMessageBox
from superqt.utils import create_worker

from app.station.headless import start_outputs
from app.station.recipe import demo_recipe_path, load_recipe
from app.station.session import InspectionSession
from app.station.settings import Settings
from app.ui.bridge import SessionBridge
from app.ui.main_window import MainWindow

log = logging.getLogger(__name__)

SCREENSHOT_FRAMES = 30
SCREENSHOT_TIMEOUT_MS = 60_000


def build_session(recipe_path: Path, settings: Settings) -> InspectionSession:
    """Load the recipe and its model (disk + engine start-up; call it off the GUI thread)."""
    recipe = load_recipe(recipe_path)
    return InspectionSession(recipe, recipe_path=recipe_path, settings=settings)


class Station:
    """One session + bridge + window at a time; opening a recipe replaces all three.

    A recipe names its model, source and camera, so a new recipe is a new session: the old one
    is stopped and closed on a worker while the new window is already up.
    """

    def __init__(self, session: InspectionSession, settings: Settings) -> None:
        self.settings = settings
        self.session = session
        self.bridge = SessionBridge(session)
        self.hub = self._start_outputs(session)
        self.window = self._make_window()

    def _start_outputs(self, session: InspectionSession) -> Any:
        """The recipe's plant outputs (OPC UA, Modbus, MQTT), as in a headless run; None when
        it has none. A broken output shows as "error" on the Integration page, it never stops
        the station from opening."""
        try:
            return start_outputs(session.recipe, self.settings, session)
        except Exception as exc:  # noqa: BLE001 - the window still opens; the page says why
            log.error("plant outputs not started: %s", exc)
            session.log_event("error", f"plant outputs not started: {exc}")
            return None

    def _make_window(self) -> MainWindow:
        outputs = self.hub.statuses if self.hub is not None else None
        window = MainWindow(self.session, self.bridge, self.settings, outputs=outputs)
        window.recipe_open_requested.connect(self.open_recipe)
        return window

    def open_recipe(self, path: Path) -> None:
        worker = create_worker(build_session, path, self.settings, _start_thread=False)
        worker.returned.connect(self._replace_session)
        worker.errored.connect(
            lambda exc: self.window.notify_error(f"Cannot open recipe {path}: {exc}")
        )
        worker.start()  # superqt keeps it referenced until it finishes

    def _replace_session(self, session: InspectionSession) -> None:
        old_session, old_window = self.session, self.window
        self.bridge.detach()
        old_hub, self.hub = self.hub, None
        if old_hub is not None:
            old_hub.close()
        geometry = old_window.saveGeometry()
        self.session = session
        self.bridge = SessionBridge(session)
        self.hub = self._start_outputs(session)
        self.window = self._make_window()
        # the engineer who opened the recipe stays in engineer mode
        self.window.lock.grant(old_window.lock)
        self.window.restoreGeometry(geometry)
        self.window.show()
        old_window.ask_before_close = False  # replaced, not quit: its session closes below
        old_window.close()
        old_window.deleteLater()
        # superqt keeps a running worker referenced until it finishes (WorkerBase._worker_set)
        create_worker(old_session.close, _start_thread=False).start()

    def autostart(self) -> bool:
        """Start the line when the recipe says ``autostart`` (the demo does); True if it did."""
        if not self.session.recipe.autostart:
            return False
        self.window.start()
        return True

    def close(self) -> None:
        """After the event loop: detach and close the session (joins its threads, flushes)."""
        self.bridge.detach()
        if self.hub is not None:
            self.hub.close()
            self.hub = None
        self.session.close()


def _take_screenshot(station: Station, path: Path, frames: int, app: QApplication) -> None:
    """Run the demo until ``frames`` results arrived, grab the Run screen, quit."""
    window = station.window
    count = 0
    done = False

    def grab(ok: bool) -> None:
        nonlocal done
        if done:
            return
        done = True
        # one more turn of the event loop so the last draw and the stats reach the pixels
        QTimer.singleShot(300, lambda: _save(ok))

    def _save(ok: bool) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not window.grab().save(str(path)):
            log.error("could not write the screenshot %s", path)
            ok = False
        window.ask_before_close = False
        app.exit(0 if ok else 1)

    def on_result(_result: object) -> None:
        nonlocal count
        count += 1
        if count == frames:
            grab(True)

    station.bridge.result.connect(on_result)
    QTimer.singleShot(SCREENSHOT_TIMEOUT_MS, lambda: grab(False))
    if not station.session.running:
        window.start()


def run_gui(
    recipe_path: Path | None,
    settings: Settings,
    *,
    screenshot: Path | None = None,
    frames: int = 0,
) -> int:
    """Open the station window; returns the exit code.

    ``recipe_path`` None -> ``settings.recipe_path`` or the bundled demo recipe. With
    ``screenshot``, the recipe's source runs until ``frames`` results (30 when 0) arrived, the
    window is saved to that PNG and the function returns 0 (1 if no result came within 60 s).
    """
    app = QApplication.instance() or QApplication(sys.argv[:1])
    assert isinstance(app, QApplication)
    app.setOrganizationName("inspection-station")
    app.setApplicationName("inspection-station")
    path = recipe_path or settings.recipe_path or demo_recipe_path()
    try:
        session = build_session(Path(path), settings)
    except Exception as exc:  # a bad recipe or model: say so in a box, not a traceback
        log.error("cannot start the station: %s", exc)
        if screenshot is None:
            QMessageBox.critical(None, "Inspection station", f"Cannot open {path}:\n{exc}")
        return 2
    station = Station(session, settings)
    station.window.show()
    station.autostart()
    if screenshot is not None:
        _take_screenshot(station, Path(screenshot), frames or SCREENSHOT_FRAMES, app)
    stopper = _exit_on_signals(app)
    try:
        return app.exec()
    finally:
        stopper.stop()
        station.close()  # stops the line, judges what is queued, flushes the store


def _exit_on_signals(app: QApplication) -> QTimer:
    """SIGINT / SIGTERM end the event loop with 128 + N; ``Station.close`` then stops cleanly.

    Python runs signal handlers only between bytecodes, and the Qt event loop is C++: a timer
    gives the interpreter a turn every 200 ms. ``exit`` (not ``quit``) so no window asks
    "the line is running, quit?" — a signal is an operator's or a supervisor's decision.
    """

    def handler(signum: int, _frame: object) -> None:
        log.info("%s received: stopping the line and closing", signal.Signals(signum).name)
        QTimer.singleShot(0, lambda: app.exit(128 + signum))

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)
    ticker = QTimer(app)
    ticker.timeout.connect(lambda: None)
    ticker.start(200)
    return ticker

"""GUI-thread stalls and redraw rate with the demo line running (``python -m bench.bench_gui``).

A 10 ms QTimer on the GUI thread measures how late each tick fires: the lateness is how long the
GUI thread was busy with something else (drawing, layout, signal delivery). Also counted: results
delivered by the bridge and frames drawn (the window's ``frame_selected``). Optionally the window
switches workspace every second (``--switch``), which costs layout, and the line runs with fps 0
(``--fast``: the folder read as fast as the engine goes, far faster than a display).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench._gui_probe import LatenessProbe, spin


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_gui")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--switch", action="store_true", help="change workspace every second")
    parser.add_argument("--fast", action="store_true", help="source fps 0 (as fast as possible)")
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument(
        "--no-line", action="store_true", help="baseline: the window open, the line stopped"
    )
    args = parser.parse_args(argv)

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])
    from app.station.recipe import demo_recipe_path, load_recipe
    from app.station.session import InspectionSession
    from app.station.settings import Settings
    from app.ui.app import Station

    home = Path(tempfile.mkdtemp(prefix="station-bench-"))
    settings = dataclasses.replace(Settings.defaults(home), engineer_pin="2580")
    recipe = load_recipe(demo_recipe_path())
    if args.fast:
        recipe = dataclasses.replace(recipe, source=dataclasses.replace(recipe.source, fps=0.0))
    station = Station(InspectionSession(recipe, settings=settings), settings)
    window = station.window
    w, h = (int(v) for v in args.size.split("x"))
    window.resize(w, h)
    window.show()
    window.lock.unlock("2580")
    counts = {"results": 0, "drawn": 0}
    station.bridge.result.connect(lambda _r: counts.__setitem__("results", counts["results"] + 1))
    window.frame_selected.connect(lambda _r: counts.__setitem__("drawn", counts["drawn"] + 1))
    # how long the GUI thread spends drawing one result (the work that the lateness is made of)
    draw_ms: list[float] = []
    show = window.live_panel.show_result

    def timed_show(result: object) -> None:
        t = time.perf_counter()
        show(result)  # type: ignore[arg-type]
        draw_ms.append((time.perf_counter() - t) * 1e3)

    window.live_panel.show_result = timed_show  # type: ignore[method-assign]
    probe = LatenessProbe(10, clamp=False)
    late = probe.late
    keys = window.workspaces.keys()
    switches = [0]

    def switch() -> None:
        switches[0] += 1
        window.show_workspace(keys[switches[0] % len(keys)])

    switcher = QTimer()
    switcher.setInterval(1000)
    switcher.timeout.connect(switch)
    if not args.no_line:
        window.start()
    # measure from the first result on: start-up (model warm-up) is not a stall of a running line
    t_end = time.monotonic() + 30
    while not args.no_line and counts["results"] == 0 and time.monotonic() < t_end:
        app.processEvents()
        time.sleep(0.005)
    counts.update(results=0, drawn=0)
    draw_ms.clear()
    probe.start()
    if args.switch:
        switcher.start()
    elapsed = spin(app, args.seconds)
    probe.stop()
    switcher.stop()
    window.ask_before_close = False
    window.close()
    station.close()
    late.sort()
    p99 = late[int(len(late) * 0.99)] if late else 0.0
    print(
        f"{elapsed:.1f} s, {args.size}, line={not args.no_line}, fast={args.fast}, "
        f"switch={args.switch}: "
        f"results {counts['results'] / elapsed:.1f}/s, redraws {counts['drawn'] / elapsed:.1f}/s, "
        f"GUI-thread lateness median {statistics.median(late):.1f} ms, p99 {p99:.1f} ms, "
        f"max {max(late):.1f} ms over {len(late)} ticks; one draw median "
        f"{statistics.median(draw_ms or [0]):.1f} ms, max {max(draw_ms or [0]):.1f} ms; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

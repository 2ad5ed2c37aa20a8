"""``inspection-station run --headless``: judge frames without a window, one JSON line each.

stdout carries only JSON (one object per judged frame, then a summary object), so it can be piped
into ``jq`` or a line controller; progress, warnings and errors go to stderr through logging.

Offline sources (an image folder, a video file) are run with backpressure: the source waits for
inference, no frame is dropped, files are read as fast as inference allows (the recipe's ``fps``
is ignored) and the folder is read once (the recipe's ``loop`` applies only together with
``--limit``, which ends the run). So the same folder always gives the same lines and summary.
Live sources (GenICam, a USB camera) run as the recipe says (free-run drops or triggered) until
``--limit`` results or a signal.

SIGINT and SIGTERM stop the run cleanly: acquisition stops, queued frames are judged, every
result is written (or journaled), the summary line is printed. Exit codes (also in docs/cli.md):

== =======================================================================================
0  the run ended normally (source exhausted or ``--limit`` reached) and nothing was lost
2  unusable configuration: bad recipe, missing or refused model, bad source, bad database
3  results were lost (neither stored nor journaled); the summary says how many
4  the station stopped in FAULT (model faults, camera lost, recipe does not fit the frames)
130, 143  stopped by SIGINT / SIGTERM (128 + signal number), after a clean stop
== =======================================================================================
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

from app.station._signals import SignalStopper
from app.station.recipe import Recipe, RecipeError, demo_recipe_path, load_recipe
from app.station.records import result_record
from app.station.session import InspectionSession
from app.station.settings import Settings
from app.station.sources import SourceError, parse_spec
from app.station.stats import SessionStats
from app.station.store import StoreError
from engines import ModelLoadError

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CONFIG = 2  # unusable configuration: bad recipe, missing model, bad source spec, bad DB
EXIT_LOST = 3  # results neither stored nor journaled
EXIT_FAULT = 4  # the station stopped in FAULT
PROGRESS_EVERY_S = 2.0


class ConfigError(RuntimeError):
    """The run cannot start; the message says why (printed on stderr, exit code 2)."""


def prepare_recipe(
    recipe_path: Path | None,
    *,
    source: str | None,
    model: Path | None,
    limit: int | None,
    settings: Settings,
) -> tuple[Recipe, bool]:
    """The recipe with the command line's overrides, and whether the source is offline.

    Raises
    ------
    ConfigError
        Bad recipe file, no source, malformed source spec, missing model file.
    """
    path = recipe_path or settings.recipe_path or demo_recipe_path()
    try:
        recipe = load_recipe(path)
    except RecipeError as exc:
        raise ConfigError(str(exc)) from None
    spec = source if source is not None else recipe.source.spec
    if not spec:
        raise ConfigError(f"{path}: the recipe has no [source] spec; pass --source SPEC")
    try:
        parsed = parse_spec(spec)
    except SourceError as exc:
        raise ConfigError(str(exc)) from None
    offline = parsed.kind == "folder" or (parsed.kind == "video" and not parsed.target.isdigit())
    src = replace(recipe.source, spec=spec)
    if offline:
        src = replace(src, fps=0.0, loop=recipe.source.loop and limit is not None)
    recipe = replace(recipe, source=src)
    if model is not None:
        recipe = replace(recipe, model=Path(model).expanduser().resolve())
        _warn_other_operating_point(recipe)
    return recipe, offline


def _warn_other_operating_point(recipe: Recipe) -> None:
    """``--model`` keeps the recipe's rules; say so when the model's card chose another operating
    point (a bench once ran a model at another model's threshold: 76 NG instead of 72)."""
    from engines.card import load_card_for

    try:
        card = load_card_for(recipe.model)
    except Exception:  # a missing or broken card: the engine's load reports it properly
        return
    rules = recipe.rules
    if (card.threshold, card.min_area_px) != (rules.threshold, rules.min_area_px):
        log.warning(
            "%s: its card's operating point (threshold %g, minimum area %d px) differs from the "
            "recipe's rules (threshold %g, minimum area %d px); the recipe's rules judge",
            recipe.model.name, card.threshold, card.min_area_px, rules.threshold,
            rules.min_area_px,
        )  # fmt: skip


def run_headless(
    recipe_path: Path | None,
    *,
    settings: Settings,
    source: str | None = None,
    model: Path | None = None,
    limit: int | None = None,
    db: Path | None = None,
    out: TextIO | None = None,
) -> int:
    """Run the station without a window; returns the process exit code.

    Parameters
    ----------
    recipe_path
        Recipe file; None = ``settings.recipe_path`` or the bundled demo recipe.
    settings
        Station settings (results database and NG archive).
    source, model
        Override the recipe's source spec and model file.
    limit
        Stop after this many frames.
    db
        Results database to write instead of ``settings.db_path``; NG images are then archived
        in an ``archive`` folder beside it, so one run's evidence stays together.
    out
        Where the JSON lines go (default ``sys.stdout``).

    Returns
    -------
    int
        0 after a run (even when inputs were skipped); 2 when the configuration is unusable.
    """
    out = out or sys.stdout
    if limit is not None and limit < 1:
        log.error("--limit must be at least 1, not %d", limit)
        return EXIT_CONFIG
    if db is not None:
        db = Path(db).expanduser().resolve()
        settings = replace(settings, db_path=db, archive_dir=db.parent / "archive")
    try:
        recipe, offline = prepare_recipe(
            recipe_path, source=source, model=model, limit=limit, settings=settings
        )
        session = InspectionSession(recipe, recipe_path=recipe.path, settings=settings)
    except (ConfigError, ModelLoadError, StoreError) as exc:
        log.error("cannot run: %s", exc)
        return EXIT_CONFIG

    lock = threading.Lock()
    reader_gone = threading.Event()  # stdout closed (e.g. piped into `head`): stop quietly

    def write(line: str) -> None:
        if reader_gone.is_set():
            return
        with lock:
            try:
                out.write(line + "\n")
                out.flush()
            except (BrokenPipeError, ValueError):  # ValueError: write to a closed file
                reader_gone.set()

    def on_event(event: str, payload: Any) -> None:
        if event == "result":
            write(json.dumps(result_record(payload)))

    session.actor = ("system", None)  # the audit trail: no person at a headless station
    session.subscribe(on_event)
    log.info(
        "judging %s with %s (%s)",
        recipe.source.spec,
        recipe.model.name,
        "every frame, no drops" if offline else recipe.source.mode,
    )
    stopper = SignalStopper()
    outputs = None
    t0 = time.monotonic()
    try:
        with stopper:
            try:
                outputs = start_outputs(recipe, settings, session)
                session.start(limit=limit, backpressure=offline)
            except (SourceError, ConfigError) as exc:
                log.error("cannot run: %s", exc)
                return EXIT_CONFIG
            # A GenTL producer may take over SIGINT when the device opens: take it back.
            stopper.install()
            _wait(session, reader_gone, stopper)
            session.stop()
        elapsed = time.monotonic() - t0
    finally:
        if outputs is not None:
            outputs.close()
        session.close()  # flushes the store: journaled rows count as kept, not lost
    st = session.stats()
    write(json.dumps(summary_record(st, elapsed, recipe.version)))
    if reader_gone.is_set():
        _silence_stdout()
    log.info(
        "done: %d acquired, %d pass, %d NG, %d error, %d dropped; %d stored, %d journaled, "
        "%d lost in %.1f s",
        st.acquired, st.passed, st.ng, st.errors, st.dropped, st.stored, st.journaled, st.lost,
        elapsed,
    )  # fmt: skip
    if st.lost:
        log.error("%d result(s) were lost (not stored, not journaled)", st.lost)
        return EXIT_LOST
    if st.fault:
        log.error("stopped in FAULT: %s", st.fault)
        return EXIT_FAULT
    if stopper.signum is not None:
        return 128 + stopper.signum
    return EXIT_OK


def start_outputs(recipe: Recipe, settings: Settings, session: InspectionSession) -> Any:
    """The recipe's PLC outputs (OPC UA, MQTT, Modbus), started; None when it has none."""
    if not recipe.outputs:
        return None
    from app.station.outputs import OutputHub

    hub = OutputHub.from_recipe(recipe, settings, session)
    if hub is not None:
        hub.start()
    return hub


def summary_record(st: SessionStats, elapsed_s: float, recipe_version: int) -> dict[str, Any]:
    """The last JSON line; ``fps`` is judged frames per second of wall time over the run.

    ``acquired == pass + ng + error + dropped``; ``stored + journaled + lost`` is every result.
    """
    return {
        "summary": True,
        "acquired": st.acquired,
        "judged": st.judged,
        "pass": st.passed,
        "ng": st.ng,
        "error": st.errors,
        "dropped": st.dropped,
        "skipped": st.skipped,
        "stored": st.stored,
        "journaled": st.journaled,
        "lost": st.lost,
        "fault": st.fault,
        "fps": round(st.judged / elapsed_s, 3) if elapsed_s > 0 else 0.0,
        "elapsed_s": round(elapsed_s, 3),
        "model": st.model_id,
        "recipe_version": recipe_version,
    }


def _wait(session: InspectionSession, reader_gone: threading.Event, stopper: SignalStopper) -> None:
    """Until the run ends, a signal or the reader of stdout goes away; progress on stderr."""
    next_progress = time.monotonic() + PROGRESS_EVERY_S
    while not session.wait(0.1):
        if stopper.signum is not None:
            log.info("%s received; stopping", signal.Signals(stopper.signum).name)
            return
        if reader_gone.is_set():
            log.info("stdout was closed; stopping")
            return
        if time.monotonic() >= next_progress:
            next_progress += PROGRESS_EVERY_S
            st = session.stats()
            log.info(
                "judged %d (pass %d, NG %d, error %d) at %.1f fps",
                st.judged, st.passed, st.ng, st.errors, st.fps,
            )  # fmt: skip


def _silence_stdout() -> None:
    # Python flushes stdout at exit; with the reader gone that raises BrokenPipeError again.
    # Point the descriptor at /dev/null so the exit is quiet (the documented Python recipe).
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)

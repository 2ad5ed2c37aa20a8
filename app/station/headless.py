"""``inspection-station run --headless``: judge frames without a window, one JSON line each.

stdout carries only JSON (one object per judged frame, then a summary object), so it can be piped
into ``jq`` or a line controller; progress, warnings and errors go to stderr through logging.

Offline sources (an image folder, a video file) are run with backpressure: the source waits for
inference, no frame is dropped, files are read as fast as inference allows (the recipe's ``fps``
is ignored) and the folder is read once (the recipe's ``loop`` applies only together with
``--limit``, which ends the run). So the same folder always gives the same lines and summary.
Live sources (GenICam, a USB camera) run as the recipe says (free-run drops or triggered) until
``--limit`` frames or Ctrl-C.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, TextIO

from app.station.inspection import FrameResult
from app.station.recipe import Recipe, RecipeError, demo_recipe_path, load_recipe
from app.station.session import InspectionSession
from app.station.settings import Settings
from app.station.sources import SourceError, parse_spec
from app.station.stats import SessionStats
from app.station.store import StoreError
from engines import ModelLoadError

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CONFIG = 2  # unusable configuration: bad recipe, missing model, bad source spec, bad DB
PROGRESS_EVERY_S = 2.0


class ConfigError(RuntimeError):
    """The run cannot start; the message says why (printed on stderr, exit code 2)."""


def result_record(result: FrameResult) -> dict[str, Any]:
    """The JSON object printed for one judged frame."""
    insp = result.inspection
    record: dict[str, Any] = {
        "frame": insp.frame_id,
        "source": insp.source,
        "verdict": insp.verdict,
        "defects": [_rounded(asdict(d)) for d in insp.defects],
        "timings_ms": {k: round(float(v), 3) for k, v in insp.timings_ms.items()},
        "reasons": list(insp.reasons),
        "model": insp.model_id,
    }
    path = result.frame.metadata.get("path")
    if path is not None:
        record["path"] = str(path)
    if result.dropped_before:
        record["dropped_before"] = result.dropped_before
    return record


def _rounded(value: Any) -> Any:
    """Floats to 4 decimals (also inside bbox/centroid tuples): readable lines, no false precision."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_rounded(v) for v in value]
    return value


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
    return recipe, offline


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

    session.subscribe(on_event)
    log.info(
        "judging %s with %s (%s)",
        recipe.source.spec,
        recipe.model.name,
        "every frame, no drops" if offline else recipe.source.mode,
    )
    t0 = time.monotonic()
    try:
        try:
            session.start(limit=limit, backpressure=offline)
        except SourceError as exc:
            log.error("cannot run: %s", exc)
            return EXIT_CONFIG
        _wait(session, reader_gone)
        session.stop()
        elapsed = time.monotonic() - t0
        st = session.stats()
    finally:
        session.close()
    write(json.dumps(summary_record(st, elapsed, recipe.version)))
    if reader_gone.is_set():
        _silence_stdout()
    log.info(
        "done: %d judged, %d pass, %d NG, %d skipped, %d dropped in %.1f s",
        st.judged, st.passed, st.ng, st.skipped, st.dropped, elapsed,
    )  # fmt: skip
    return EXIT_OK


def summary_record(st: SessionStats, elapsed_s: float, recipe_version: int) -> dict[str, Any]:
    """The last JSON line; ``fps`` is judged frames per second of wall time over the run."""
    return {
        "summary": True,
        "judged": st.judged,
        "pass": st.passed,
        "ng": st.ng,
        "skipped": st.skipped,
        "dropped": st.dropped,
        "fps": round(st.judged / elapsed_s, 3) if elapsed_s > 0 else 0.0,
        "elapsed_s": round(elapsed_s, 3),
        "store_failures": st.store_failures,
        "model": st.model_id,
        "recipe_version": recipe_version,
    }


def _wait(session: InspectionSession, reader_gone: threading.Event) -> None:
    """Until the run ends, Ctrl-C or the reader of stdout goes away; progress on stderr."""
    next_progress = time.monotonic() + PROGRESS_EVERY_S
    try:
        while not session.wait(0.2):
            if reader_gone.is_set():
                log.info("stdout was closed; stopping")
                return
            if time.monotonic() >= next_progress:
                next_progress += PROGRESS_EVERY_S
                st = session.stats()
                log.info(
                    "judged %d (pass %d, NG %d) at %.1f fps", st.judged, st.passed, st.ng, st.fps
                )
    except KeyboardInterrupt:
        log.info("interrupted; stopping")


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

"""The inspection session: the one model object the GUI (and the headless CLI) drives.

It owns the engine, the rules, the source, the pipeline, the results store and the last
``keep_last`` results with their probability maps, so a moved slider re-judges them at once with
no new inference. It imports no Qt: the GUI hears it through ``subscribe`` (``app.ui.bridge``
turns the callbacks, which run on worker threads, into queued Qt signals).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from app.station import recipe as recipe_io
from app.station._session_parts import (
    Callback,
    EventHub,
    KeptResults,
    ModelSlots,
    Stepper,
    default_max_batch,
    source_options,
)
from app.station.frame import Frame
from app.station.inspection import FrameResult, Inspection, Rules
from app.station.inspector import judge
from app.station.pipeline import Pipeline
from app.station.recipe import Recipe, RecipeError
from app.station.settings import Settings
from app.station.sources import open_source
from app.station.sources.base import Source, SourceError
from app.station.sources.spec import SourceOptions
from app.station.stats import PipelineStats, SessionStats, Throttle
from app.station.store import ResultsStore
from engines import ModelCard, load_engine
from engines.protocol import Engine

__all__ = [
    "STATS_INTERVAL_S",
    "InspectionSession",
    "SessionStats",
    "default_max_batch",
    "source_options",
]

log = logging.getLogger(__name__)

Event = Literal["result", "rejudged", "stats", "state", "model", "error", "alarm"]
STATS_INTERVAL_S = 0.25  # "stats" events at most ~4 times a second: the UI redraws no faster


class InspectionSession:
    """Source -> engine -> rules -> verdict -> store, with live rules and hot model swaps.

    Parameters
    ----------
    recipe : Recipe
        Model, rules, source and archive policy. Its model is loaded here.
    recipe_path : Path, optional
        Where :meth:`save_recipe` writes; default ``recipe.path``.
    settings : Settings
        Results database, NG archive, ``keep_last``.
    store : ResultsStore, optional
        An already open store (default: one opened from ``settings``); the session closes it.
    max_batch : int, optional
        Most waiting frames inferred together; default :func:`default_max_batch`.

    Raises
    ------
    ModelLoadError
        The recipe's model cannot be loaded.
    """

    def __init__(
        self,
        recipe: Recipe,
        *,
        recipe_path: str | Path | None = None,
        settings: Settings,
        store: ResultsStore | None = None,
        max_batch: int | None = None,
    ) -> None:
        self.settings = settings
        self._recipe = recipe
        self._recipe_path = Path(recipe_path) if recipe_path is not None else recipe.path
        self._rules = recipe.rules
        engine = load_engine(recipe.model)
        self._models = ModelSlots(engine, Path(recipe.model).resolve())
        self.max_batch = max_batch or default_max_batch(engine)
        try:
            self._store = store or ResultsStore(
                settings.db_path,
                settings.archive_dir,
                retention_rows=recipe.retention_rows,
                archive_ng=recipe.archive_ng,
            )
        except BaseException:
            engine.close()
            raise
        self._spec = recipe.source.spec
        self._missing_controls: dict[str, str] = {}
        self._options = source_options(recipe)
        self._lock = threading.RLock()  # session state; never held while calling subscribers
        self._step_lock = threading.RLock()  # one step at a time (the engine is not thread-safe)
        self._kept = KeptResults(settings.keep_last)
        self._events = EventHub()
        self._pipeline: Pipeline | None = None
        self._stepper: Stepper | None = None  # single steps, while not running
        self._ended: list[PipelineStats] = []  # final stats of pipelines that have ended
        self._stats_throttle = Throttle(STATS_INTERVAL_S)
        self._last_run: PipelineStats | None = None  # latencies stay visible after a stop
        self._closed = False

    # -- events ------------------------------------------------------------------------------

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        """Call ``callback(event, payload)`` for every event; returns the unsubscribe function.

        Events: ``"result"``/``"rejudged"`` (FrameResult), ``"stats"`` (SessionStats),
        ``"state"`` (bool running), ``"model"`` (ModelCard), ``"error"``/``"alarm"`` (str).
        Callbacks run on the session's worker threads; one that raises is logged and the
        others still get the event.
        """
        return self._events.subscribe(callback)

    def _emit(self, event: Event, payload: Any) -> None:
        self._events.emit(event, payload)

    # -- control -----------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        pipeline = self._pipeline
        return pipeline is not None and pipeline.running

    @property
    def source_spec(self) -> str:
        return self._spec

    @property
    def missing_controls(self) -> dict[str, str]:
        """Camera controls (exposure_us, gain_db, trigger) the open device lacks, with why."""
        return dict(self._missing_controls)

    def open_source(self, spec: str, *, options: SourceOptions | None = None) -> None:
        """Use ``spec`` from now on (restarting if running). Raises SourceError when unusable.

        The source is opened once here so a bad spec fails now, in the caller's hands, rather
        than later on a worker thread.
        """
        options = options or self._options
        probe = open_source(spec, settings=options)
        # What a camera lacks is known only once it is open: keep it for the GUI's controls.
        missing = dict(getattr(probe, "missing_controls", {}))
        probe.close()
        was_running = self.running
        self.stop()
        self._close_stepper()
        with self._lock:
            self._spec, self._options = spec, options
            self._missing_controls = missing
        if was_running:
            self.start()

    def start(self, *, limit: int | None = None, backpressure: bool = False) -> None:
        """Start acquisition and inference on worker threads (no-op when running).

        Parameters
        ----------
        limit : int, optional
            Stop after that many frames (the CLI's ``--limit``).
        backpressure : bool
            The source waits for inference instead of losing frames, and no "line too fast"
            alarm is raised: for offline runs over a folder, where every file must be judged.

        Raises
        ------
        SourceError
            The source cannot be opened.
        """
        # Under the step lock: a step in progress finishes first (the engine is not thread-safe),
        # and no step can begin between here and the pipeline counting as running.
        with self._step_lock:
            if self.running:
                return
            self._close_stepper()
            source = open_source(self._spec, settings=self._options)
            self._missing_controls = dict(getattr(source, "missing_controls", {}))
            pipeline = self._make_pipeline(source, limit=limit, backpressure=backpressure)
            with self._lock:
                self._pipeline = pipeline
            # Before start(): a short run may finish (and say "state" False) right away.
            self._emit("state", True)
            pipeline.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the pipeline, close the source and join the threads (idempotent)."""
        pipeline = self._pipeline
        if pipeline is not None:
            pipeline.stop(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the running pipeline finishes (source exhausted or ``limit`` reached)."""
        pipeline = self._pipeline
        return True if pipeline is None else pipeline.wait(timeout)

    def step(self) -> FrameResult | None:
        """Acquire and judge one frame in the caller's thread; None when running or exhausted.

        Meant for a worker thread of the GUI (it blocks for acquisition and inference).
        """
        with self._step_lock:
            if self.running:
                return None
            if self._stepper is None:
                source = open_source(self._spec, settings=self._options)
                self._stepper = Stepper(self._make_pipeline(source, sync=True))
            stepper = self._stepper
            try:
                frame = stepper.next_frame()
            except SourceError as exc:
                self._close_stepper()
                self._emit("error", f"source {self._spec}: {exc}")
                return None
            if frame is None:
                self._close_stepper()
                return None
            results = stepper.pipeline.process([frame])
        self._emit_stats(force=True)
        return results[0] if results else None

    def _make_pipeline(
        self,
        source: Source,
        *,
        sync: bool = False,
        limit: int | None = None,
        backpressure: bool = False,
    ) -> Pipeline:
        triggered = self._options.mode == "triggered" or source.triggered
        mode = "triggered" if triggered or backpressure else "free-run"
        holder: list[Pipeline] = []
        pipeline = Pipeline(
            source,
            self._models.engine,
            self._judge,
            [self._kept.add, self._store_result, self._publish],
            mode=mode,
            # Backpressure needs only enough queued frames to fill a batch; a deeper queue
            # would just add waiting time to every frame's latency.
            queue_size=2 * self.max_batch if backpressure else None,
            max_batch=self.max_batch,
            sync=sync,
            limit=limit,
            alarm_when_full=not backpressure,
            on_error=lambda message: self._emit("error", message),
            on_alarm=lambda message: self._emit("alarm", message),
            on_finished=lambda: self._finished(holder[0]),
        )
        holder.append(pipeline)
        return pipeline

    def _finished(self, pipeline: Pipeline) -> None:
        if pipeline.sync:
            return
        st = pipeline.stats()
        with self._lock:
            self._ended.append(st)
            if self._pipeline is pipeline:
                self._pipeline = None
                self._last_run = st
        self._emit("state", False)
        self._emit_stats(force=True)

    def _close_stepper(self) -> None:
        with self._step_lock:
            stepper, self._stepper = self._stepper, None
            if stepper is None:
                return
            st = stepper.close()
            with self._lock:
                self._ended.append(st)

    # -- the pipeline's judge and sinks ------------------------------------------------------

    def _judge(self, frame: Frame, prob: NDArray[np.float32]) -> Inspection:
        pixel_mm = self._recipe.pixel_size_mm
        return judge(prob, self._rules, pixel_size_mm=pixel_mm, frame_id=frame.frame_id,
                     source=frame.source, timestamp=frame.timestamp)  # fmt: skip

    def _store_result(self, result: FrameResult) -> None:
        self._store.add(result, recipe_version=self._recipe.version)

    def _publish(self, result: FrameResult) -> None:
        self._emit("result", result)
        self._emit_stats()

    def _emit_stats(self, *, force: bool = False) -> None:
        if self._stats_throttle.ready() or force:
            self._emit("stats", self.stats())

    # -- rules -------------------------------------------------------------------------------

    @property
    def rules(self) -> Rules:
        return self._rules

    def rejudge(self, result: FrameResult, rules: Rules) -> FrameResult:
        """``result`` judged again under ``rules`` from its kept probability map (no inference)."""
        old = result.inspection
        inspection = judge(
            result.prob, rules, pixel_size_mm=self._recipe.pixel_size_mm, frame_id=old.frame_id,
            source=old.source, timestamp=old.timestamp, model_id=old.model_id,
            timings_ms=old.timings_ms,
        )  # fmt: skip
        return replace(result, inspection=inspection)

    def set_rules(self, rules: Rules) -> FrameResult | None:
        """Judge the next frames with ``rules`` and re-judge the kept ones now.

        Returns the re-judged latest result (also emitted as ``"rejudged"``), or None when no
        frame has been judged yet. Counters and stored rows keep their original verdicts.
        """
        with self._lock:
            self._rules = rules
            kept = self._kept.snapshot()
        latest = self._kept.replace({id(r): self.rejudge(r, rules) for r in kept})
        if latest is not None:
            self._emit("rejudged", latest)
        return latest

    # -- model -------------------------------------------------------------------------------

    @property
    def model_card(self) -> ModelCard:
        return self._models.engine.card

    @property
    def model_path(self) -> Path:
        return self._models.path

    @property
    def previous_model_path(self) -> Path | None:
        return self._models.previous_path

    def load_model(self, path: str | Path) -> ModelCard:
        """Load ``path`` and swap it in between two batches, without stopping.

        Raises
        ------
        ModelLoadError
            The model cannot be used; the running engine stays in place.
        """
        engine = load_engine(path)
        self._swap(engine, Path(path).resolve())
        return engine.card

    def rollback_model(self) -> ModelCard:
        """Swap back to the model used before the last swap (a second rollback toggles back).

        Raises
        ------
        ModelLoadError
            There is no previous model.
        """
        with self._lock:
            engine, path = self._models.rollback_target()
        self._swap(engine, path)
        return engine.card

    def _swap(self, engine: Engine, path: Path) -> None:
        with self._lock:
            evicted = self._models.push(engine, path)
            pipelines = [p for p in (self._pipeline,) if p is not None]
            if self._stepper is not None:
                pipelines.append(self._stepper.pipeline)
        for pipeline in pipelines:
            pipeline.swap_engine(engine)
        if evicted is not None:
            # A batch that started before the swap may still be running on the evicted engine.
            with self._step_lock:
                for pipeline in pipelines:
                    with pipeline.engine_idle():
                        pass
                _close_quietly(evicted)
        log.info("model now %s (%s)", path, engine.card.model_id or engine.card.name)
        self._emit("model", engine.card)

    # -- recipe ------------------------------------------------------------------------------

    @property
    def recipe(self) -> Recipe:
        return self._recipe

    @property
    def recipe_path(self) -> Path | None:
        return self._recipe_path

    @property
    def dirty(self) -> bool:
        """True when the rules or the model differ from the recipe as last loaded/saved."""
        return self._rules != self._recipe.rules or self._models.path != self._recipe_model()

    def _recipe_model(self) -> Path:
        return Path(self._recipe.model).resolve()

    def save_recipe(self) -> Recipe:
        """Write the current rules and model into the recipe file (atomic, version + 1).

        Raises
        ------
        RecipeError
            The session has no recipe file to write to.
        """
        if self._recipe_path is None:
            raise RecipeError("this recipe has no file; it cannot be saved")
        updated = replace(self._recipe, rules=self._rules, model=self._models.path)
        saved = recipe_io.save_recipe(updated, self._recipe_path)
        with self._lock:
            self._recipe = saved
        return saved

    def revert_recipe(self) -> Recipe:
        """Back to the rules and model of the recipe as last loaded/saved (re-judges, swaps)."""
        recipe = self._recipe
        if self._models.path != self._recipe_model():
            if self._models.previous_path == self._recipe_model():
                self.rollback_model()
            else:
                self.load_model(recipe.model)
        self.set_rules(recipe.rules)
        return recipe

    # -- data --------------------------------------------------------------------------------

    @property
    def store(self) -> ResultsStore:
        return self._store

    def history(self) -> list[FrameResult]:
        """The kept results, oldest first (at most ``settings.keep_last``)."""
        return self._kept.snapshot()

    def latest(self) -> FrameResult | None:
        return self._kept.latest()

    def stats(self) -> SessionStats:
        """Counters since the session was created, plus the running pipeline's rates."""
        with self._lock:
            # Under the session lock so a pipeline that just finished is not counted twice.
            pipeline, stepper = self._pipeline, self._stepper
            current = pipeline.stats() if pipeline is not None else None
            runs = [*self._ended, *(s for s in (current,) if s)]
            runs += [stepper.pipeline.stats()] if stepper is not None else []
            judged, passed, ng = self._kept.counts()
        return SessionStats.combine(
            judged=judged,
            passed=passed,
            ng=ng,
            runs=runs,
            current=current,
            last_run=self._last_run,
            store_failures=int(getattr(self._store, "failures", 0)),
            model_id=self.model_card.model_id or self.model_card.name,
        )

    def close(self) -> None:
        """Stop, join, flush and close the store and the engines (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        self._close_stepper()
        self._store.close()
        for engine in self._models.engines():
            _close_quietly(engine)

    def __enter__(self) -> InspectionSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_quietly(engine: Engine) -> None:
    try:
        engine.close()
    except Exception:  # noqa: BLE001 - a failing close must not stop the rest of a shutdown
        log.exception("closing engine %r failed", engine)

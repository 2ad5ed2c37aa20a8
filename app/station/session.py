"""The inspection session: the one model object the GUI (and the headless CLI) drives.

It owns the engine, the rules, the source, the pipeline, the results store and the last
``keep_last`` results with their probability maps, so a moved slider re-judges them at once with
no new inference. It imports no Qt: the GUI hears it through ``subscribe`` (``app.ui.bridge``
turns the callbacks, which run on worker threads, into queued Qt signals).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from app.station._session_model import ModelRecipeMixin, _close_quietly
from app.station._session_parts import (
    Callback,
    EventHub,
    KeptResults,
    ModelSlots,
    Stepper,
    default_max_batch,
    is_replay,
    open_audit,
    recipe_frame_check,
    source_options,
)
from app.station._session_rules import RulesAuditMixin
from app.station.events import EventKind, EventLog, EventRecord
from app.station.frame import Frame
from app.station.inspection import FrameResult, Inspection
from app.station.inspector import judge
from app.station.pipeline import Mode, Pipeline
from app.station.recipe import Recipe
from app.station.settings import Settings
from app.station.sources import open_source
from app.station.sources.base import Source, SourceError
from app.station.sources.spec import SourceOptions
from app.station.stats import PipelineStats, SessionStats, Throttle
from app.station.store import ResultsStore
from engines import load_engine

__all__ = [
    "STATS_INTERVAL_S",
    "InspectionSession",
    "SessionStats",
    "default_max_batch",
    "source_options",
]

log = logging.getLogger(__name__)

Event = Literal["result", "rejudged", "stats", "state", "model", "error", "alarm", "fault", "event"]
State = Literal["stopped", "running", "fault"]
STATS_INTERVAL_S = 0.25  # "stats" events at most ~4 times a second: the UI redraws no faster


class InspectionSession(RulesAuditMixin, ModelRecipeMixin):
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
        # Before anything can fail or alarm: the log is where those go.
        self._events = EventHub()
        self.events = EventLog()
        self.events.subscribe(lambda record: self._emit("event", record))
        self._fault: str | None = None
        self._stop_by: tuple[str, str | None] | None = None  # who asked the running line to stop
        self._part_ids: dict[int, str] = {}  # frame id -> part id of a single-step job
        self._next_tags: deque[str] = deque()  # part ids for the next results while running
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
                min_free_mb=settings.min_free_mb,
                archive_min_free_mb=settings.archive_min_free_mb,
                on_alarm=lambda message: self._alarm(message, source="results store"),
            )
        except BaseException:
            engine.close()
            raise
        self.audit = open_audit(settings.db_path, self._alarm)
        self._spec = recipe.source.spec
        self._missing_controls: dict[str, str] = {}
        self._options = source_options(recipe)
        self._lock = threading.RLock()  # session state; never held while calling subscribers
        self._step_lock = threading.RLock()  # one step at a time (the engine is not thread-safe)
        self._kept = KeptResults(settings.keep_last)
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

    def log_event(
        self, kind: EventKind, message: str, *, frame_id: int | None = None, file: str | None = None
    ) -> EventRecord:
        """Add to the event log (the GUI's Events workspace; emitted as ``"event"``)."""
        return self.events.add(kind, message, frame_id=frame_id, file=file)

    def _warn(self, message: str) -> None:
        self.log_event("alarm", message)

    def _alarm(self, message: str, *, source: str = "") -> None:
        self.log_event("alarm", f"{source}: {message}" if source else message)
        self._emit("alarm", message)

    def _error(self, message: str) -> None:
        self.log_event("error", message)
        self._emit("error", message)

    def _on_fault(self, message: str) -> None:
        with self._lock:
            self._fault = message
        self.log_event("fault", message)
        self.audit_record("station.fault", role="system", user=None, detail={"reason": message})
        self._emit("fault", message)

    @property
    def state(self) -> State:
        """``"fault"`` once a run stopped on a fault (until the next start), else running/stopped."""
        if self.running:
            return "running"
        return "fault" if self._fault is not None else "stopped"

    @property
    def fault(self) -> str | None:
        """Why the last run stopped in FAULT (cleared by the next start), or None."""
        return self._fault

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
            # A folder or a video file is a replay: it waits for inference, never drops.
            backpressure = backpressure or is_replay(self._spec)
            with self._lock:
                self._fault = None
                self._next_tags.clear()  # a job that timed out must not tag this run
            source = open_source(self._spec, settings=self._options)
            self._missing_controls = dict(getattr(source, "missing_controls", {}))
            pipeline = self._make_pipeline(source, limit=limit, backpressure=backpressure)
            with self._lock:
                self._pipeline = pipeline
            # Before start(): a short run may finish (and say "state" False) right away.
            self._emit("state", True)
            self.log_event("state", f"started on {self._spec}")
            self.audit_record("station.start", target=self._spec)
            pipeline.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the pipeline, close the source, judge what is queued and join (idempotent)."""
        pipeline = self._pipeline
        if pipeline is not None:
            if pipeline.running:
                self._stop_by = self.actor  # the audit row (written when it has finished) says who
            pipeline.stop(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the running pipeline finishes (source exhausted or ``limit`` reached)."""
        pipeline = self._pipeline
        return True if pipeline is None else pipeline.wait(timeout)

    def step(self, part_id: str | None = None) -> FrameResult | None:
        """Acquire and judge one frame in the caller's thread; None when running or exhausted.

        Meant for a worker thread of the GUI or a PLC job (it blocks for acquisition and
        inference). ``part_id`` (a triggered job's part) is kept in ``result.extra["part_id"]``.
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
                self._error(f"source {self._spec}: {exc}")
                return None
            if frame is None:
                self._close_stepper()
                return None
            if part_id is not None:
                self._part_ids[frame.frame_id] = part_id
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
        mode: Mode = "triggered" if triggered or backpressure else "free-run"
        holder: list[Pipeline] = []
        pipeline = Pipeline(
            source,
            self._models.engine,
            self._judge,
            [self._tag, self._kept.add, self._store_result, self._publish],
            mode=mode,
            # Backpressure needs only enough queued frames to fill a batch; a deeper queue
            # would just add waiting time to every frame's latency.
            queue_size=2 * self.max_batch if backpressure else None,
            max_batch=self.max_batch,
            sync=sync,
            limit=limit,
            alarm_when_full=not backpressure,
            on_error=self._error,
            on_alarm=self._alarm,
            on_finished=lambda: self._finished(holder[0]),
            on_fault=self._on_fault,
            rules_fn=lambda: self._rules,
            frame_check=recipe_frame_check(
                self._recipe,
                lambda: self._rules,
                lambda: self.model_card,
                lambda message: self._warn(f"recipe: {message}"),
            ),
            max_model_faults=self._recipe.max_model_faults,
            drop_alarm_pct=self._recipe.source.drop_alarm_pct,
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
        counts = f"{st.judged} judged, {st.errors} error, {st.dropped} dropped"
        if st.fault is None:
            self.log_event("state", f"stopped: {counts}")
        # A stop asked for by someone, or the end of the source / the limit / a FAULT (system).
        by, self._stop_by = self._stop_by, None
        why = "stopped" if by else ("fault" if st.fault else "source finished")
        role, user = by or ("system", None)
        self.audit_record(
            "station.stop", role=role, user=user, target=self._spec,
            detail={"why": why, "counts": counts},
        )  # fmt: skip
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

    def _judge(
        self, frame: Frame, prob: NDArray[np.float32], class_prob: NDArray[np.uint8] | None = None
    ) -> Inspection:
        pixel_mm = self._recipe.pixel_size_mm
        return judge(prob, self._rules, pixel_size_mm=pixel_mm, frame_id=frame.frame_id,
                     source=frame.source, timestamp=frame.timestamp, class_prob=class_prob,
                     class_names=self.model_card.class_names)  # fmt: skip

    def _tag(self, result: FrameResult) -> None:
        # First sink, before anyone else sees the result: a triggered job's part id.
        part_id = self._part_ids.pop(result.frame.frame_id, None)
        if part_id is None and self._next_tags:
            with self._lock:
                part_id = self._next_tags.popleft() if self._next_tags else None
        if part_id is not None:
            result.extra["part_id"] = part_id

    def tag_next_result(self, part_id: str) -> None:
        """While running: the next result that comes out carries ``part_id`` (a PLC job)."""
        with self._lock:
            self._next_tags.append(part_id)

    def _store_result(self, result: FrameResult) -> None:
        self._store.add(result, recipe_version=self._recipe.version)

    def _publish(self, result: FrameResult) -> None:
        if result.inspection.verdict == "ERROR":
            meta = result.frame.metadata
            self.log_event(
                "frame_error",
                result.inspection.error or "not judged",
                frame_id=result.frame.frame_id,
                file=meta.get("file") or (str(meta["path"]) if "path" in meta else None),
            )
        self._emit("result", result)
        self._emit_stats()

    def _emit_stats(self, *, force: bool = False) -> None:
        if self._stats_throttle.ready() or force:
            self._emit("stats", self.stats())

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
        store = self._store
        return SessionStats.combine(
            judged=judged,
            passed=passed,
            ng=ng,
            errors=self._kept.errors,
            runs=runs,
            current=current,
            last_run=self._last_run,
            store_failures=int(getattr(store, "failures", 0)),
            stored=int(getattr(store, "stored", 0)),
            journaled=int(getattr(store, "journaled", 0)),
            lost=int(getattr(store, "lost", 0)),
            model_id=self.model_card.model_id or self.model_card.name,
            fault=self._fault,
        )

    def close(self) -> None:
        """Stop, join, flush and close the store and the engines (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        self._close_stepper()
        self._store.close()
        if self.audit is not None:
            self.audit.close()
        for engine in self._models.engines():
            _close_quietly(engine)

    def __enter__(self) -> InspectionSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

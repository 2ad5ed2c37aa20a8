"""Acquisition thread -> bounded queue -> inference worker -> judge -> sinks.

One thread per stage (STYLE §3). The acquisition thread only iterates ``source.frames()`` and puts
frames into a small queue; the inference worker takes every frame that is waiting (up to
``max_batch``), runs one ``predict_maps`` call on them, judges each map and hands the
:class:`FrameResult` to the sinks.

Two queue policies:

* ``free-run``: a queue of one or two frames where the newest frame replaces the oldest. A slow
  engine costs frames, never latency; each drop is counted and reported on the next result as
  ``dropped_before``.
* ``triggered``: every frame is a part that needs a verdict, so nothing is dropped. The queue is
  deeper; when it fills, the acquirer waits (backpressure) and a "line too fast" alarm is raised.

``sync=True`` runs both stages in the caller's thread inside ``start()`` so tests are
deterministic (napari's ``force_sync`` idea).

Fail-safe accounting: every frame taken from the source ends as exactly one result — PASS, NG or
ERROR (not judged: unreadable, model fault such as a NaN map, judge failure, station in FAULT) —
or as a counted drop, so ``produced == judged + errors + dropped`` once the pipeline has finished.
``max_model_faults`` model faults in a row, a source that fails for good, or a recipe that does
not fit the first frame put the pipeline into FAULT: acquisition stops, what is queued is answered
ERROR, and ``fault`` says why. ``stop()`` stops acquiring and lets the worker finish what is
queued (bounded by ``timeout``), so a clean stop loses no verdict.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from app.station._frame_queue import FrameQueue, Queued
from app.station._health import (
    DEFAULT_DROP_ALARM_PCT,
    DEFAULT_MAX_MODEL_FAULTS,
    DropMonitor,
    ModelHealth,
)
from app.station._judging import JudgingMixin
from app.station.frame import Frame
from app.station.inspection import FrameResult, Inspection, Rules
from app.station.sources.base import Source, SourceError
from app.station.stats import LatencyWindow, PipelineStats, RateMeter
from engines.protocol import Engine

log = logging.getLogger(__name__)

Mode = Literal["free-run", "triggered"]
JudgeFn = Callable[[Frame, NDArray[np.float32]], Inspection]
Sink = Callable[[FrameResult], None]
FrameCheck = Callable[[Frame], "str | None"]  # a reason the recipe cannot judge this frame

DEFAULT_QUEUE_SIZE: dict[str, int] = {"free-run": 1, "triggered": 32}
ACQUIRER_JOIN_S = 5.0  # a camera fetch times out well within this
ALARM_HOLD_S = 2.0  # how long "line too fast" stays visible after the queue was last full
DROP_ALARM_HOLD_S = 5.0  # how long the free-run drop-rate alarm stays visible


class Pipeline(JudgingMixin):
    """Runs frames from a source through an engine and a judge into sinks.

    Parameters
    ----------
    source : Source
        Iterated on the acquisition thread; closed by ``stop()`` or when exhausted.
    engine : Engine
        Driven only by the inference worker (engines are not thread-safe).
    judge_fn : callable
        ``judge_fn(frame, prob) -> Inspection``. The pipeline fills in ``model_id`` (from the
        engine that made the map) and the stage timings.
    sinks : sequence of callables
        Each gets every :class:`FrameResult` on the worker thread. A sink that raises is logged
        and counted (``sink_errors``); the others still run and the worker goes on.
    mode : {"free-run", "triggered"}, optional
        Queue policy (see the module docstring). Default: "triggered" when ``source.triggered``.
    queue_size : int, optional
        Default 1 for free-run, 32 for triggered.
    max_batch : int
        Most frames handed to one ``predict_maps`` call (only frames already waiting are taken).
    sync : bool
        Run acquisition and inference in the caller's thread inside ``start()``.
    limit : int, optional
        Stop after this many results (PASS + NG + ERROR; the CLI's ``--limit``). Frames dropped
        in free-run do not count towards it.
    alarm_when_full : bool
        Raise "line too fast" when the triggered queue fills. False for offline sources (a
        folder read as fast as inference allows), where a full queue is plain backpressure.
    on_error, on_alarm : callable, optional
        Called with a message: a source failure (the pipeline then stops) or a failed batch;
        the "line too fast" alarm when it is raised.
    on_finished : callable, optional
        Called once on the worker thread when the pipeline has finished (source exhausted,
        source error or stop).
    on_fault : callable, optional
        Called once with the reason when the pipeline enters FAULT.
    rules_fn : callable, optional
        The rules in force, recorded on ERROR results (they were not applied).
    frame_check : callable, optional
        ``check(frame) -> reason | None`` on every readable frame before inference (cheap: the
        session's checker looks again only when the frame size changes): a reason faults the
        run before that frame is judged (a recipe whose zones miss the frame, ...).
    max_model_faults : int
        Consecutive model faults (inference error, non-finite or out-of-range map) before FAULT.
    drop_alarm_pct : float
        Free-run only: an alarm when more than this share of acquired frames is dropped.
    """

    def __init__(
        self,
        source: Source,
        engine: Engine,
        judge_fn: JudgeFn,
        sinks: Sequence[Sink] = (),
        *,
        mode: Mode | None = None,
        queue_size: int | None = None,
        max_batch: int = 1,
        sync: bool = False,
        limit: int | None = None,
        alarm_when_full: bool = True,
        on_error: Callable[[str], None] | None = None,
        on_alarm: Callable[[str], None] | None = None,
        on_finished: Callable[[], None] | None = None,
        on_fault: Callable[[str], None] | None = None,
        rules_fn: Callable[[], Rules] | None = None,
        frame_check: FrameCheck | None = None,
        max_model_faults: int = DEFAULT_MAX_MODEL_FAULTS,
        drop_alarm_pct: float = DEFAULT_DROP_ALARM_PCT,
    ) -> None:
        if mode is None:
            mode = "triggered" if getattr(source, "triggered", False) else "free-run"
        if mode not in DEFAULT_QUEUE_SIZE:
            raise ValueError(f"mode must be 'free-run' or 'triggered', not {mode!r}")
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, not {max_batch}")
        self.source = source
        self.mode: Mode = mode
        self.max_batch = max_batch
        self.sync = sync
        self.limit = limit
        self.alarm_when_full = alarm_when_full
        self._engine = engine
        self._judge = judge_fn
        self._sinks = list(sinks)
        self._on_error = on_error
        self._on_alarm = on_alarm
        self._on_finished = on_finished
        self._on_fault = on_fault
        self._rules_fn = rules_fn
        self._frame_check = frame_check
        self._health = ModelHealth(max_model_faults)
        self._drop_monitor = DropMonitor(drop_alarm_pct)
        self._fault: str | None = None
        self._stop_acquiring = threading.Event()  # acquisition ends; the worker drains the queue
        self._queue = FrameQueue(
            queue_size or DEFAULT_QUEUE_SIZE[mode], drop_oldest=(mode == "free-run")
        )
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._finishing = False
        self._started = False
        self._source_closed = False
        self._threads: list[threading.Thread] = []
        self._start_lock = threading.Lock()
        # Held by whoever is running a batch: lets a caller wait until an engine is idle.
        self._batch_lock = threading.Lock()
        self._lock = threading.Lock()  # counters below
        self._produced = self._judged = self._errors = self._judge_errors = 0
        self._engine_errors = self._sink_errors = self._batches = self._batched_frames = 0
        self._alarms = 0
        self._last_full = float("-inf")
        self._drop_alarm: str | None = None
        self._last_drop_alarm = float("-inf")
        self._carry_drops = 0  # drops not yet reported because their batch produced no result
        self._rate = RateMeter()
        self._latency = LatencyWindow()
        self.error: str | None = None  # the source failure that ended the run, if any

    # -- control -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the threads (or, with ``sync=True``, run to the end in this thread)."""
        if self._started:
            raise RuntimeError("a pipeline runs once; build a new one to run again")
        self._started = True
        if self.sync:
            self._run_sync()
            return
        # Under the start lock: a stop() from another thread sees both threads started or none.
        with self._start_lock:
            threads = [
                threading.Thread(target=self._acquire_loop, name="station-acquire", daemon=True),
                threading.Thread(target=self._infer_loop, name="station-infer", daemon=True),
            ]
            self._threads = threads
            for t in threads:
                t.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop acquisition, close the source, judge what is queued and join. Idempotent.

        The worker finishes the frames already queued (a few at most), so a clean stop loses no
        verdict; what is still queued after ``timeout`` is discarded and counted as dropped.
        Returns False if a thread did not end within ``timeout`` seconds (daemon; logged).
        """
        self._stop_acquiring.set()
        self._close_source()
        self._queue.close()
        joined = True
        deadline = time.monotonic() + timeout
        with self._start_lock:  # a start() in progress on another thread finishes first
            threads = list(self._threads)
        for t in threads:
            if t is threading.current_thread():  # stop() called from a sink or on_finished
                continue
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                self._stop.set()  # past the deadline: the worker discards the rest
                joined = False
                log.warning("pipeline thread %s did not stop within %.1f s", t.name, timeout)
        self._stop.set()
        self._queue.discard()  # normally empty already (the worker drains before finishing)
        if not self._started:
            self._finish()  # never started: nothing else will mark it finished
        return joined

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the pipeline has finished; False on timeout."""
        return self._finished.wait(timeout)

    @property
    def running(self) -> bool:
        return self._started and not self._finished.is_set()

    @property
    def fault(self) -> str | None:
        """Why the pipeline entered FAULT (model faults, source lost, recipe misfit), or None."""
        return self._fault

    def swap_engine(self, engine: Engine) -> Engine:
        """Use ``engine`` from the next batch on; returns the engine it replaces.

        The batch in flight finishes with the old engine, so the caller must not close the
        returned engine before :meth:`engine_idle` says so.
        """
        with self._lock:
            old, self._engine = self._engine, engine
        return old

    @property
    def engine(self) -> Engine:
        return self._engine

    @contextlib.contextmanager
    def engine_idle(self) -> Iterator[None]:
        """While inside, no batch is running (so a replaced engine can be closed safely)."""
        with self._batch_lock:
            yield

    def process(self, frames: Sequence[Frame]) -> list[FrameResult]:
        """Run ``frames`` through engine, judge and sinks in the caller's thread (single step)."""
        now = time.perf_counter()
        with self._lock:
            self._produced += len(frames)
        return self._process([Queued(f, now, 0.0) for f in frames], 0)

    # -- stats -------------------------------------------------------------------------------

    def stats(self) -> PipelineStats:
        """A snapshot of the counters (cheap; safe from any thread)."""
        mean, p95 = self._latency.summary()
        source_skipped = int(getattr(getattr(self.source, "stats", None), "skipped", 0))
        with self._lock:
            alarm = self._alarm_text() if self._alarm_active() else None
            if alarm is None and time.monotonic() - self._last_drop_alarm < DROP_ALARM_HOLD_S:
                alarm = self._drop_alarm
            return PipelineStats(
                fps=round(self._rate.rate(), 3),
                latency_ms=mean,
                latency_p95_ms=p95,
                produced=self._produced,
                judged=self._judged,
                errors=self._errors,
                dropped=self._queue.dropped,
                skipped=source_skipped,
                failed=self._errors,
                engine_errors=self._engine_errors,
                model_faults=self._health.total,
                sink_errors=self._sink_errors,
                batches=self._batches,
                mean_batch=round(self._batched_frames / self._batches, 3) if self._batches else 0.0,
                queue_depth=len(self._queue),
                queue_size=self._queue.maxsize,
                mode=self.mode,
                alarm=alarm,
                alarms=self._alarms,
                running=self.running,
                fault=self._fault,
                drop_pct=round(self._drop_monitor.last_pct, 1),
            )

    def _alarm_text(self) -> str:
        return (
            f"line too fast: the inference queue is full ({self._queue.maxsize} frames); "
            "acquisition waits for inference"
        )

    def _alarm_active(self) -> bool:
        return time.monotonic() - self._last_full < ALARM_HOLD_S

    def _raise_alarm(self) -> None:
        # Called by the queue (triggered mode, queue full). Callback only on a new alarm, so a
        # line that stays too fast raises it once per hold period instead of once per frame.
        if not self.alarm_when_full:
            return
        with self._lock:
            was_active = self._alarm_active()
            self._last_full = time.monotonic()
            if was_active:
                return
            self._alarms += 1
        message = self._alarm_text()
        log.warning("%s: %s", self.source.name, message)
        self._call(self._on_alarm, message)

    # -- the two stages ----------------------------------------------------------------------

    def _frames(self) -> Generator[tuple[Frame, float], None, None]:
        """Source frames with the time spent getting each, until ``limit`` results are due."""
        frames = self.source.frames()
        try:
            t = time.perf_counter()
            for frame in frames:
                # A source that paces itself (folder at N fps) reports its own read time, so the
                # "acquire" latency is the cost of getting the image, not the pacing sleep.
                acquire_ms = float(
                    frame.metadata.get("read_ms", (time.perf_counter() - t) * 1000.0)
                )
                if self._stop.is_set() or self._stop_acquiring.is_set():
                    return
                with self._lock:
                    self._produced += 1
                yield frame, acquire_ms
                if self._limit_reached():
                    return
                t = time.perf_counter()
        finally:
            close = getattr(frames, "close", None)
            if close is not None:  # end the source's generator now, not at garbage collection
                close()

    def _limit_reached(self) -> bool:
        # Frames that will get a result = acquired - dropped (a free-run drop happens only when a
        # frame is put, so once this reaches the limit no later drop can take one away).
        if self.limit is None:
            return False
        with self._lock:
            return self._produced - self._queue.dropped >= self.limit

    def _acquire_loop(self) -> None:
        try:
            with contextlib.closing(self._frames()) as frames:
                for frame, acquire_ms in frames:
                    item = Queued(frame, time.perf_counter(), acquire_ms)
                    if not self._queue.put(item, self._stop, self._raise_alarm):
                        break
                    if self.mode == "free-run":
                        self._check_drops()
        except Exception as exc:  # noqa: BLE001 - any source failure ends the run the same way
            self._source_failed(exc)
        finally:
            self._queue.close()  # the worker drains what is queued, then finishes

    def _check_drops(self) -> None:
        with self._lock:
            produced = self._produced
        message = self._drop_monitor.check(produced, self._queue.dropped)
        if message is None:
            return
        with self._lock:
            new = time.monotonic() - self._last_drop_alarm >= DROP_ALARM_HOLD_S
            self._drop_alarm, self._last_drop_alarm = message, time.monotonic()
            if new:
                self._alarms += 1
        if new:
            log.warning("%s: %s", self.source.name, message)
            self._call(self._on_alarm, message)

    def _infer_loop(self) -> None:
        try:
            while True:
                got = self._queue.get_batch(self.max_batch, timeout=0.1)
                if got is None:
                    break
                batch, drops = got
                if self._stop.is_set():  # stopping: what is still queued is discarded
                    self._queue.count_dropped(len(batch))
                    break
                if batch:
                    self._process(batch, drops)
        finally:
            self._close_source()
            # The acquirer ends promptly once the queue is closed; waiting for it here makes the
            # counts final before on_finished reports them.
            self._queue.close()  # also frees an acquirer waiting for room if this loop failed
            self._threads[0].join(ACQUIRER_JOIN_S)
            discarded = self._queue.discard()
            if discarded:
                log.info("%d queued frame(s) discarded at stop", discarded)
            self._finish()

    def _run_sync(self) -> None:
        try:
            with contextlib.closing(self._frames()) as frames:
                while not self._stop.is_set():
                    batch: list[Queued] = []
                    for frame, acquire_ms in frames:
                        batch.append(Queued(frame, time.perf_counter(), acquire_ms))
                        if len(batch) >= self.max_batch:
                            break
                    if not batch:
                        break
                    self._process(batch, 0)
        except Exception as exc:  # noqa: BLE001
            self._source_failed(exc)
        finally:
            self._close_source()
            self._finish()

    def _source_failed(self, exc: Exception) -> None:
        if isinstance(exc, SourceError):
            message = f"source {self.source.name}: {exc}"
            log.error("%s", message)
        else:
            message = f"source {self.source.name} failed: {type(exc).__name__}: {exc}"
            log.exception("%s", message)
        self.error = message
        self._call(self._on_error, message)
        self._trip(message)

    def _deliver(self, result: FrameResult) -> None:
        for sink in self._sinks:
            try:
                sink(result)
            except Exception:  # noqa: BLE001 - a broken sink must not kill the worker
                with self._lock:
                    self._sink_errors += 1
                log.exception("result sink %r failed on frame %d", sink, result.frame.frame_id)

    # -- ending ------------------------------------------------------------------------------

    def _close_source(self) -> None:
        with self._lock:
            if self._source_closed:
                return
            self._source_closed = True
        try:
            self.source.close()
        except Exception:  # noqa: BLE001 - closing must never prevent the rest of the stop
            log.exception("closing source %s failed", self.source.name)

    def _finish(self) -> None:
        with self._lock:
            if self._finishing:
                return
            self._finishing = True
        # Callback first, then the event: when wait() returns, the listeners have been told.
        self._call(self._on_finished)
        self._finished.set()

    @staticmethod
    def _call(callback: Callable[..., None] | None, *args: str) -> None:
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:  # noqa: BLE001 - a listener's bug is not the pipeline's failure
            log.exception("pipeline callback %r failed", callback)

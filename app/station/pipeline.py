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
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from app.station._frame_queue import FrameQueue, Queued
from app.station.frame import Frame
from app.station.inspection import FrameResult, Inspection
from app.station.sources.base import Source, SourceError
from app.station.stats import LatencyWindow, PipelineStats, RateMeter
from engines.predict import predict_maps
from engines.protocol import Engine

log = logging.getLogger(__name__)

Mode = Literal["free-run", "triggered"]
JudgeFn = Callable[[Frame, NDArray[np.float32]], Inspection]
Sink = Callable[[FrameResult], None]

DEFAULT_QUEUE_SIZE: dict[str, int] = {"free-run": 1, "triggered": 32}
ACQUIRER_JOIN_S = 5.0  # a camera fetch times out well within this
ALARM_HOLD_S = 2.0  # how long "line too fast" stays visible after the queue was last full


class Pipeline:
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
        Stop acquiring after this many frames (the CLI's ``--limit``).
    alarm_when_full : bool
        Raise "line too fast" when the triggered queue fills. False for offline sources (a
        folder read as fast as inference allows), where a full queue is plain backpressure.
    on_error, on_alarm : callable, optional
        Called with a message: a source failure (the pipeline then stops) or a failed batch;
        the "line too fast" alarm when it is raised.
    on_finished : callable, optional
        Called once on the worker thread when the pipeline has finished (source exhausted,
        source error or stop).
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
        self._queue = FrameQueue(
            queue_size or DEFAULT_QUEUE_SIZE[mode], drop_oldest=(mode == "free-run")
        )
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._finishing = False
        self._started = False
        self._source_closed = False
        self._threads: list[threading.Thread] = []
        # Held by whoever is running a batch: lets a caller wait until an engine is idle.
        self._batch_lock = threading.Lock()
        self._lock = threading.Lock()  # counters below
        self._produced = self._judged = self._failed = 0
        self._engine_errors = self._sink_errors = self._batches = self._batched_frames = 0
        self._alarms = 0
        self._last_full = float("-inf")
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
        self._threads = [
            threading.Thread(target=self._acquire_loop, name="station-acquire", daemon=True),
            threading.Thread(target=self._infer_loop, name="station-infer", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def stop(self, timeout: float = 5.0) -> bool:
        """Stop acquisition, close the source and join the threads. Idempotent.

        Frames still queued are discarded and counted as dropped. Returns False if a thread did
        not end within ``timeout`` seconds (it is a daemon thread and is logged).
        """
        self._stop.set()
        self._close_source()
        self._queue.close()
        joined = True
        deadline = time.monotonic() + timeout
        for t in self._threads:
            if t is threading.current_thread():  # stop() called from a sink or on_finished
                continue
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                joined = False
                log.warning("pipeline thread %s did not stop within %.1f s", t.name, timeout)
        self._queue.discard()  # normally empty already (the worker discards before finishing)
        if not self._started:
            self._finish()  # never started: nothing else will mark it finished
        return joined

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the pipeline has finished; False on timeout."""
        return self._finished.wait(timeout)

    @property
    def running(self) -> bool:
        return self._started and not self._finished.is_set()

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
            return PipelineStats(
                fps=round(self._rate.rate(), 3),
                latency_ms=mean,
                latency_p95_ms=p95,
                produced=self._produced,
                judged=self._judged,
                dropped=self._queue.dropped,
                skipped=source_skipped + self._failed,
                failed=self._failed,
                engine_errors=self._engine_errors,
                sink_errors=self._sink_errors,
                batches=self._batches,
                mean_batch=round(self._batched_frames / self._batches, 3) if self._batches else 0.0,
                queue_depth=len(self._queue),
                queue_size=self._queue.maxsize,
                mode=self.mode,
                alarm=self._alarm_text() if self._alarm_active() else None,
                alarms=self._alarms,
                running=self.running,
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

    def _frames(self) -> Iterator[tuple[Frame, float]]:
        """Source frames with the time spent getting each, up to ``limit``."""
        frames = self.source.frames()
        try:
            count = 0
            t = time.perf_counter()
            for frame in frames:
                # A source that paces itself (folder at N fps) reports its own read time, so the
                # "acquire" latency is the cost of getting the image, not the pacing sleep.
                acquire_ms = float(
                    frame.metadata.get("read_ms", (time.perf_counter() - t) * 1000.0)
                )
                if self._stop.is_set():
                    return
                with self._lock:
                    self._produced += 1
                yield frame, acquire_ms
                count += 1
                if self.limit is not None and count >= self.limit:
                    return
                t = time.perf_counter()
        finally:
            close = getattr(frames, "close", None)
            if close is not None:  # end the source's generator now, not at garbage collection
                close()

    def _acquire_loop(self) -> None:
        try:
            with contextlib.closing(self._frames()) as frames:
                for frame, acquire_ms in frames:
                    item = Queued(frame, time.perf_counter(), acquire_ms)
                    if not self._queue.put(item, self._stop, self._raise_alarm):
                        break
        except Exception as exc:  # noqa: BLE001 - any source failure ends the run the same way
            self._source_failed(exc)
        finally:
            self._queue.close()  # the worker drains what is queued, then finishes

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

    def _process(self, batch: list[Queued], drops: int) -> list[FrameResult]:
        with self._batch_lock:
            engine = self._engine  # read once: a swap lands between batches
            t_taken = time.perf_counter()
            with self._lock:
                drops += self._carry_drops
                self._carry_drops = 0
                self._batches += 1
                self._batched_frames += len(batch)
            try:
                probs = predict_maps(engine, [q.frame.image for q in batch])
            except Exception as exc:  # noqa: BLE001 - one bad batch must not end the run
                with self._lock:
                    self._engine_errors += 1
                    self._failed += len(batch)
                    self._carry_drops += drops
                message = f"inference failed on {len(batch)} frame(s), skipped: {exc}"
                log.exception("%s", message)
                self._call(self._on_error, message)
                return []
            infer_ms = (time.perf_counter() - t_taken) * 1000.0
            model_id = engine.card.model_id or engine.card.name
            results = []
            for q, prob in zip(batch, probs, strict=True):
                result = self._judge_one(q, prob, t_taken, infer_ms, model_id, drops)
                if result is not None:
                    drops = 0
                    results.append(result)
            if drops:
                with self._lock:
                    self._carry_drops += drops
        for result in results:
            self._deliver(result)
        return results

    def _judge_one(
        self,
        q: Queued,
        prob: NDArray[np.float32],
        t_taken: float,
        infer_ms: float,
        model_id: str,
        drops: int,
    ) -> FrameResult | None:
        prob = np.asarray(prob, dtype=np.float32)
        prob.flags.writeable = False  # kept for re-judging and shared across threads
        t0 = time.perf_counter()
        try:
            inspection = self._judge(q.frame, prob)
        except Exception as exc:  # noqa: BLE001
            with self._lock:
                self._failed += 1
            message = f"judging frame {q.frame.frame_id} failed, skipped: {exc}"
            log.exception("%s", message)
            self._call(self._on_error, message)
            return None
        judge_ms = (time.perf_counter() - t0) * 1000.0
        timings = {
            "acquire": q.acquire_ms,
            "queue": (t_taken - q.t_put) * 1000.0,
            "infer": infer_ms,
            "judge": judge_ms,
        }
        timings["total"] = sum(timings.values())
        timings = {k: round(v, 3) for k, v in timings.items()}
        extra = {k: v for k, v in inspection.timings_ms.items() if k not in timings}
        inspection = replace(inspection, model_id=model_id, timings_ms={**timings, **extra})
        self._latency.add(timings)
        self._rate.add()
        with self._lock:
            self._judged += 1
        return FrameResult(frame=q.frame, prob=prob, inspection=inspection, dropped_before=drops)

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

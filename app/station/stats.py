"""Counters and sliding windows for the pipeline and the session, and the snapshots they publish.

The snapshots (:class:`PipelineStats`, :class:`SessionStats`) are frozen: the worker thread builds
one, hands it to the UI thread and never touches it again. The windows are small and guarded by a
lock because they are written by the inference worker and read by whoever asks for ``stats()``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

STAGES: tuple[str, ...] = ("acquire", "queue", "infer", "judge", "total")


@dataclass(frozen=True)
class PipelineStats:
    """A snapshot of one pipeline's counters.

    Attributes
    ----------
    fps : float
        Judged frames per second over the last few seconds (sliding window).
    latency_ms, latency_p95_ms : Mapping[str, float]
        Mean and 95th percentile per stage (``acquire``, ``queue``, ``infer``, ``judge``,
        ``total``) over the last few hundred frames. ``infer`` is the time of the batch the frame
        was in.
    produced : int
        Frames taken from the source.
    judged : int
        Frames judged PASS or NG.
    errors : int
        Frames answered ERROR (not judged: unreadable, model fault, judge failure, FAULT).
    dropped : int
        Frames discarded by the free-run queue (newest wins) or still queued when ``stop()``
        timed out. Invariant once finished: ``produced == judged + errors + dropped``.
    skipped : int
        What the source itself discarded before handing a frame over (camera buffers the driver
        dropped); such frames were never acquired, so they are outside the invariant.
    failed : int
        Old name of ``errors``.
    """

    fps: float = 0.0
    latency_ms: Mapping[str, float] = field(default_factory=dict)
    latency_p95_ms: Mapping[str, float] = field(default_factory=dict)
    produced: int = 0
    judged: int = 0
    errors: int = 0
    dropped: int = 0
    skipped: int = 0
    failed: int = 0
    engine_errors: int = 0
    model_faults: int = 0
    sink_errors: int = 0
    batches: int = 0
    mean_batch: float = 0.0
    queue_depth: int = 0
    queue_size: int = 0
    mode: str = "free-run"
    alarm: str | None = None  # "line too fast ..." while the triggered queue is (recently) full
    alarms: int = 0  # how many times the alarm was raised
    running: bool = False
    fault: str | None = None  # why the run stopped in FAULT
    drop_pct: float = 0.0  # free-run: share of acquired frames dropped in the last window


@dataclass(frozen=True)
class SessionStats:
    """What the operator's counters show: the pipeline's snapshot plus verdict totals.

    ``judged``/``passed``/``ng``/``errors`` count every result the session has seen since it was
    created (across start/stop), so the yield survives a pause; ``judged`` = PASS + NG.
    ``acquired`` = ``passed + ng + errors + dropped`` once the runs have finished. The yield is
    PASS over every result, ERROR included: a part that was not inspected is not a good part.
    ``stored``/``journaled``/``lost`` are the results database's: written, waiting in the journal
    for the database, and lost for good (the CLI then exits non-zero).
    """

    judged: int = 0
    passed: int = 0
    ng: int = 0
    errors: int = 0
    acquired: int = 0
    yield_pct: float = 0.0
    fps: float = 0.0
    latency_ms: Mapping[str, float] = field(default_factory=dict)
    latency_p95_ms: Mapping[str, float] = field(default_factory=dict)
    dropped: int = 0
    skipped: int = 0
    store_failures: int = 0
    stored: int = 0
    journaled: int = 0
    lost: int = 0
    engine_errors: int = 0
    model_faults: int = 0
    sink_errors: int = 0
    queue_depth: int = 0
    alarm: str | None = None
    running: bool = False
    model_id: str = ""
    fault: str | None = None
    drop_pct: float = 0.0

    @classmethod
    def combine(
        cls,
        *,
        judged: int,
        passed: int,
        ng: int,
        runs: Sequence[PipelineStats],
        current: PipelineStats | None,
        last_run: PipelineStats | None,
        store_failures: int,
        model_id: str,
        errors: int = 0,
        stored: int = 0,
        journaled: int = 0,
        lost: int = 0,
        fault: str | None = None,
    ) -> SessionStats:
        """Totals over every pipeline the session ran (``runs``, including ``current``).

        Rates, queue depth and the alarm come from ``current`` while it runs; the latencies of
        ``last_run`` stay shown after a stop, so the operator still sees what the line did.
        """
        active = current is not None and current.running
        shown = current or last_run
        live = shown if active else None
        results = passed + ng + errors
        return cls(
            judged=judged,
            passed=passed,
            ng=ng,
            errors=errors,
            acquired=sum(r.produced for r in runs),
            yield_pct=round(100.0 * passed / results, 2) if results else 0.0,
            fps=live.fps if live else 0.0,
            latency_ms=shown.latency_ms if shown else {},
            latency_p95_ms=shown.latency_p95_ms if shown else {},
            dropped=sum(r.dropped for r in runs),
            skipped=sum(r.skipped for r in runs),
            store_failures=store_failures,
            stored=stored,
            journaled=journaled,
            lost=lost,
            engine_errors=sum(r.engine_errors for r in runs),
            model_faults=sum(r.model_faults for r in runs),
            sink_errors=sum(r.sink_errors for r in runs),
            queue_depth=live.queue_depth if live else 0,
            alarm=live.alarm if live else None,
            running=active,
            model_id=model_id,
            fault=fault,
            drop_pct=live.drop_pct if live else 0.0,
        )


class RateMeter:
    """Events per second over a sliding time window (``window_s``)."""

    def __init__(self, window_s: float = 2.0) -> None:
        self._window_s = window_s
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def add(self, t: float | None = None) -> None:
        t = time.monotonic() if t is None else t
        with self._lock:
            self._times.append(t)
            self._trim(t)

    def _trim(self, now: float) -> None:
        limit = now - self._window_s
        while self._times and self._times[0] < limit:
            self._times.popleft()

    def rate(self, now: float | None = None) -> float:
        """Events per second; 0 until two events fall inside the window."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._trim(now)
            if len(self._times) < 2:
                return 0.0
            # Measured between the first and last event in the window, so a burst followed by
            # silence still reports the rate it ran at until it falls out of the window.
            span = self._times[-1] - self._times[0]
            return (len(self._times) - 1) / span if span > 0 else 0.0


class LatencyWindow:
    """Per-stage latencies of the last ``size`` frames: mean and 95th percentile."""

    def __init__(self, size: int = 300) -> None:
        self._samples: dict[str, deque[float]] = {}
        self._size = size
        self._lock = threading.Lock()

    def add(self, timings_ms: Mapping[str, float]) -> None:
        with self._lock:
            for stage, ms in timings_ms.items():
                window = self._samples.get(stage)
                if window is None:
                    window = self._samples[stage] = deque(maxlen=self._size)
                window.append(float(ms))

    def summary(self) -> tuple[Mapping[str, float], Mapping[str, float]]:
        """Return ``(mean_ms, p95_ms)``, both keyed by stage, read-only."""
        with self._lock:
            data = {k: np.fromiter(v, dtype=np.float64) for k, v in self._samples.items() if v}
        mean = {k: round(float(v.mean()), 3) for k, v in data.items()}
        p95 = {k: round(float(np.percentile(v, 95)), 3) for k, v in data.items()}
        return MappingProxyType(mean), MappingProxyType(p95)


class Throttle:
    """``ready()`` is True at most once every ``interval_s`` (e.g. stats events ~4 times a second)."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._last = float("-inf")
        self._lock = threading.Lock()

    def ready(self, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            if now - self._last < self._interval_s:
                return False
            self._last = now
            return True

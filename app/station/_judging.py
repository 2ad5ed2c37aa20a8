"""The inference worker's batch step: every frame of a batch ends as PASS, NG or ERROR.

A mixin of :class:`~app.station.pipeline.Pipeline` (it uses the pipeline's counters, engine,
judge and health watches), kept apart so the fail-safe rules read in one place:

- an unreadable frame (``frame.readable`` False) is ERROR with the source's reason;
- the first readable frame of a run is checked against the recipe; a misfit faults the run;
- an inference exception, or a map that is not finite or lies outside [0, 1], is a model fault:
  ERROR, and ``max_model_faults`` of them in a row put the pipeline into FAULT;
- a judge that raises gives ERROR; once in FAULT, what is still queued is answered ERROR.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from app.station._frame_queue import Queued
from app.station._health import ModelHealth, output_fault
from app.station.frame import Frame
from app.station.inspection import FrameResult, Inspection, Rules, error_inspection
from app.station.stats import LatencyWindow, RateMeter
from engines.predict import predict_class_maps
from engines.protocol import Engine

log = logging.getLogger("app.station.pipeline")


class JudgingMixin:
    """``_process(batch, drops)`` for :class:`~app.station.pipeline.Pipeline`."""

    _batch_lock: threading.Lock
    _lock: threading.Lock
    _engine: Engine
    _judge: Callable[[Frame, NDArray[np.float32]], Inspection]
    _rules_fn: Callable[[], Rules] | None
    _frame_check: Callable[[Frame], str | None] | None
    _health: ModelHealth
    _fault: str | None
    _stop_acquiring: threading.Event
    _carry_drops: int
    _batches: int
    _batched_frames: int
    _engine_errors: int
    _judge_errors: int
    _judged: int
    _errors: int
    _rate: RateMeter
    _latency: LatencyWindow

    if TYPE_CHECKING:  # provided by the pipeline

        def _deliver(self, result: FrameResult) -> None: ...
        def _close_source(self) -> None: ...
        def _call(self, callback: Callable[..., None] | None, *args: str) -> None: ...

        _on_fault: Callable[[str], None] | None

    def _process(self, batch: list[Queued], drops: int) -> list[FrameResult]:
        """Every frame of ``batch`` ends as one result: PASS, NG or ERROR (with the reason)."""
        with self._batch_lock:
            engine = self._engine  # read once: a swap lands between batches
            t_taken = time.perf_counter()
            with self._lock:
                drops += self._carry_drops
                self._carry_drops = 0
                self._batches += 1
                self._batched_frames += len(batch)
            model_id = engine.card.model_id or engine.card.name
            results: list[FrameResult | None] = [None] * len(batch)
            readable: list[int] = []
            for i, q in enumerate(batch):
                if self._fault is not None:
                    results[i] = self._error(q, f"station in FAULT ({self._fault})", model_id)
                elif not q.frame.readable:
                    why = str(q.frame.metadata.get("error", "the frame could not be read"))
                    results[i] = self._error(q, f"unreadable: {why}", model_id)
                elif self._frame_check is not None:
                    results[i] = self._checked(q, model_id)
                    if results[i] is None:
                        readable.append(i)
                else:
                    readable.append(i)
            maps: list[tuple[NDArray[np.float32], NDArray[np.float32] | None]] = []
            infer_ms = 0.0
            if readable:
                try:
                    frames = [batch[i].frame for i in readable]
                    # (defect map, class map or None for a one-class model) per frame
                    maps = predict_class_maps(
                        engine,
                        [f.image for f in frames],
                        bit_depths=[f.metadata.get("bit_depth") for f in frames],
                    )
                except Exception as exc:  # noqa: BLE001 - one bad batch must not end the run
                    with self._lock:
                        self._engine_errors += 1
                    log.exception("inference failed on %d frame(s)", len(readable))
                    for i in readable:
                        results[i] = self._model_fault(batch[i], f"inference failed: {exc}")
                    readable = []
                infer_ms = (time.perf_counter() - t_taken) * 1000.0
            for i, (prob, classes) in zip(readable, maps, strict=True):
                fault = output_fault(prob)
                if fault is None and classes is not None:
                    fault = output_fault(classes)
                if fault is not None:
                    results[i] = self._model_fault(batch[i], fault, model_id)
                    continue
                self._health.ok()
                results[i] = self._judge_one(batch[i], prob, classes, t_taken, infer_ms, model_id)
            out = [r for r in results if r is not None]
            if out and drops:
                out[0] = replace(out[0], dropped_before=drops)
        for result in out:
            self._deliver(result)
        return out

    def _checked(self, q: Queued, model_id: str) -> FrameResult | None:
        """The recipe against the frame: a problem faults the station before it is judged."""
        check = self._frame_check
        try:
            problem = check(q.frame) if check is not None else None
        except Exception as exc:  # noqa: BLE001
            problem = f"recipe check failed: {exc}"
        if problem is None:
            return None
        self._trip(f"recipe does not fit the frames: {problem}")
        return self._error(q, f"recipe does not fit the frames: {problem}", model_id)

    def _model_fault(self, q: Queued, why: str, model_id: str = "") -> FrameResult:
        message = f"model fault on frame {q.frame.frame_id}: {why}"
        if self._health.fault():
            self._trip(
                f"{self._health.limit} consecutive model faults, judging stopped "
                f"(last: {why}); check or replace the model"
            )
        return self._error(q, f"model fault: {why}", model_id, log_message=message)

    def _error(
        self, q: Queued, reason: str, model_id: str = "", *, log_message: str | None = None
    ) -> FrameResult:
        log.warning("%s", log_message or f"frame {q.frame.frame_id} not judged: {reason}")
        timings = {"acquire": round(q.acquire_ms, 3)}
        inspection = error_inspection(
            q.frame, reason, rules=self._rules_of_record(), model_id=model_id, timings_ms=timings
        )
        with self._lock:
            self._errors += 1
        return FrameResult(frame=q.frame, prob=None, inspection=inspection)

    def _rules_of_record(self) -> Rules:
        try:
            return self._rules_fn() if self._rules_fn is not None else Rules()
        except Exception:  # noqa: BLE001 - the ERROR row must still be written
            return Rules()

    def _trip(self, message: str) -> None:
        """FAULT: stop acquiring and judging, say why once (a source failure lands here too)."""
        with self._lock:
            if self._fault is not None:
                return
            self._fault = message
        log.error("FAULT: %s", message)
        self._stop_acquiring.set()
        self._close_source()  # a source waiting for its next frame returns now
        self._call(self._on_fault, message)

    def _judge_one(
        self,
        q: Queued,
        prob: NDArray[np.float32],
        classes: NDArray[np.float32] | None,
        t_taken: float,
        infer_ms: float,
        model_id: str,
    ) -> FrameResult:
        prob = np.asarray(prob, dtype=np.float32)
        prob.flags.writeable = False  # kept for re-judging and shared across threads
        extra: dict[str, object] = {}
        if classes is not None:
            # Kept as uint8 (255 = 1) for re-judging: a quarter of the float map's memory.
            class_prob = (np.clip(classes, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
            class_prob.flags.writeable = False
            extra["class_prob"] = class_prob
        t0 = time.perf_counter()
        try:
            if classes is None:
                inspection = self._judge(q.frame, prob)
            else:
                inspection = self._judge(q.frame, prob, extra["class_prob"])  # type: ignore[call-arg]  # the session's judge takes the class map
        except Exception as exc:  # noqa: BLE001
            with self._lock:
                self._judge_errors += 1
            log.exception("judging frame %d failed", q.frame.frame_id)
            return self._error(q, f"judging failed: {type(exc).__name__}: {exc}", model_id)
        judge_ms = (time.perf_counter() - t0) * 1000.0
        timings = {
            "acquire": q.acquire_ms,
            "queue": (t_taken - q.t_put) * 1000.0,
            "infer": infer_ms,
            "judge": judge_ms,
        }
        timings["total"] = sum(timings.values())
        timings = {k: round(v, 3) for k, v in timings.items()}
        stages = {k: v for k, v in inspection.timings_ms.items() if k not in timings}
        inspection = replace(inspection, model_id=model_id, timings_ms={**timings, **stages})
        self._latency.add(timings)
        self._rate.add()
        with self._lock:
            self._judged += 1
        return FrameResult(frame=q.frame, prob=prob, inspection=inspection, extra=extra)

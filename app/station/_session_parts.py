"""Pieces of :class:`~app.station.session.InspectionSession` that stand on their own.

- :class:`EventHub`: subscribers called on worker threads, isolated from each other's failures.
- :class:`ModelSlots`: the engine in use and the one before it (rollback is one swap away).
- :func:`source_options`: a recipe's ``[source]`` and ``[camera]`` as the sources' options.
- :func:`default_max_batch`: how many waiting frames to infer together on this engine.
- :class:`Stepper`: single steps through a source while the pipeline is not running.
- :class:`KeptResults`: the last results with their probability maps, and verdict totals.
- :func:`is_replay`, :func:`recipe_frame_check`: how a run treats its source and its frames.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.station.frame import Frame
from app.station.inspection import FrameResult, Rules
from app.station.pipeline import Pipeline
from app.station.recipe import Recipe
from app.station.sources.base import SourceError
from app.station.sources.spec import CameraSettings, SourceOptions, parse_spec
from app.station.stats import PipelineStats
from engines.card import ModelCard
from engines.protocol import Engine, ModelLoadError

if TYPE_CHECKING:
    from app.station.audit import AuditLog

log = logging.getLogger(__name__)

Callback = Callable[[str, Any], None]


class EventHub:
    """``subscribe(callback) -> unsubscribe``; ``emit(event, payload)`` calls every subscriber.

    A subscriber that raises is logged and the others still get the event. Subscribing or
    unsubscribing from inside a callback is allowed (emit iterates over a snapshot).
    """

    def __init__(self) -> None:
        self._subscribers: list[Callback] = []
        self._lock = threading.Lock()

    def subscribe(self, callback: Callback) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def emit(self, event: str, payload: Any) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event, payload)
            except Exception:  # noqa: BLE001 - one broken listener must not starve the rest
                log.exception("session subscriber %r failed on %r", callback, event)


class ModelSlots:
    """The engine in use and the previous one, each with its model file.

    Keeping the previous engine open makes a rollback instant (no reload); only the engine that
    falls out of both slots is handed back to be closed.
    """

    def __init__(self, engine: Engine, path: Path) -> None:
        self.engine = engine
        self.path = path
        self.previous: tuple[Engine, Path] | None = None

    @property
    def previous_path(self) -> Path | None:
        return None if self.previous is None else self.previous[1]

    def push(self, engine: Engine, path: Path) -> Engine | None:
        """Make ``engine`` current; return the engine no slot holds any more (to close)."""
        evicted = self.previous[0] if self.previous is not None else None
        if evicted is engine:  # a rollback: the previous engine comes back, nothing falls out
            evicted = None
        self.previous = (self.engine, self.path)
        self.engine, self.path = engine, path
        return evicted

    def rollback_target(self) -> tuple[Engine, Path]:
        """The previous engine and its file; ModelLoadError when there is none."""
        if self.previous is None:
            raise ModelLoadError("no previous model to roll back to")
        return self.previous

    def engines(self) -> list[Engine]:
        return [self.engine] + ([self.previous[0]] if self.previous is not None else [])


def source_options(recipe: Recipe) -> SourceOptions:
    """The recipe's ``[source]`` and ``[camera]`` tables as the sources' options."""
    cam = recipe.camera
    return SourceOptions(
        fps=recipe.source.fps or None,
        loop=recipe.source.loop,
        mode=recipe.source.mode,
        bit_depth=recipe.source.bit_depth,
        camera=CameraSettings(
            width=cam.width,
            height=cam.height,
            pixel_format=cam.pixel_format,
            exposure_us=cam.exposure_us,
            gain_db=cam.gain_db,
            trigger=cam.trigger,
        ),
    )


def default_max_batch(engine: Engine) -> int:
    """Frames per inference call: 4 on a GPU, 1 on a CPU.

    A GPU gains from larger batches. ONNX Runtime on a CPU gains little (bench/results/
    pipeline.md: batches of 4 frames are within about 10 % of single frames, and per-tile time
    grows with the batch in bench/results/engines.md), while every frame of a batch waits for
    the whole batch: about 4x the latency before its verdict. ``predict_maps`` already batches
    the tiles of one frame.
    """
    gpu = engine.backend == "tensorrt" or "CUDAExecutionProvider" in getattr(
        engine, "providers", ()
    )
    return 4 if gpu else 1


class Stepper:
    """Frames one at a time from a source of its own, through a pipeline that is never started.

    ``pipeline.process`` runs in the caller's thread, so the GUI's "step" button needs no worker
    threads of the core; the source stays open between steps and continues where it stopped.
    """

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._frames = iter(pipeline.source.frames())

    def next_frame(self) -> Frame | None:
        """The next frame; None when the source is exhausted (SourceError when it failed)."""
        return next(self._frames, None)

    def close(self) -> PipelineStats:
        """End the source's generator, close the source; the final counts."""
        close = getattr(self._frames, "close", None)
        if close is not None:
            close()
        self.pipeline.stop()
        return self.pipeline.stats()


class KeptResults:
    """The last ``keep_last`` results (maps kept for re-judging) and the verdict totals.

    Written by the inference worker (``add`` is a pipeline sink), read and re-judged from the
    GUI's threads; one lock keeps the deque and the counters consistent.
    """

    def __init__(self, keep_last: int) -> None:
        self._results: deque[FrameResult] = deque(maxlen=keep_last)
        self._lock = threading.Lock()
        self._judged = self._passed = self._ng = self._errors = 0

    def add(self, result: FrameResult) -> None:
        with self._lock:
            self._results.append(result)
            verdict = result.inspection.verdict
            if verdict == "PASS":
                self._judged += 1
                self._passed += 1
            elif verdict == "NG":
                self._judged += 1
                self._ng += 1
            else:  # ERROR: never a pass, never silently an NG either
                self._errors += 1

    def snapshot(self) -> list[FrameResult]:
        with self._lock:
            return list(self._results)

    def latest(self) -> FrameResult | None:
        with self._lock:
            return self._results[-1] if self._results else None

    def counts(self) -> tuple[int, int, int]:
        """``(judged, passed, ng)`` since creation; re-judging does not change them."""
        with self._lock:
            return self._judged, self._passed, self._ng

    @property
    def errors(self) -> int:
        with self._lock:
            return self._errors

    def replace(self, rejudged: dict[int, FrameResult]) -> FrameResult | None:
        """Swap in re-judged results (keyed by ``id`` of the original); return the latest.

        Results that arrived while re-judging are not in ``rejudged`` and stay as they are
        (they were judged with the new rules already).
        """
        with self._lock:
            current = [rejudged.get(id(r), r) for r in self._results]
            self._results.clear()
            self._results.extend(current)
            return self._results[-1] if self._results else None


def is_replay(spec: str) -> bool:
    """A folder or a video file: frames wait for inference (backpressure), never dropped."""
    try:
        parsed = parse_spec(spec)
    except SourceError:
        return False
    return parsed.kind == "folder" or (parsed.kind == "video" and not parsed.target.isdigit())


def recipe_frame_check(
    recipe: Recipe,
    rules: Callable[[], Rules],
    card: Callable[[], ModelCard],
    on_warning: Callable[[str], None],
) -> Callable[[Frame], str | None]:
    """``check(frame) -> fault reason | None`` for every readable frame of one run.

    Cheap per frame: the recipe is checked again only when the frame's size, channels or dtype
    change (and on the first frame), or when the rules or the model in force change; warnings
    (a zone partly outside, 12-bit data using a tiny part of its range, ...) go to
    ``on_warning`` once.
    """
    from app.station.recipe_check import FrameChecker

    seen: list[tuple[Rules, ModelCard]] = [(rules(), card())]
    checker = FrameChecker(*seen[0], recipe.pixel_size_mm, recipe.source.bit_depth)

    def check(frame: Frame) -> str | None:
        now = (rules(), card())
        if now[0] is not seen[0][0] or now[1] is not seen[0][1]:
            checker.update(rules=now[0], card=now[1])
            seen[0] = now
        problems = checker.check(frame.image)
        for p in problems:
            if p.severity == "warning":
                on_warning(p.message)
        errors = [p.message for p in problems if p.severity == "error"]
        return "; ".join(errors) if errors else None

    return check


def open_audit(db_path: Path, on_alarm: Callable[[str], None]) -> AuditLog | None:
    """The audit trail in the results database; None (with an alarm) when it cannot open.

    A station whose audit database is unusable still inspects (verdicts come first); the
    alarm says that changes are not being recorded.
    """
    from app.station.audit import AuditError, AuditLog

    try:
        return AuditLog(db_path)
    except AuditError as exc:
        on_alarm(f"audit trail unavailable, changes are not recorded: {exc}")
        return None

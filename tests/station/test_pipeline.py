"""The pipeline's threading contract: drops are counted exactly, triggered mode never drops,
batches form when frames wait, stop joins, a broken sink or engine does not end the run."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from numpy.typing import NDArray

from app.station.frame import Frame
from app.station.inspection import FrameResult, Inspection, Rules
from app.station.inspector import judge
from app.station.pipeline import Pipeline
from app.station.sources.base import SourceError, SourceStats
from engines.card import ModelCard

SIZE = 16


class FakeEngine:
    """prob = pixel value (so a bright square is a defect); optionally slow or failing."""

    backend = "fake"

    def __init__(self, model_id: str = "m1", delay_s: float = 0.0, fail_on: set[int] = frozenset()):
        self.card = ModelCard(name="fake", input_height=SIZE, input_width=SIZE, model_id=model_id)
        self.delay_s = delay_s
        self.fail_on = set(fail_on)  # call numbers (1-based) that raise
        self.calls = 0
        self.batch_sizes: list[int] = []
        self.closed = False

    def infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        if self.closed:
            raise RuntimeError("engine used after close()")
        self.calls += 1
        self.batch_sizes.append(int(batch.shape[0]))
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.calls in self.fail_on:
            raise RuntimeError("simulated engine failure")
        return batch[..., :1].astype(np.float32)

    def close(self) -> None:
        self.closed = True


class ListSource:
    """``n`` frames, frame i bright (defective) when i is odd; optional pacing and failure."""

    def __init__(
        self, n: int, *, interval_s: float = 0.0, fail_after: int | None = None, triggered=False
    ):
        self.name = "test:list"
        self.stats = SourceStats()
        self.triggered = triggered
        self.n = n
        self.interval_s = interval_s
        self.fail_after = fail_after
        self.closed = threading.Event()

    def frames(self) -> Iterator[Frame]:
        for i in range(self.n):
            if self.closed.is_set():
                return
            if self.fail_after is not None and i >= self.fail_after:
                raise SourceError("camera unplugged")
            if self.interval_s:
                time.sleep(self.interval_s)
            image = np.zeros((SIZE, SIZE), np.uint8)
            if i % 2:
                image[4:10, 4:10] = 255
            self.stats.delivered += 1
            yield Frame(image=image, frame_id=i, timestamp=time.time(), source=self.name)

    def close(self) -> None:
        self.closed.set()


def judge_fn(frame: Frame, prob: NDArray[np.float32]) -> Inspection:
    return judge(prob, Rules(threshold=0.5), frame_id=frame.frame_id, source=frame.source)


class Collect:
    def __init__(self) -> None:
        self.results: list[FrameResult] = []

    def __call__(self, result: FrameResult) -> None:
        self.results.append(result)


def run(pipe: Pipeline, timeout: float = 20.0) -> None:
    pipe.start()
    assert pipe.wait(timeout), "pipeline did not finish"
    assert pipe.stop(timeout=5.0)


def test_sync_mode_judges_every_frame_in_order() -> None:
    sink = Collect()
    pipe = Pipeline(ListSource(6), FakeEngine(), judge_fn, [sink], sync=True)
    pipe.start()  # returns when the source is exhausted
    assert [r.frame.frame_id for r in sink.results] == list(range(6))
    assert [r.inspection.verdict for r in sink.results] == ["PASS", "NG"] * 3
    st = pipe.stats()
    assert (st.produced, st.judged, st.dropped, st.skipped) == (6, 6, 0, 0)
    assert not pipe.running
    r = sink.results[1]
    assert r.inspection.model_id == "m1"
    assert set(r.inspection.timings_ms) >= {"acquire", "queue", "infer", "judge", "total"}
    assert not r.prob.flags.writeable and r.prob.shape == (SIZE, SIZE)


def test_free_run_drops_are_counted_exactly_with_a_slow_engine() -> None:
    sink = Collect()
    source = ListSource(40, interval_s=0.002)
    pipe = Pipeline(source, FakeEngine(delay_s=0.03), judge_fn, [sink], mode="free-run")
    run(pipe)
    st = pipe.stats()
    assert st.produced == 40
    assert st.dropped > 0, "a 30 ms engine behind a 2 ms source must drop"
    assert st.dropped == st.produced - st.judged
    assert st.judged == len(sink.results)
    # every drop is reported on the next result, and ids only go forward
    assert sum(r.dropped_before for r in sink.results) == st.dropped
    ids = [r.frame.frame_id for r in sink.results]
    assert ids == sorted(ids)
    gaps = sum(b - a - 1 for a, b in zip(ids, ids[1:], strict=False)) + ids[0]
    assert sum(r.dropped_before for r in sink.results) == gaps


def test_triggered_never_drops_and_raises_line_too_fast() -> None:
    alarms: list[str] = []
    sink = Collect()
    pipe = Pipeline(
        ListSource(12),
        FakeEngine(delay_s=0.02),
        judge_fn,
        [sink],
        mode="triggered",
        queue_size=3,
        on_alarm=alarms.append,
    )
    pipe.start()
    seen_alarm = None
    deadline = time.monotonic() + 10
    while pipe.running and time.monotonic() < deadline:
        seen_alarm = seen_alarm or pipe.stats().alarm
        time.sleep(0.005)
    assert pipe.stop()
    st = pipe.stats()
    assert (st.produced, st.judged, st.dropped) == (12, 12, 0)
    assert [r.frame.frame_id for r in sink.results] == list(range(12))
    assert alarms and "line too fast" in alarms[0]
    assert st.alarms >= 1
    assert seen_alarm is not None and "line too fast" in seen_alarm


def test_waiting_frames_are_batched() -> None:
    engine = FakeEngine(delay_s=0.02)
    sink = Collect()
    pipe = Pipeline(
        ListSource(20), engine, judge_fn, [sink], mode="triggered", queue_size=8, max_batch=4
    )
    run(pipe)
    assert pipe.stats().judged == 20
    assert max(engine.batch_sizes) == 4  # frames piled up behind the slow engine
    assert pipe.stats().mean_batch > 1.5
    assert [r.frame.frame_id for r in sink.results] == list(range(20))


def test_stop_joins_threads_and_is_idempotent() -> None:
    source = ListSource(10_000, interval_s=0.001)
    at_finish = []
    pipe = Pipeline(
        source, FakeEngine(delay_s=0.005), judge_fn, [], mode="triggered", queue_size=8,
        on_finished=lambda: at_finish.append(pipe.stats()),
    )  # fmt: skip
    pipe.start()
    time.sleep(0.1)
    assert any(t.name.startswith("station-") for t in threading.enumerate())
    assert pipe.stop(timeout=5.0)
    assert pipe.stop(timeout=5.0)
    assert not any(t.name.startswith("station-") for t in threading.enumerate())
    assert source.closed.is_set()
    assert not pipe.running
    st = pipe.stats()
    assert st.produced == st.judged + st.dropped
    assert st.dropped == 0  # the frames still queued at stop are judged, not dropped
    # on_finished already saw the final numbers (the session reports them from there)
    assert len(at_finish) == 1 and (at_finish[0].produced, at_finish[0].dropped) == (
        st.produced,
        st.dropped,
    )


def test_a_failing_sink_is_counted_and_the_others_still_run() -> None:
    def broken(result: FrameResult) -> None:
        raise OSError("disk full")

    sink = Collect()
    pipe = Pipeline(ListSource(5), FakeEngine(), judge_fn, [broken, sink], mode="triggered")
    run(pipe)
    assert pipe.stats().sink_errors == 5
    assert len(sink.results) == 5


def test_engine_swap_mid_run_changes_model_id_of_later_results() -> None:
    sink = Collect()
    new = FakeEngine(model_id="m2")

    def swap_after_three(result: FrameResult) -> None:
        if result.frame.frame_id == 2:
            pipe.swap_engine(new)

    pipe = Pipeline(
        ListSource(8), FakeEngine(model_id="m1"), judge_fn, [swap_after_three, sink], sync=True
    )
    pipe.start()
    assert [r.inspection.model_id for r in sink.results] == ["m1"] * 3 + ["m2"] * 5
    assert pipe.engine is new


def test_engine_swap_while_threaded() -> None:
    sink = Collect()
    pipe = Pipeline(
        ListSource(10_000, interval_s=0.002), FakeEngine(model_id="m1"), judge_fn, [sink],
        mode="triggered",
    )  # fmt: skip
    pipe.start()
    deadline = time.monotonic() + 10
    while len(sink.results) < 5:
        assert time.monotonic() < deadline
        time.sleep(0.002)
    old = pipe.swap_engine(FakeEngine(model_id="m2"))
    with pipe.engine_idle():  # after this, no batch uses the old engine any more
        old.close()
        n_old = len(sink.results)
    while len(sink.results) < n_old + 3:
        assert time.monotonic() < deadline
        time.sleep(0.002)
    assert pipe.stop()
    ids = [r.inspection.model_id for r in sink.results]
    assert ids[:5] == ["m1"] * 5
    assert ids[-1] == "m2"
    assert ids == sorted(ids)  # never back to the old model once swapped
    assert pipe.stats().engine_errors == 0, "the old engine was used after engine_idle()"


def test_engine_exception_makes_the_batch_error_and_the_worker_goes_on() -> None:
    sink = Collect()
    engine = FakeEngine(fail_on={2})
    pipe = Pipeline(ListSource(5), engine, judge_fn, [sink], sync=True)
    pipe.start()
    st = pipe.stats()
    assert [r.frame.frame_id for r in sink.results] == [0, 1, 2, 3, 4]  # every frame answered
    failed = sink.results[1]
    assert failed.inspection.verdict == "ERROR" and failed.prob is None
    assert "inference failed" in (failed.inspection.error or "")
    assert (st.produced, st.judged, st.errors, st.dropped, st.engine_errors) == (5, 4, 1, 0, 1)
    assert pipe.fault is None  # one fault is not yet a FAULT


def test_source_error_is_reported_and_the_pipeline_ends_cleanly() -> None:
    errors: list[str] = []
    finished = threading.Event()
    sink = Collect()
    source = ListSource(10, fail_after=4)
    pipe = Pipeline(
        source, FakeEngine(), judge_fn, [sink], mode="triggered",
        on_error=errors.append, on_finished=finished.set,
    )  # fmt: skip
    pipe.start()
    assert finished.wait(10)
    assert pipe.stop()
    assert len(sink.results) == 4  # frames acquired before the failure are still judged
    assert errors == [pipe.error] and "camera unplugged" in errors[0]
    assert source.closed.is_set()


def test_limit_stops_acquisition_after_n_frames() -> None:
    sink = Collect()
    pipe = Pipeline(ListSource(100), FakeEngine(), judge_fn, [sink], mode="triggered", limit=7)
    run(pipe)
    assert len(sink.results) == 7


def test_source_skips_are_reported_in_stats() -> None:  # e.g. buffers a camera driver dropped
    source = ListSource(3)
    source.stats.skipped = 2  # e.g. two unreadable files
    pipe = Pipeline(source, FakeEngine(), judge_fn, [], sync=True)
    pipe.start()
    assert pipe.stats().skipped == 2


@pytest.mark.parametrize("bad", [{"mode": "burst"}, {"max_batch": 0}, {"queue_size": -1}])
def test_bad_arguments_are_rejected(bad: dict) -> None:
    with pytest.raises(ValueError):
        Pipeline(ListSource(1), FakeEngine(), judge_fn, [], **bad)

"""Fail-safe pipeline: every acquired frame ends as PASS, NG, ERROR or a counted drop; a frame the
station could not judge is never a PASS; repeated model faults, a misfit recipe and a lost source
put the pipeline into FAULT with the reason; ``limit`` counts results; a stop judges what is queued.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from numpy.typing import NDArray

from app.station._health import DropMonitor, output_fault
from app.station.frame import Frame
from app.station.inspection import Rules
from app.station.pipeline import Pipeline
from app.station.sources.base import SourceStats
from tests.station.test_pipeline import Collect, FakeEngine, ListSource, judge_fn, run


class NaNEngine(FakeEngine):
    """Returns NaN maps on the given calls (1-based), else the pixel values."""

    def __init__(self, nan_on: set[int] | None = None, value: float = float("nan")) -> None:
        super().__init__()
        self.nan_on = nan_on  # None = every call
        self.value = value

    def infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        out = super().infer(batch)
        if self.nan_on is None or self.calls in self.nan_on:
            out = np.full_like(out, self.value)
        return out


class MixedSource(ListSource):
    """Frames where ``bad`` ids are unreadable files."""

    def __init__(self, n: int, bad: set[int], **kw: object) -> None:
        super().__init__(n, **kw)  # type: ignore[arg-type]  # test helper's loose kwargs
        self.bad = bad

    def frames(self) -> Iterator[Frame]:
        for frame in super().frames():
            if frame.frame_id in self.bad:
                yield Frame.unreadable(
                    frame.frame_id, frame.timestamp, self.name, "truncated PNG",
                    {"path": f"/x/{frame.frame_id}.png", "file": f"{frame.frame_id}.png"},
                )  # fmt: skip
            else:
                yield frame


def verdicts(sink: Collect) -> list[str]:
    return [r.inspection.verdict for r in sink.results]


def test_output_fault_names_nan_inf_and_out_of_range_maps() -> None:
    assert output_fault(np.zeros((4, 4), np.float32)) is None
    assert output_fault(np.ones((4, 4), np.float32)) is None
    nan = np.zeros((4, 4), np.float32)
    nan[1, 1] = np.nan
    assert "not finite" in (output_fault(nan) or "")
    inf = np.zeros((4, 4), np.float32)
    inf[0, 0] = np.inf
    assert "not finite" in (output_fault(inf) or "")
    assert "outside the probability range" in (output_fault(np.full((2, 2), 3.0, np.float32)) or "")
    assert "outside the probability range" in (
        output_fault(np.full((2, 2), -0.5, np.float32)) or ""
    )


@pytest.mark.parametrize("value", [float("nan"), 7.0])
def test_a_bad_model_map_is_error_never_pass(value: float) -> None:
    sink = Collect()
    # Frame 0 is dark: a model returning pixel values would PASS it. NaN/7.0 must not.
    pipe = Pipeline(ListSource(2), NaNEngine({1}, value), judge_fn, [sink], sync=True)
    pipe.start()
    assert verdicts(sink) == ["ERROR", "NG"]
    assert "model fault" in (sink.results[0].inspection.error or "")
    assert sink.results[0].prob is None
    st = pipe.stats()
    assert (st.produced, st.judged, st.errors, st.model_faults) == (2, 1, 1, 1)


def test_consecutive_model_faults_put_the_pipeline_in_fault_and_stop_acquisition() -> None:
    faults: list[str] = []
    sink = Collect()
    source = ListSource(50)
    pipe = Pipeline(
        source, NaNEngine(None), judge_fn, [sink], mode="triggered", queue_size=2,
        on_fault=faults.append, max_model_faults=3,
    )  # fmt: skip
    run(pipe)
    assert len(faults) == 1 and "3 consecutive model faults" in faults[0]
    assert pipe.fault == faults[0]
    assert set(verdicts(sink)) == {"ERROR"}  # never a PASS
    st = pipe.stats()
    assert st.produced < 50, "acquisition went on after the FAULT"
    assert st.produced == st.judged + st.errors + st.dropped == len(sink.results) + st.dropped


def test_a_good_map_resets_the_consecutive_fault_count() -> None:
    faults: list[str] = []
    sink = Collect()
    # NaN on calls 1, 2, 4, 5: never 3 in a row.
    engine = NaNEngine({1, 2, 4, 5})
    pipe = Pipeline(
        ListSource(6), engine, judge_fn, [sink], sync=True, on_fault=faults.append,
        max_model_faults=3,
    )  # fmt: skip
    pipe.start()
    assert faults == [] and pipe.fault is None
    assert verdicts(sink).count("ERROR") == 4 and len(sink.results) == 6


def test_unreadable_frames_are_error_results_with_the_file_and_reason() -> None:
    sink = Collect()
    engine = FakeEngine()
    pipe = Pipeline(MixedSource(5, {1, 3}), engine, judge_fn, [sink], sync=True)
    pipe.start()
    assert [r.frame.frame_id for r in sink.results] == [0, 1, 2, 3, 4]
    bad = [r for r in sink.results if r.inspection.verdict == "ERROR"]
    assert [r.frame.metadata["file"] for r in bad] == ["1.png", "3.png"]
    assert all("unreadable: truncated PNG" in (r.inspection.error or "") for r in bad)
    assert sum(engine.batch_sizes) == 3, "unreadable frames must not reach the engine"
    st = pipe.stats()
    assert (st.produced, st.judged, st.errors) == (5, 3, 2)


def test_a_recipe_that_does_not_fit_faults_before_judging() -> None:
    faults: list[str] = []
    sink = Collect()
    engine = FakeEngine()
    pipe = Pipeline(
        ListSource(10), engine, judge_fn, [sink], mode="triggered", on_fault=faults.append,
        frame_check=lambda frame: f"include zone lies outside the {frame.width} px frame",
    )  # fmt: skip
    run(pipe)
    assert engine.calls == 0, "nothing may be judged under a recipe that does not fit"
    assert faults and "include zone lies outside" in faults[0]
    assert set(verdicts(sink)) == {"ERROR"}
    st = pipe.stats()
    assert st.produced == st.errors + st.dropped


def test_frame_check_sees_every_readable_frame_and_a_fit_recipe_judges_normally() -> None:
    calls: list[int] = []
    sink = Collect()

    def check(frame: Frame) -> str | None:
        calls.append(frame.frame_id)
        return None

    pipe = Pipeline(ListSource(4), FakeEngine(), judge_fn, [sink], sync=True, frame_check=check)
    pipe.start()
    assert calls == [0, 1, 2, 3] and verdicts(sink) == ["PASS", "NG", "PASS", "NG"]


def test_a_judge_that_raises_gives_error_not_a_lost_frame() -> None:
    sink = Collect()

    def flaky(frame: Frame, prob: NDArray[np.float32]):  # noqa: ANN202
        if frame.frame_id == 2:
            raise ZeroDivisionError("boom")
        return judge_fn(frame, prob)

    pipe = Pipeline(ListSource(4), FakeEngine(), flaky, [sink], sync=True)
    pipe.start()
    assert verdicts(sink) == ["PASS", "NG", "ERROR", "NG"]
    assert "judging failed: ZeroDivisionError" in (sink.results[2].inspection.error or "")


def test_error_results_record_the_rules_in_force() -> None:
    sink = Collect()
    rules = Rules(threshold=0.7, min_area_px=5)
    pipe = Pipeline(
        MixedSource(1, {0}), FakeEngine(), judge_fn, [sink], sync=True, rules_fn=lambda: rules
    )
    pipe.start()
    assert sink.results[0].inspection.rules == rules


def test_limit_counts_results_not_acquired_frames_in_free_run() -> None:
    sink = Collect()
    # A camera twice as fast as the engine: free-run drops about half the frames.
    source = ListSource(400, interval_s=0.002)
    pipe = Pipeline(source, FakeEngine(delay_s=0.004), judge_fn, [sink], limit=20)
    run(pipe)
    st = pipe.stats()
    assert len(sink.results) == 20, f"{len(sink.results)} results for --limit 20"
    assert st.dropped > 0, "the test needs drops to mean anything"
    assert st.produced == st.judged + st.errors + st.dropped


def test_drop_rate_alarm_in_free_run() -> None:
    alarms: list[str] = []
    source = ListSource(600, interval_s=0.001)
    pipe = Pipeline(
        source, FakeEngine(delay_s=0.01), judge_fn, [], on_alarm=alarms.append,
        drop_alarm_pct=5.0,
    )  # fmt: skip
    run(pipe, timeout=30)
    assert alarms, "no alarm although most frames were dropped"
    assert (
        "faster than the station inspects" in alarms[0] and "% of frames not inspected" in alarms[0]
    )


def test_drop_monitor_windows() -> None:
    mon = DropMonitor(5.0)
    t0 = time.monotonic()
    assert mon.check(5, 3, t0 + 3) is None  # too few frames for a rate
    message = mon.check(100, 36, t0 + 3)
    assert message is not None and "36 %" in message
    assert mon.check(200, 37, t0 + 6) is None  # 1 % in the next window


def test_stop_judges_what_is_queued_instead_of_dropping_it() -> None:
    sink = Collect()
    started = threading.Event()

    class Slow(FakeEngine):
        def infer(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
            started.set()
            return super().infer(batch)

    engine = Slow(delay_s=0.05)
    pipe = Pipeline(ListSource(100), engine, judge_fn, [sink], mode="triggered", queue_size=4)
    pipe.start()
    assert started.wait(5)
    time.sleep(0.1)  # let the queue fill
    assert pipe.stop(timeout=5.0)
    st = pipe.stats()
    assert st.dropped == 0, "a clean stop must judge the queued frames, not drop them"
    assert st.produced == len(sink.results) == st.judged


def test_source_stats_skipped_stay_outside_the_invariant() -> None:
    source = ListSource(3)
    source.stats = SourceStats(skipped=4)
    pipe = Pipeline(source, FakeEngine(), judge_fn, [], sync=True)
    pipe.start()
    st = pipe.stats()
    assert st.skipped == 4 and st.produced == st.judged == 3


def test_a_stop_racing_a_start_waits_for_the_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    # The GUI stops from a worker thread; a stop landing between the creation and the start of
    # the pipeline's threads must not try to join a thread that has not started yet.
    pipe = Pipeline(ListSource(10_000, interval_s=0.001), FakeEngine(), judge_fn, [])
    errors: list[BaseException] = []
    real_start = threading.Thread.start
    stopper: list[threading.Thread] = []

    def start_late(self: threading.Thread) -> None:
        if self.name == "station-acquire" and not stopper:

            def stop() -> None:
                try:
                    pipe.stop(timeout=5.0)
                except BaseException as exc:  # noqa: BLE001 - collected for the assert
                    errors.append(exc)

            t = threading.Thread(target=stop)
            stopper.append(t)
            real_start(t)
            time.sleep(0.2)  # the stop is now waiting (or, before the fix, already failing)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start_late)
    pipe.start()
    stopper[0].join(10)
    assert errors == []
    assert pipe.wait(10) and not pipe.running

"""Triggered jobs over a stand-in session: one at a time, busy counted, late marked, no silence."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from app.station.outputs.base import JobBusy
from app.station.outputs.jobs import JobRunner


class FakeSession:
    """Steps take ``delay`` s and publish a result through ``on_result`` (the hub's part)."""

    def __init__(self, delay: float = 0.0, frames: int = 100) -> None:
        self.delay = delay
        self.frames = frames
        self.running = False
        self.on_result: Any = None
        self.tags: list[str] = []

    def step(self, part_id: str | None = None) -> Any:
        if self.frames <= 0:
            return None
        self.frames -= 1
        time.sleep(self.delay)
        extra = {"part_id": part_id} if part_id is not None else {}
        result = SimpleNamespace(frame=SimpleNamespace(timestamp=time.time()), extra=extra)
        self.on_result(result)
        return result

    def tag_next_result(self, part_id: str) -> None:
        self.tags.append(part_id)


def make(session: FakeSession, **kwargs: Any) -> tuple[JobRunner, list[dict[str, Any]], list[str]]:
    published: list[dict[str, Any]] = []
    alarms: list[str] = []

    def publish(record: dict[str, Any]) -> None:
        record["result_id"] = len(published) + 1
        published.append(record)
        runner.complete(record)

    runner = JobRunner(session, publish=publish, on_alarm=alarms.append, **kwargs)

    def on_result(result: Any) -> None:  # what the hub does with a session result
        record = {"verdict": "PASS", "defects": []}
        record.update(runner.claim(result) or {})
        publish(record)

    session.on_result = on_result
    return runner, published, alarms


def test_a_job_returns_its_part_id_and_is_published_once() -> None:
    runner, published, alarms = make(FakeSession())
    record = runner.run("P-17")
    assert record["part_id"] == "P-17" and record["job_id"] == 1 and record["late"] is False
    assert published == [record]
    assert alarms == []


def test_a_trigger_while_busy_is_counted_and_refused() -> None:
    runner, published, _ = make(FakeSession(delay=0.4))
    first: dict[str, Any] = {}
    t = threading.Thread(target=lambda: first.update(runner.run("A")))
    t.start()
    time.sleep(0.1)
    with pytest.raises(JobBusy):
        runner.run("B")
    t.join()
    assert first["part_id"] == "A"
    assert runner.busy_rejected == 1 and runner.jobs == 1  # jobs counts accepted ones
    assert [r["part_id"] for r in published] == ["A"]
    assert runner.run("C")["part_id"] == "C"  # free again afterwards


def test_a_late_result_is_marked_late_and_raises_an_alarm() -> None:
    runner, _, alarms = make(FakeSession(delay=0.15), deadline_s=0.05)
    record = runner.run("slow")
    assert record["late"] is True and record["latency_ms"] >= 150 and record["deadline_ms"] == 50
    assert runner.late == 1
    assert len(alarms) == 1 and "late" in alarms[0] and "slow" in alarms[0]
    on_time = runner.run("fast", deadline_s=5.0)
    assert on_time["late"] is False and runner.late == 1


def test_no_frame_gives_an_error_answer_not_silence() -> None:
    runner, published, alarms = make(FakeSession(frames=0))
    record = runner.run("P-1")
    assert record["verdict"] == "ERROR" and "source ended" in record["error"]
    assert record["part_id"] == "P-1" and published == [record]
    assert alarms and "P-1" in alarms[0]


def test_while_running_the_next_result_is_tagged() -> None:
    session = FakeSession()
    session.running = True
    runner, published, _ = make(session, timeout_s=5.0)
    out: dict[str, Any] = {}
    t = threading.Thread(target=lambda: out.update(runner.run("RUN-1")))
    t.start()
    time.sleep(0.2)
    assert session.tags == ["RUN-1"]
    # An untagged result (the frame before) is not the job's; the tagged one is.
    session.on_result(SimpleNamespace(frame=SimpleNamespace(timestamp=time.time()), extra={}))
    session.on_result(
        SimpleNamespace(frame=SimpleNamespace(timestamp=time.time()), extra={"part_id": "RUN-1"})
    )
    t.join(5)
    assert out["part_id"] == "RUN-1" and out["result_id"] == 2
    assert [r.get("part_id") for r in published] == [None, "RUN-1"]


def test_a_running_line_that_stops_first_answers_error() -> None:
    session = FakeSession()
    session.running = True
    runner, _, _ = make(session, timeout_s=5.0)
    threading.Timer(0.2, lambda: setattr(session, "running", False)).start()
    record = runner.run("P-9")
    assert record["verdict"] == "ERROR" and "stopped" in record["error"]
